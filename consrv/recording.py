"""The console recording: its output with timing, as asciicast v2, beside its log.

One file per console, ``NAME.cast`` next to ``NAME.log``, rotated with the log's
settings (``NAME.cast.1`` … ``NAME.cast.keep``). Each file starts with its own
header line, so every file, current or rotated, plays on its own (``asciinema
play NAME.cast.3``). Knows nothing of trio, SSH or viewers: the console calls it
synchronously beside its log. Rules:

1. Nothing here raises on I/O: an ``OSError`` is counted (``write_errors``,
   ``bytes_lost``, ``last_error``), logged once per failure streak, and no write is
   tried again for ``retry_interval`` seconds. The console never stops for it.
2. One ``os.write`` per event on an ``O_APPEND`` fd: the bytes are in the kernel
   when the call returns; nothing is buffered, shutdown needs no flush.
3. Output events (``"o"``) carry the output as text: bytes that are not UTF-8
   become U+FFFD (a character split across two reads is kept whole). The log keeps
   the exact bytes; the recording keeps what a terminal would show, and when.
4. Marker events (``"m"``) carry consrv's own event lines (attach, detach, write
   lock, procServ keys, IOC actions, upstream up/down), sanitised like the log's.
5. Times are seconds (milliseconds) since the file's header ``timestamp``, from the
   monotonic clock while consrv runs, so they never go backwards within a run.
   A file continued after a restart takes up from the wall clock.

v2 rather than v3 on disk: Debian 12's asciinema 2.2 plays v2 only, and absolute
times let a reader find a time by bisection instead of summing every interval.
"""

from __future__ import annotations

import codecs
import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import orjson

from consrv.consolelog import _describe, open_for_append, rotate_files, sanitize_event

log = logging.getLogger("consrv.recording")

__all__ = ["HEIGHT", "WIDTH", "Recording", "header_line"]

_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
# procServ consoles have no window size: the recording says this nominal one.
WIDTH, HEIGHT = 80, 24
HEADER_LIMIT = 4096  # a header line longer than this is not one of ours


def header_line(timestamp: int, title: str, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """An asciicast v2 header line."""
    header = {"version": 2, "width": width, "height": height, "timestamp": timestamp}
    header["title"] = title  # type: ignore[assignment]
    return json.dumps(header, separators=(",", ":")).encode() + b"\n"


def _read_timestamp(fd: int) -> int | None:
    """The ``timestamp`` of the v2 header at the start of `fd`'s file, or None."""
    head = os.pread(fd, HEADER_LIMIT, 0).split(b"\n", 1)[0]
    try:
        header = json.loads(head)
    except ValueError:
        return None
    if not isinstance(header, dict) or header.get("version") != 2:
        return None
    stamp = header.get("timestamp")
    return stamp if isinstance(stamp, int) else None


class Recording:
    """One console's asciicast files: output and marker events, rotation, failure counters."""

    def __init__(
        self,
        path: Path,
        *,
        title: str = "",
        max_size: int = 10 * 2**20,
        keep: int = 5,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        retry_interval: float = 1.0,
    ) -> None:
        if max_size <= 0 or keep < 0 or retry_interval < 0:
            raise ValueError("need max_size > 0, keep >= 0, retry_interval >= 0")
        self.path, self.title = Path(path), title or Path(path).stem
        self.max_size, self.keep, self.retry_interval = max_size, keep, retry_interval
        self._clock, self._monotonic = clock, monotonic
        self._fd: int | None = None
        self._size = 0
        self._zero = 0.0  # the monotonic time of the current file's header timestamp
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._retry_at: float | None = None  # set while failing
        self.bytes_written = 0
        self.write_errors = 0
        self.rotations = 0
        self.bytes_lost = 0
        self.last_error: str | None = None

    @property
    def failing(self) -> bool:
        return self._retry_at is not None

    def write_output(self, data: bytes) -> None:
        """Record a chunk of console output (never raises)."""
        if data.isascii() and not self._decoder.getstate()[0]:
            text = data.decode("ascii")  # the common case, at memory speed
        else:
            text = self._decoder.decode(data)
        if text:
            self._event(b'"o",', text, len(data))

    def write_marker(self, text: str) -> None:
        """Record a marker: one of consrv's event lines (never raises)."""
        self._event(b'"m",', sanitize_event(text), 0)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with suppress(OSError):
                os.close(fd)

    # -- writing ---------------------------------------------------------------

    def _event(self, code: bytes, text: str, payload: int) -> None:
        if self._retry_at is not None and self._monotonic() < self._retry_at:
            self.bytes_lost += payload
            return
        body = orjson.dumps(text)  # UTF-8, escaped only where JSON needs it
        try:
            fd = self._fd_for(len(body) + 24)
            head = b"[%.3f," % max(0.0, self._monotonic() - self._zero) + code
            self._write_all(fd, (head, body, b"]\n"))
        except OSError as exc:
            self._fail(exc, payload)
            return
        if self._retry_at is not None:
            log.info("recording %s: resumed", self.path)
            self._retry_at = None

    def _write_all(self, fd: int, parts: tuple[bytes, ...]) -> None:
        """One ``writev`` (no copy of a big chunk); a short write goes on with the rest."""
        done, total = os.writev(fd, parts), sum(map(len, parts))
        self._count(done)
        if done < total:
            rest = memoryview(b"".join(parts))
            while done < total:
                step = os.write(fd, rest[done:])
                done += step
                self._count(step)

    def _count(self, n: int) -> None:
        self.bytes_written += n
        self._size += n

    def _fail(self, exc: OSError, lost: int) -> None:
        self.write_errors += 1
        self.bytes_lost += lost
        self.last_error = _describe(exc)
        self.close()
        if self._retry_at is None:
            log.warning(
                "recording %s: %s; not recording, retrying every %.1f s",
                self.path,
                self.last_error,
                self.retry_interval,
            )
        self._retry_at = self._monotonic() + self.retry_interval

    # -- the files -------------------------------------------------------------

    def _fd_for(self, n: int) -> int:
        """The open fd (with a header), rotated first when `n` more bytes would not fit."""
        fd = self._fd if self._fd is not None else self._open()
        if self._size + n > self.max_size and self._size > HEADER_LIMIT // 8:
            fd = self._rotate()
        return fd

    def _open(self) -> int:
        fd = open_for_append(self.path, _OPEN_FLAGS)  # read-write: the header is read back
        self._fd = fd
        self._size = os.fstat(fd).st_size
        stamp = _read_timestamp(fd) if self._size else None
        if stamp is not None:  # continue this file: its times go on from its header
            self._zero = self._monotonic() - (self._clock() - stamp)
            return fd
        if self._size:  # not a recording of ours: keep it aside, start a fresh one
            return self._rotate()
        self._start_file(fd)
        return fd

    def _start_file(self, fd: int) -> None:
        now = self._clock()
        stamp = int(now)
        self._zero = self._monotonic() - (now - stamp)
        self._write_all(fd, (header_line(stamp, self.title),))

    def _rotate(self) -> int:
        """NAME.cast → NAME.cast.1 …, as the log rotates; a fresh file with a header."""
        self.close()
        rotate_files(self.path, self.keep)
        self.rotations += 1
        return self._open()
