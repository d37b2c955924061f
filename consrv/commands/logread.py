"""``log NAME --files``, ``log NAME --file FILE [--last N]`` and ``log NAME --json``: a
console's log files as a program reads them (a fleet gateway's log pages for a peer's
console).

Owns the machine forms of ``log``: the listing of the files (name, size, last
written), a file's last lines (``--last N``, read on this host: only the window
leaves it, with the first line's number under ``--json``; each line cut at
`logfiles.LAST_LINE_BYTES`), one file's bytes as they are on disk (a download: no escape taken out,
flow-controlled towards the channel, so a slow reader slows the copy and nothing is
buffered beyond `CHANNEL_HIGH`), and a search's matches as JSON with their file,
line number and stamp. A file is named only from the console's listing
(`logfiles.find_file`): never a path from the command line. Rights are the log's
(the caller's ``console`` check). Knows nothing of asyncssh or HTTP.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import trio

from consrv import views
from consrv.contracts import NOT_FOUND, OK, Channel
from consrv.logfiles import LAST_LINE_BYTES, LogFile, Match, Result, open_file, window

FILES, FILE, JSON, LAST = "--files", "--file", "--json", "--last"
MAX_LAST = 10000  # lines of --last
READ_CHUNK = 1 << 16
# Written to the channel while it holds less than this; above it, the copy waits.
CHANNEL_HIGH = 256 << 10
DRAIN_POLL = 0.01


def wanted(flags: dict[str, str]) -> bool:
    """Whether the command line asks for one of the machine forms."""
    return bool({FILES, FILE, JSON, LAST} & flags.keys())


def searching(flags: dict[str, str]) -> bool:
    return bool({"--grep", "--since", "--until", JSON} & flags.keys())


def files_text(files: Sequence[LogFile], as_json: bool) -> str:
    """The listing, oldest first: JSON, or one line a file (name, bytes, last written)."""
    rows = [{"name": f.name, "size": f.size, "mtime": f.mtime} for f in files]
    if as_json:
        return json.dumps({"files": rows}) + "\n"
    return "".join(f"{f.name}  {f.size}  {views.iso(f.mtime)}\n" for f in files)


def matches_json(result: Result) -> bytes:
    """A search's matches as one JSON document; a line's bytes as text whose undecodable
    bytes are kept (``surrogateescape``: `match_data` gives the same bytes back)."""
    matches = [_match(m) for m in result.matches]
    return json.dumps({"matches": matches, "stopped": result.stopped}).encode() + b"\n"


def last_count(flags: dict[str, str]) -> int:
    """``--last N``'s N; raises ValueError saying what is wrong."""
    text = flags[LAST]
    if FILE not in flags or {"--grep", "--since", "--until"} & flags.keys():
        raise ValueError("--last reads one file's end: it wants --file FILE, and no search")
    if not text.isdigit() or not 0 < int(text) <= MAX_LAST:
        raise ValueError(f"--last wants a number of lines from 1 to {MAX_LAST}")
    return int(text)


async def last_lines(file: LogFile, count: int, limiter: trio.CapacityLimiter
                     ) -> tuple[int, list[bytes]]:  # fmt: skip
    """The number of the first of `file`'s last `count` lines, and those lines (each cut
    at `LAST_LINE_BYTES`), read in a worker thread as the host's own page reads them."""
    return await trio.to_thread.run_sync(window, file, None, count, LAST_LINE_BYTES,
                                         limiter=limiter)  # fmt: skip


def lines_json(first: int, lines: list[bytes]) -> bytes:
    """`last_lines` as one JSON document (undecodable bytes kept, as in `matches_json`)."""
    text = [line.decode("utf-8", "surrogateescape") for line in lines]
    return json.dumps({"first": first, "lines": text}).encode() + b"\n"


def _match(match: Match) -> dict[str, object]:
    stamp = match.stamp.isoformat() if match.stamp is not None else None
    text = match.data.decode("utf-8", "surrogateescape")
    return {"file": match.file, "line": match.line, "stamp": stamp, "text": text}


def match_data(text: str) -> bytes:
    """A line's bytes from `matches_json`'s text."""
    return text.encode("utf-8", "surrogateescape")


async def copy_file(channel: Channel, file: LogFile) -> int:
    """`file`'s bytes to the channel, at the reader's pace; NOT_FOUND if it went."""
    try:
        fd = open_file(file)
    except OSError:
        return NOT_FOUND
    try:
        while chunk := await trio.to_thread.run_sync(os.read, fd, READ_CHUNK):
            await _room(channel)
            channel.write(chunk)
    finally:
        os.close(fd)
    return OK


async def _room(channel: Channel) -> None:
    """Until the channel holds less than `CHANNEL_HIGH` (it says nothing when it drains:
    looked at every `DRAIN_POLL` s, as playback does)."""
    never = trio.Event()
    while channel.buffered() >= CHANNEL_HIGH:
        with trio.move_on_after(DRAIN_POLL):
            await never.wait()
