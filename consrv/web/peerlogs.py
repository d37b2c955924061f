"""A peer's console logs and recordings in a gateway's browser view, answered by that peer.

Owns reading them: each page runs one read-only command on the console's own host
through `contracts.FleetView.fleet_read` (``log NAME@HOST --files --json``,
``log ... --json`` for a search, ``log ... --file FILE --last N --json`` for a file's
last lines, ``log ... --file FILE`` for the lines around one or its download, ``cast
... --since --until`` for the player), under the user's per-hop identity, so that
host judges (its roles, revocation, audit with ``via``; a user with no role there
gets nothing: the command fails and the page is 404). The
output goes into a bounded queue: while it is full the peer's channel is paused
(this read's only), so a slow browser downloading a peer's file slows that copy,
never the gateway's link or another user. Knows nothing of asyncssh, routing or pages.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from consrv.contracts import OK, USAGE, FleetView, Input, Login
from consrv.logfiles import LAST_LINE_BYTES, LogFile, Match, Query, Result
from consrv.names import InvalidName, validate_console_name
from consrv.web.stream import QueueSink

READ_TIMEOUT = 30.0  # seconds a listing, a search, a file's window or a cast may take
JSON_LIMIT = 32 << 20  # bytes of a listing or a search's answer
NOTICE_LIMIT = 4 << 10  # bytes kept of the peer's error lines
# JSON bytes a line of ``--last`` may take (\uXXXX escapes: up to 6 a byte)
LAST_LINE_LIMIT = 6 * LAST_LINE_BYTES + 16

Consume = Callable[[bytes], Awaitable[bool]]


def valid_target(target: str) -> bool:
    """``NAME@HOST`` with a console name (names.py) before it goes into a command line."""
    name, at, host = target.partition("@")
    try:
        validate_console_name(name)
    except InvalidName:
        return False
    return not at or (bool(host) and host.isprintable() and " " not in host)


class PeerSink(QueueSink):
    """`contracts.Channel` for the gateway's bridge: the peer's output queued for the page
    (the bridge pauses the peer while `buffered()` is over its mark; the reader it hands
    over resumes it on `drained()`), its error lines kept apart, bounded."""

    def __init__(self) -> None:
        super().__init__()
        self.reader: Input | None = None
        self.notices = bytearray()

    def write_notice(self, data: bytes) -> None:
        self.notices += data[: max(0, NOTICE_LIMIT - len(self.notices))]

    def pause_reading(self) -> None:
        pass  # a page sends nothing to the peer

    def resume_reading(self) -> None:
        pass


async def each_chunk(
    fleet: FleetView, login: Login, words: list[str], consume: Consume
) -> tuple[int | None, str]:
    """Run `words` on the console's host; `consume` each chunk of its output as it comes
    (False: enough, the command is ended). The exit status (None if ended early) and
    the peer's error text."""
    sink, status, ended = PeerSink(), list[int](), trio.Event()

    def take_reader(reader: Input) -> None:
        sink.reader = reader

    async def run() -> None:
        status.append(await fleet.fleet_read(login, words, sink, take_reader))
        ended.set()
        sink.ready.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        while True:
            if not sink.buffered():
                if sink.reader is not None:
                    sink.reader.drained()  # the peer may send again
                if ended.is_set():
                    break
                await sink.ready.wait()
                continue
            if not await consume(sink.take()):
                nursery.cancel_scope.cancel()
                break
    return (status[0] if status else None), sink.notices.decode("utf-8", "replace")


async def read_all(
    fleet: FleetView, login: Login, words: list[str], limit: int
) -> tuple[int | None, bytes]:
    """The command's whole output (None: failed, too large or too slow)."""
    data = bytearray()

    async def keep(chunk: bytes) -> bool:
        data.extend(chunk)
        return len(data) <= limit

    with trio.move_on_after(READ_TIMEOUT):
        status, _ = await each_chunk(fleet, login, words, keep)
        return status, bytes(data)
    return None, b""


