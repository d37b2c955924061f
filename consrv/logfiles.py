"""Reading a console's log files (current and rotated): listing, opening, searching.

Owns which files belong to a console (``NAME.log`` and ``NAME.log.N`` in the log
directory, regular files only: never a symlink, never a path from a user), and the
search over them: a plain substring (no user regex) and a time range read from the
lines' ISO-8601 stamps (``consolelog``'s), bounded in results, bytes read and time.
Knows nothing of trio, SSH or HTTP: searching is synchronous, callers run it in a
worker thread.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from consrv.names import validate_console_name
from consrv.protocol import ansi

# A line stamp as consolelog writes it: ``2026-12-03T21:03:41.123+00:00 `` at the start
# of an output line, or inside ``[consrv STAMP] `` for an event line.
_STAMP = re.compile(
    rb"^(?:\[consrv )?(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d|Z)?)[ \]]"
)
_ROTATED = re.compile(r"\.log\.([1-9][0-9]{0,3})\Z")
_RELATIVE = re.compile(r"\A([0-9]{1,6})([smhd])\Z")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
READ_CHUNK = 1 << 16
MAX_LINE = 1 << 16  # longer lines are cut (the rest still counts as read)
LAST_LINE_BYTES = 8 << 10  # bytes kept of a line of ``log --file F --last N``
_PAST = "past the end of the range"


class BadTime(ValueError):
    """A --since/--until value that is neither ISO-8601 nor a relative age (10m, 2h)."""


@dataclass(frozen=True)
class LogFile:
    """One of a console's log files: ``name`` is its file name, never a user's path."""

    name: str
    path: Path
    size: int
    mtime: float  # wall-clock seconds


@dataclass(frozen=True)
class Limits:
    results: int = 1000
    bytes: int = 256 << 20  # bytes read over all files
    output: int = 4 << 20  # bytes of matching lines
    seconds: float = 5.0


@dataclass(frozen=True)
class Query:
    text: bytes = b""  # plain substring; empty matches every line
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Match:
    file: str
    line: int  # 1-based line number in its file
    stamp: datetime | None  # the line's stamp, or the last one before it
    data: bytes  # the line without its end


@dataclass
class Result:
    matches: list[Match] = field(default_factory=list)
    bytes_read: int = 0
    bytes_found: int = 0
    stopped: str | None = None  # why the search stopped early (a limit), or None


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO-8601 time (no zone: local time) or an age such as ``10m``, ``2h``, ``3d``."""
    now = now or datetime.now().astimezone()
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(seconds=int(relative[1]) * _UNITS[relative[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadTime(
            f"not a time: {text[:40]!r} (ISO-8601 such as 2026-12-03T21:00, or an age: 10m, 2h)"
        ) from None
    return when if when.tzinfo is not None else when.astimezone()


def log_files(log_dir: Path, console: str) -> list[LogFile]:
    """The console's log files, oldest first (``NAME.log.N`` … ``NAME.log.1``, ``NAME.log``).

    Only regular files directly in `log_dir` (a symlink is never listed). Raises
    InvalidName for a name that is not a console name.
    """
    validate_console_name(console)
    found: list[tuple[int, LogFile]] = []
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return []
    current = f"{console}.log"
    for entry in entries:
        order = _order(entry.name, current)
        if order is None or not entry.is_file(follow_symlinks=False):
            continue
        info = entry.stat(follow_symlinks=False)
        found.append((order, LogFile(entry.name, Path(entry.path), info.st_size, info.st_mtime)))
    return [file for _, file in sorted(found, key=lambda pair: -pair[0])]


def _order(name: str, current: str) -> int | None:
    """0 for the current file, N for ``NAME.log.N``, None for anything else."""
    if name == current:
        return 0
    if not name.startswith(current):
        return None
    rotated = _ROTATED.search(name, len(current) - 4)
    return int(rotated[1]) if rotated and rotated.start() == len(current) - 4 else None


def find_file(log_dir: Path, console: str, name: str) -> LogFile | None:
    """The file `name` of `console`'s logs if it is one of them (by listing), else None."""
    for file in log_files(log_dir, console):
        if file.name == name:
            real = Path(os.path.realpath(file.path))
            return file if real.parent == Path(os.path.realpath(log_dir)) else None
    return None


def open_file(file: LogFile) -> int:
    """A read-only descriptor for `file`, refusing a symlink put in its place since listing."""
    fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{file.name}: not a regular file")
    return fd


def window(file: LogFile, around: int | None, size: int, line_bytes: int
           ) -> tuple[int, list[bytes]]:  # fmt: skip
    """The number of the first line shown of `file` and up to `size` lines, each cut at
    `line_bytes`: from a little before line `around` (1-based), else its last lines.
    Read as a stream: memory is bounded by the window, whatever the file."""
    try:
        fd = open_file(file)
    except OSError:
        return 1, []
    first = max(1, around - size // 5) if around is not None else 1
    kept: deque[bytes] = deque(maxlen=size)
    number = 0
    with os.fdopen(fd, "rb") as stream:
        for number, line in enumerate(stream, start=1):
            if number >= first:
                kept.append(line[:line_bytes].rstrip(b"\r\n"))
            if around is not None and len(kept) == size:
                break
    return max(1, number - len(kept) + 1), list(kept)


def search(
    files: list[LogFile],
    query: Query,
    limits: Limits = Limits(),
    clock: Callable[[], float] = time.monotonic,
) -> Result:
    """Lines of `files` (in order) that contain ``query.text`` and fall in the time range.

    A line without a stamp has the stamp of the last stamped line before it in its
    file; with a time range, lines before the first stamp are left out. A file last
    written before ``since`` is not read at all.
    """
    result, end = Result(), clock() + limits.seconds
    for file in files:
        if query.since is not None and file.mtime < query.since.timestamp():
            continue
        stopped = _search_file(file, query, limits, result, lambda: clock() > end)
        if stopped is not None:
            result.stopped = stopped if stopped is not _PAST else None
            break
    return result


def _search_file(
    file: LogFile, query: Query, limits: Limits, result: Result, late: Callable[[], bool]
) -> str | None:
    stamp: datetime | None = None
    for number, line in enumerate(_lines(file, result), start=1):
        stamp = _stamp_of(line) or stamp
        if _contains(line, query.text) and _in_range(stamp, query):
            result.matches.append(Match(file.name, number, stamp, line[:MAX_LINE]))
            result.bytes_found += min(len(line), MAX_LINE)
            if len(result.matches) >= limits.results:
                return f"{limits.results} results"
            if result.bytes_found >= limits.output:
                return f"{limits.output} bytes found"
        if query.until is not None and stamp is not None and stamp > query.until:
            return _PAST  # files are in time order: nothing later is in range
        if result.bytes_read >= limits.bytes:
            return f"{limits.bytes} bytes read"
        if number % 1024 == 0 and late():
            return f"{limits.seconds:g} s"
    return None


def _contains(line: bytes, text: bytes) -> bool:
    """`text` is in the line as stored, or as read once its colours are taken out
    (a search for ``epics> dbl`` finds the prompt the IOC coloured)."""
    return text in line or (b"\x1b" in line and text in ansi.strip(line))


def _in_range(stamp: datetime | None, query: Query) -> bool:
    if query.since is None and query.until is None:
        return True
    if stamp is None:
        return False
    if query.since is not None and stamp < query.since:
        return False
    return query.until is None or stamp <= query.until


def _stamp_of(line: bytes) -> datetime | None:
    found = _STAMP.match(line)
    if found is None:
        return None
    try:
        when = datetime.fromisoformat(found[1].decode())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.astimezone()


def _lines(file: LogFile, result: Result) -> Iterator[bytes]:
    """The file's lines without their ends; bytes read are counted in `result`."""
    try:
        fd = open_file(file)
    except OSError:
        return
    with os.fdopen(fd, "rb", buffering=READ_CHUNK) as stream:
        for line in stream:
            result.bytes_read += len(line)
            yield line.rstrip(b"\r\n")
