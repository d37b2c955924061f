"""The change feed a fleet gateway reads from this host: ``watch --json``.

Owns what a gateway learns about this host's consoles, as the events of
``protocol/feed.py`` (their framing is there, shared with the gateway's reader):

- ``hello``: this host's users and their groups (the gateway judges who may see
  a console with this host's own rules: `access.role_for` over the console's
  ``rw``/``ro`` lists and these groups); sent first and again when they change;
- ``console``: one console's routing entry (state, writer, viewers, who, ACLs),
  sent when the console appears and whenever one of these fields changes;
- ``removed``: a console is gone;
- ``sync``: everything above describes the host as it is now (after the first
  snapshot; a gateway swaps its old picture for the new one at this point).

Volatile fields (last output, memory, CPU) are left out, so an idle host sends
nothing. Idle times are carried as each user's ``last_input`` (the wall-clock
time of their last keystroke, to the second, or null), which changes only when
they type: the gateway works out ``idle_seconds`` from it as a local `who` does.
Knows nothing of SSH: it reads the host's consoles and writes lines to a
``contracts.Sink``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import trio

from consrv import views
from consrv.config import Config
from consrv.contracts import Sink
from consrv.host.policy import Host
from consrv.protocol.feed import ConsoleEntry, Event, Hello, Removed, Sync, encode

# How often the feed compares this host's consoles with what it last sent (in process: cheap).
POLL_INTERVAL = 0.25
# A reader this far behind is dropped (it reconnects and gets a fresh snapshot).
MAX_BEHIND = 4 << 20
# Volatile keys of `views.console_dict` and `views.unit_dict`: not routing data.
_VOLATILE = ("last_output",)
_VOLATILE_UNIT = ("memory_bytes", "cpu_seconds")


def console_entry(host: Host, name: str) -> dict[str, Any]:
    """What a gateway needs of console ``name``: its report (schema 1), who, its ACLs."""
    entry = views.console_dict(host.view(name))
    for key in _VOLATILE:
        entry.pop(key, None)
    if entry["ioc"] is not None:
        entry["ioc"] = {k: v for k, v in entry["ioc"].items() if k not in _VOLATILE_UNIT}
    cfg = host.registry.settings[name]
    now = time.time()
    entry["who"] = [
        {"user": w.user, "mode": w.mode, "since": views.iso(w.since), "login": w.login,
         "from": w.peer, "last_input": None if w.idle is None else views.iso(now - w.idle)}
        for w in host.registry.consoles[name].who(now=now)
    ]  # fmt: skip
    entry["rw"], entry["ro"] = list(cfg.rw), list(cfg.ro)
    entry["operate"] = list(cfg.operate) if cfg.ioc else []
    return entry


def users_entry(config: Config) -> dict[str, list[str]]:
    """Every user of this host and their groups."""
    return {user: sorted(config.groups_of(user)) for user in sorted(config.users)}


class Feed:
    """What was last sent, and the lines that bring a reader up to date."""

    def __init__(self) -> None:
        self.users: dict[str, list[str]] | None = None
        self.consoles: dict[str, dict[str, Any]] = {}
        self.synced = False

    def update(self, users: dict[str, list[str]], consoles: dict[str, dict[str, Any]]) -> bytes:
        """The lines (possibly none) that turn the last state sent into this one."""
        events: list[Event] = []
        if users != self.users:
            events.append(Hello(users))
            self.users = users
        for name in sorted(self.consoles.keys() - consoles.keys()):
            events.append(Removed(name))
            del self.consoles[name]
        for name, entry in sorted(consoles.items()):
            if self.consoles.get(name) != entry:
                events.append(ConsoleEntry(entry))
                self.consoles[name] = entry
        if not self.synced:
            events.append(Sync())
            self.synced = True
        return b"".join(encode(event) for event in events)


async def run_feed(host: Host, sink: Sink, done: Callable[[], bool]) -> bool:
    """Write the feed to ``sink`` until ``done()``: a snapshot, then the changes.

    False if the reader fell `MAX_BEHIND` behind (the feed ends; it may read again).
    """
    feed = Feed()
    while not done():
        if sink.buffered() > MAX_BEHIND:
            return False
        registry = host.registry
        consoles = {name: console_entry(host, name) for name in registry.consoles}
        data = feed.update(users_entry(registry.config), consoles)
        if data:
            sink.write(data)
        await trio.sleep(POLL_INTERVAL)
    return True