class PeerLogs:
    """One peer's console's logs and recordings, as `login` may read them there."""

    def __init__(self, fleet: FleetView, login: Login, target: str) -> None:
        assert valid_target(target), target
        self.fleet, self.login, self.target = fleet, login, target

    async def files(self) -> list[LogFile] | None:
        """The console's log files on its host (None: that host says no)."""
        status, data = await read_all(self.fleet, self.login, self._log("--files", "--json"),
                                      JSON_LIMIT)  # fmt: skip
        if status != OK:
            return None
        rows = json.loads(data)["files"]
        # On the peer: the path is the peer's, never opened here.
        return [LogFile(r["name"], Path(r["name"]), int(r["size"]), float(r["mtime"]))
                for r in rows]  # fmt: skip

    async def search(self, query: Query, file: str | None = None) -> Result | None:
        words = self._log("--json", *(["--file", file] if file else []))
        if query.text:
            words += ["--grep", query.text.decode()]
        for option, when in (("--since", query.since), ("--until", query.until)):
            if when is not None:
                words += [option, when.isoformat()]
        status, data = await read_all(self.fleet, self.login, words, JSON_LIMIT)
        if status != OK:
            return None
        found = json.loads(data)
        return Result(matches=[_match(m) for m in found["matches"]], stopped=found["stopped"])

    async def window(self, file: str, around: int | None, size: int, line_bytes: int
                     ) -> tuple[int, list[bytes]] | None:  # fmt: skip
        """The lines shown of `file` (as `logfiles.window` on a host: from a little before
        line `around`, read as the peer sends it, memory bounded; else the last `size`,
        which the peer finds itself: only those cross the hop)."""
        if around is None:
            last = await self._last(file, size, line_bytes)
            if not isinstance(last, int):  # USAGE: a peer older than --last, read to the end
                return last
        first = max(1, around - size // 5) if around is not None else 1
        kept: deque[bytes] = deque(maxlen=size)
        number, partial = 0, bytearray()

        async def lines(chunk: bytes) -> bool:
            nonlocal number
            partial.extend(chunk)
            *whole, rest = bytes(partial).split(b"\n")
            partial[:] = rest[: line_bytes * 2]
            for line in whole:
                number += 1
                if number >= first:
                    kept.append(line[:line_bytes].rstrip(b"\r"))
                if around is not None and len(kept) == size:
                    return False
            return True

        status: int | None = None  # none within READ_TIMEOUT, or ended once the window is full
        with trio.move_on_after(READ_TIMEOUT):
            status, _ = await each_chunk(self.fleet, self.login, self._log("--file", file), lines)
        if status not in (OK, None) or (number == 0 and status is None):
            return None
        if partial and (around is None or len(kept) < size):
            number += 1
            if number >= first:
                kept.append(bytes(partial[:line_bytes]).rstrip(b"\r"))
        return max(1, number - len(kept) + 1), list(kept)

    async def _last(self, file: str, size: int, line_bytes: int
                    ) -> tuple[int, list[bytes]] | int | None:  # fmt: skip
        """The last `size` lines as the peer finds them (USAGE: it has no ``--last``)."""
        words = self._log("--file", file, "--last", str(size), "--json")
        status, data = await read_all(self.fleet, self.login, words, size * LAST_LINE_LIMIT)
        if status != OK:
            return USAGE if status == USAGE else None
        found = json.loads(data)
        lines = [_data(text)[:line_bytes].rstrip(b"\r") for text in found["lines"]]
        return int(found["first"]), lines

    async def download(self, file: str, send: Consume) -> tuple[int | None, str]:
        """`file`'s bytes, each chunk to `send` at the browser's pace."""
        return await each_chunk(self.fleet, self.login, self._log("--file", file), send)

    async def cast(self, since: datetime, until: datetime | None, limit: int
                   ) -> bytes | None:  # fmt: skip
        """The recording's range as asciicast v2, exported by the console's host."""
        words = ["cast", self.target, "--since", since.isoformat()]
        if until is not None:
            words += ["--until", until.isoformat()]
        status, data = await read_all(self.fleet, self.login, words, limit)
        return data if status == OK else None

    def _log(self, *options: str) -> list[str]:
        return ["log", self.target, *options]


def _match(row: dict[str, Any]) -> Match:
    """A match from ``log --json``: its text's undecodable bytes were kept as surrogates."""
    stamp = datetime.fromisoformat(row["stamp"]) if row.get("stamp") else None
    return Match(str(row["file"]), int(row["line"]), stamp, _data(row["text"]))


def _data(text: object) -> bytes:
    """A line's bytes from the peer's JSON text (undecodable bytes were kept as surrogates)."""
    return str(text).encode("utf-8", "surrogateescape")
