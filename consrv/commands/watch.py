"""Read-only watching (``tail -f``, ``follow``): the consoles' output through sinks that
ask the config in force before every write, until the user closes their input.

Owns `watch` and its adapters: input that only waits for the end (`EofWaiter`, also
``watch --json``'s), a sink gated by the user's access (`GatedSink`), a sink that
prefixes each line with its console's name (`PrefixSink`). Knows no command line.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import trio

from consrv.access import Role
from consrv.console import Console, Viewer
from consrv.contracts import Input, Login, Sink
from consrv.host import Host
from consrv.plaintext import StripSink

# A `tail -f` / `follow` with no output looks at the config this often (a reload
# that took the user's access away ends it; output is checked as it comes).
WATCH_RECHECK = 1.0


async def watch(
    host: Host,
    login: Callable[[], Login],
    channel: Sink,
    consoles: dict[str, Console],
    *,
    prefixed: bool,
    pty: bool,
    on_input: Callable[[Input], None],
    plain: bool = False,
) -> None:
    """Read-only output of `consoles` until the user closes their input; ``login()`` is
    the user as the config in force sees them."""
    registry = host.registry

    def may_watch(name: str) -> bool:
        return name in registry.consoles and host.role(login(), name) is not None

    def stop_watching(console: Console, viewer: Viewer) -> None:
        console.evict(viewer, f"your access to {console.name} changed: no longer shown")

    done = EofWaiter()
    on_input(done)
    viewers = []
    for name, console in consoles.items():
        inner: Sink = PrefixSink(channel, name) if prefixed else channel
        if plain:  # not a terminal: no escape sequences (plaintext.py)
            inner = StripSink(inner)
        sink = GatedSink(inner, functools.partial(may_watch, name), lambda: registry.config)
        limit = registry.settings[name].viewer_buffer
        user = login()
        viewer = Viewer(sink, user=user.user, role=Role.RO, limit=limit, pty=pty)
        viewer.login, viewer.peer = user.login, user.peer
        viewer.on_evict = done.eof
        sink.on_refused = functools.partial(stop_watching, console, viewer)
        console.attach(viewer)
        viewers.append((console, viewer, sink))
    try:
        while not done.is_set():
            with trio.move_on_after(WATCH_RECHECK):
                await done.wait()
            for _, _, sink in viewers:
                sink.check()
    finally:
        for console, viewer, _ in viewers:
            console.detach(viewer)


class EofWaiter:
    """Input for read-only watching: ignores keystrokes, ends at EOF or ^C/^D."""

    def __init__(self) -> None:
        self._done = trio.Event()

    def feed(self, data: bytes) -> None:
        if b"\x03" in data or b"\x04" in data:
            self._done.set()

    def eof(self) -> None:
        self._done.set()

    def drained(self) -> None:
        pass

    async def wait(self) -> None:
        await self._done.wait()

    def is_set(self) -> bool:
        return self._done.is_set()


class GatedSink:
    """A read-only watcher's sink that asks, at every write, whether the config in
    force still lets the user see the console (cheap until a reload: the check
    runs again only when the registry's config is a new one)."""

    def __init__(
        self,
        inner: Sink,
        allowed: Callable[[], bool],
        config: Callable[[], object],
    ) -> None:
        self.inner, self.allowed, self.config = inner, allowed, config
        self.on_refused: Callable[[], None] | None = None
        self._seen = config()
        self._ok = True

    def check(self) -> bool:
        """Still allowed by the config in force? Once refused, ``on_refused`` is called
        (once) and nothing more is shown."""
        config = self.config()
        if config is self._seen or not self._ok:
            return self._ok
        self._seen, self._ok = config, self.allowed()
        if not self._ok and self.on_refused is not None:
            self.on_refused()
        return self._ok

    def write(self, data: bytes) -> None:
        if self.check():
            self.inner.write(data)

    def write_notice(self, data: bytes) -> None:
        self.inner.write_notice(data)

    def buffered(self) -> int:
        return self.inner.buffered()


class PrefixSink:
    """A sink that writes whole lines, each prefixed with its console's name."""

    MAX_PARTIAL = 4096

    def __init__(self, channel: Sink, name: str) -> None:
        self.channel, self.prefix = channel, name.encode() + b": "
        self._partial = b""

    def write(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            self.channel.write(b"".join(self.prefix + ln.rstrip(b"\r") + b"\n" for ln in lines))

    def write_notice(self, data: bytes) -> None:
        self.channel.write_notice(self.prefix + data.strip(b"\r\n") + b"\n")

    def buffered(self) -> int:
        return self.channel.buffered()
