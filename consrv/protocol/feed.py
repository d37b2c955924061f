"""The fleet feed's wire format: what a host tells a gateway (``watch --json``).

Owns the events and their framing, for both ends: the host writes them
(``host/feed.py``), a gateway reads them (``fleet/link.py`` → ``fleet/directory.py``).
One JSON object a line, each with ``"schema": FEED_SCHEMA`` and a ``"type"``:

- ``hello`` (`Hello`): this host's users and their groups; first, and again when they change;
- ``console`` (`ConsoleEntry`): one console's routing entry (its report as
  ``views.console_dict`` makes it, less volatile fields; ``who``; ``rw``/``ro``/``operate``);
- ``removed`` (`Removed`): a console is gone;
- ``sync`` (`Sync`): everything above describes the host as it is now.

Rules, as for the other parsers here:

1. `FeedDecoder` gives the same events however the bytes are cut.
2. A line that is not one of these events is a `FeedError` at its place in the
   stream: events before it are given first (``next_event`` raises when it is reached).
3. At most `MAX_LINE` bytes of an unfinished line are carried: more is a `FeedError`.

Pure: no I/O, no clock, no logging.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FEED_SCHEMA = 1
MAX_LINE = 1 << 20  # a feed line longer than this is a broken peer


class FeedError(ValueError):
    """A feed line that is not one of the events below."""


@dataclass(frozen=True)
class Hello:
    """Every user of the host and their groups (sorted)."""

    users: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class ConsoleEntry:
    """One console's routing entry, keyed as ``views.console_dict`` (``name`` first)."""

    entry: dict[str, Any] = field(hash=False)

    @property
    def name(self) -> str:
        return str(self.entry["name"])


@dataclass(frozen=True)
class Removed:
    name: str


@dataclass(frozen=True)
class Sync:
    """The snapshot is complete (sent once, after the first picture)."""


Event = Hello | ConsoleEntry | Removed | Sync


def encode(event: Event) -> bytes:
    """One feed line (with its newline)."""
    if isinstance(event, Hello):
        users = {user: list(groups) for user, groups in event.users.items()}
        body: dict[str, Any] = {"type": "hello", "users": users}
    elif isinstance(event, ConsoleEntry):
        body = {"type": "console", "console": event.entry}
    elif isinstance(event, Removed):
        body = {"type": "removed", "name": event.name}
    else:
        body = {"type": "sync"}
    text = json.dumps({"schema": FEED_SCHEMA, **body}, indent=None, separators=(",", ":"))
    return text.encode() + b"\n"


def decode(line: bytes) -> Event:
    """The event one line carries (without its newline). Raises FeedError."""
    try:
        message = json.loads(line)
    except ValueError:
        raise FeedError(f"not JSON: {line[:80]!r}") from None
    if not isinstance(message, dict) or message.get("schema") != FEED_SCHEMA:
        raise FeedError(f"not a schema {FEED_SCHEMA} feed line: {line[:80]!r}")
    try:
        return _event(message)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, FeedError):
            raise
        raise FeedError(f"bad feed line {line[:80]!r}: {exc!r}") from None


def _event(message: dict[str, Any]) -> Event:
    kind = message.get("type")
    if kind == "hello":
        users = dict(message["users"]).items()
        return Hello({str(user): tuple(str(g) for g in groups) for user, groups in users})
    if kind == "console":
        entry = dict(message["console"])
        str(entry["name"])  # every entry is named
        return ConsoleEntry(entry)
    if kind == "removed":
        return Removed(str(message["name"]))
    if kind == "sync":
        return Sync()
    raise FeedError(f"unknown feed line type {kind!r}")


class FeedDecoder:
    """Bytes of a feed in, events out (``receive_data``, then ``next_event`` until None)."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._partial = b""

    def receive_data(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        self._lines += lines

    def next_event(self) -> Event | None:
        """The next whole line's event, or None until more bytes come. Raises FeedError."""
        if self._lines:
            return decode(self._lines.pop(0))
        if len(self._partial) > MAX_LINE:
            raise FeedError("a feed line over 1 MiB")
        return None

    @property
    def buffered_bytes(self) -> int:
        """Bytes carried over from an unfinished line."""
        return len(self._partial)
