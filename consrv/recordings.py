"""Reading a console's recordings (current and rotated): listing, a time range, export.

Owns which files belong to a console (``NAME.cast`` and ``NAME.cast.N`` in the log
directory, regular files only: never a symlink, never a path from a user), the
events in a time range read from them, bounded in bytes read, events and time, and
the export of a range as one asciicast v2 file. Also decides, from the config,
whether a console is recorded (`recording_for`). Knows nothing of trio, SSH or
HTTP: reading is synchronous, callers run it in a worker thread.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from consrv.config import Config
from consrv.logfiles import LogFile, open_file
from consrv.names import validate_console_name
from consrv.recording import HEADER_LIMIT, HEIGHT, WIDTH, Recording, header_line

__all__ = ["Event", "Limits", "Range", "cast_files", "export", "read_range", "recording_for"]

_ROTATED = re.compile(r"\.cast\.([1-9][0-9]{0,3})\Z")
READ_CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    bytes: int = 256 << 20  # bytes read over all files
    output: int = 64 << 20  # bytes of event data kept
    seconds: float = 10.0


@dataclass(frozen=True)
class Event:
    time: float  # wall-clock seconds (epoch)
    code: str  # "o" output, "m" marker
    data: str


@dataclass
class Range:
    events: list[Event] = field(default_factory=list)
    bytes_read: int = 0
    bytes_kept: int = 0
    stopped: str | None = None  # which limit cut the range short, or None


def recording_for(config: Config, name: str, current: Recording | None = None) -> Recording | None:
    """The console's recording under `config` (``log.record``), reusing `current` if it fits."""
    log_dir, log = config.log_dir, config.log
    if log_dir is None or not log.record:
        if current is not None:
            current.close()
        return None
    path = log_dir / f"{name}.cast"
    if current is not None and current.path == path:
        current.max_size, current.keep = log.max_size, log.keep
        return current
    if current is not None:
        current.close()
    return Recording(path, title=name, max_size=log.max_size, keep=log.keep)


def cast_files(log_dir: Path, console: str) -> list[LogFile]:
    """The console's recordings, oldest first (``NAME.cast.N`` … ``NAME.cast``).

    Only regular files directly in `log_dir`. Raises InvalidName for a bad name.
    """
    validate_console_name(console)
    current, found = f"{console}.cast", []
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return []
    for entry in entries:
        if entry.name == current:
            order = 0
        elif entry.name.startswith(current) and (
            rotated := _ROTATED.fullmatch(entry.name, len(current) - 5)
        ):
            order = int(rotated[1])
        else:
            continue
        if entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            file = LogFile(entry.name, Path(entry.path), info.st_size, info.st_mtime)
            found.append((order, file))
    return [file for _, file in sorted(found, key=lambda pair: -pair[0])]


def read_range(
    files: list[LogFile],
    since: datetime | None = None,
    until: datetime | None = None,
    limits: Limits = Limits(),
    clock: Callable[[], float] = time.monotonic,
) -> Range:
    """The events of `files` (oldest first) between `since` and `until`, in time order.

    A file last written before `since` is not read. Times never go backwards: an
    event stamped before the one read last takes that one's time.
    """
    low = since.timestamp() if since is not None else float("-inf")
    high = until.timestamp() if until is not None else float("inf")
    result, end, last = Range(), clock() + limits.seconds, float("-inf")
    for file in files:
        if file.mtime < low:
            continue
        for number, (when, line) in enumerate(_timed_lines(file, result), start=1):
            when = max(when, last)
            last = when
            if when > high:
                return result
            if when >= low and not _keep(result, when, line, limits):
                return result
            if number % 1024 == 0 and clock() > end:
                result.stopped = f"{limits.seconds:g} s"
                return result
            if result.bytes_read >= limits.bytes:
                result.stopped = f"{limits.bytes} bytes read"
                return result
    return result


def _keep(result: Range, when: float, line: bytes, limits: Limits) -> bool:
    try:
        _, code, data = json.loads(line)
    except ValueError:
        return True  # a torn line (a crash mid-write): skipped
    if code not in ("o", "m") or not isinstance(data, str):
        return True
    result.events.append(Event(when, code, data))
    result.bytes_kept += len(data)
    if result.bytes_kept >= limits.output:
        result.stopped = f"{limits.output} bytes of output"
        return False
    return True


def _timed_lines(file: LogFile, result: Range) -> Iterator[tuple[float, bytes]]:
    """Each event line of `file` with its wall-clock time (the header's plus its own)."""
    try:
        fd = open_file(file)
    except OSError:
        return
    with os.fdopen(fd, "rb", buffering=READ_CHUNK) as stream:
        head = stream.readline(HEADER_LIMIT)
        result.bytes_read += len(head)
        zero = _timestamp(head)
        if zero is None:
            return
        for line in stream:
            result.bytes_read += len(line)
            comma = line.find(b",", 1, 32)
            try:
                yield zero + float(line[1:comma]), line
            except ValueError:
                continue


def _timestamp(head: bytes) -> float | None:
    try:
        header = json.loads(head)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != 2:
        return None
    stamp = header.get("timestamp")
    return float(stamp) if isinstance(stamp, int | float) else None


def export(events: Iterable[Event], title: str, start: float | None = None) -> Iterator[bytes]:
    """`events` as one asciicast v2 file (header line first), times from `start`.

    `start` defaults to the first event's time; the header's timestamp is its whole
    second, so absolute times are kept.
    """
    it = iter(events)
    first = next(it, None)
    zero = int(start if start is not None else (first.time if first is not None else time.time()))
    yield header_line(zero, title, WIDTH, HEIGHT)
    if first is None:
        return
    for event in _chain(first, it):
        yield b"[%.3f," % (event.time - zero) + _encode(event) + b"]\n"


def _chain(first: Event, rest: Iterator[Event]) -> Iterator[Event]:
    yield first
    yield from rest


def _encode(event: Event) -> bytes:
    pair = json.dumps([event.code, event.data], ensure_ascii=False, separators=(",", ":"))
    return pair[1:-1].encode()
