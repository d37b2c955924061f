"""The console log: one append-only file per console, with size rotation.

Knows nothing of trio, SSH or viewers: the console's reader task calls it
synchronously for every chunk of output. Rules:

1. Nothing here raises on I/O: every ``OSError`` becomes counters, ``last_error``
   and one WARNING per failure streak. The console never stops for its log.
2. One ``os.write`` per call on a raw fd (looping only on short writes), so the
   bytes are in the kernel when the call returns and shutdown needs no flush.
3. Output bytes are written as they came (binary, invalid UTF-8 included). With
   ``timestamps`` a stamp is put before the first byte of each line, taken when
   that byte is written; lines end at ``\\n``.
4. Event lines ``[consrv <stamp>] <text>`` always stand on a line of their own and
   their text is sanitised, so no user-supplied string can forge a log line.
5. Failure accounting: each failed *attempt* (open, rotate or write) counts one
   ``write_errors``; after a failure no attempt is made for ``retry_interval``
   seconds (injected monotonic clock) and calls in between only add to
   ``bytes_lost``. ``bytes_lost`` counts payload bytes (the output chunk, or the
   event line) that did not reach the file; it is exact without timestamps, and
   bytes that did reach the file before a write failed count in ``bytes_written``.
   The first write after a streak is preceded by
   ``[consrv <stamp>] log resumed after N bytes lost``.

The "at start of line" state follows what is in the file (the files, across
rotations, read in order), not what was offered: lost bytes do not change it.
``close()`` closes the fd; a later write would open the file again.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime
from pathlib import Path

log = logging.getLogger("consrv.consolelog")

_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
FILE_MODE = 0o640
DIR_MODE = 0o750
EVENT_TEXT_LIMIT = 1000


def local_now() -> datetime:
    """The current local time, with its UTC offset."""
    return datetime.now().astimezone()


def sanitize_event(text: str, limit: int = EVENT_TEXT_LIMIT) -> str:
    """``text`` made safe for one log line: no control or separator characters.

    Non-printable characters become ``\\xNN`` / ``\\uNNNN`` escapes and a backslash
    is doubled, so an escape in the log is never ambiguous. The result is capped
    at ``limit`` characters, with ``[...]`` appended when cut.
    """
    if not text.isprintable() or "\\" in text:
        text = "".join(_safe_char(c) for c in text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "[...]"


def _safe_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    text = f"{name}: {exc.strerror or exc}"
    return f"{text} ({exc.filename})" if exc.filename else text


def open_for_append(path: Path, flags: int = _OPEN_FLAGS) -> int:
    """An fd appending to ``path``, its directory made first if it is missing (the log
    and the recording open their files alike; the recording also reads its header)."""
    try:
        return os.open(path, flags, FILE_MODE)
    except FileNotFoundError:
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        return os.open(path, flags, FILE_MODE)


def rotate_files(path: Path, keep: int) -> None:
    """PATH.(keep-1) → PATH.keep ... PATH → PATH.1 (PATH removed when ``keep`` is 0): the
    rotation a console's log and its recording share."""

    def rotated(i: int) -> Path:
        return path.with_name(f"{path.name}.{i}")

    for i in range(keep - 1, 0, -1):
        with suppress(FileNotFoundError):
            os.replace(rotated(i), rotated(i + 1))
    with suppress(FileNotFoundError):
        if keep > 0:
            os.replace(path, rotated(1))
        else:
            os.unlink(path)


class ConsoleLog:
    """One console's log file: output bytes, event lines, rotation, failure counters."""

    def __init__(
        self,
        path: Path,
        *,
        timestamps: bool = False,
        max_size: int = 10 * 2**20,
        keep: int = 5,
        clock: Callable[[], datetime] = local_now,
        monotonic: Callable[[], float] = time.monotonic,
        retry_interval: float = 1.0,
    ) -> None:
        if max_size <= 0 or keep < 0 or retry_interval < 0:
            raise ValueError("need max_size > 0, keep >= 0, retry_interval >= 0")
        self.path = Path(path)
        self.timestamps = timestamps
        self.max_size = max_size
        self.keep = keep
        self.retry_interval = retry_interval
        self._clock = clock
        self._monotonic = monotonic
        self._fd: int | None = None
        self._size = 0
        self._at_line_start = True
        self._failing = False
        self._retry_at = 0.0
        self._lost_in_streak = 0
        self.bytes_written = 0
        self.write_errors = 0
        self.rotations = 0
        self.bytes_lost = 0
        self.last_error: str | None = None

    @property
    def failing(self) -> bool:
        """True from a failed attempt until the next successful write."""
        return self._failing

    @property
    def at_line_start(self) -> bool:
        """Whether the next output byte starts a line (stamped, with ``timestamps``).
        Set by a console handed over from the previous consrv process (handover.py)."""
        return self._at_line_start

    @at_line_start.setter
    def at_line_start(self, value: bool) -> None:
        self._at_line_start = value

    def write_output(self, data: bytes) -> None:
        """Log a chunk of console output (never raises)."""
        if not data or self._waiting(len(data)):
            return
        if not self._failing and not self.timestamps:
            self._write(data, len(data))  # the hot path: one os.write
            return
        head, at_line_start = self._head()
        body = self._stamped(data, at_line_start) if self.timestamps else data
        self._write(head + body, len(data))

    def write_event(self, text: str) -> None:
        """Log ``[consrv <stamp>] <text>`` on a line of its own (never raises)."""
        line = f"[consrv {self._stamp()}] {sanitize_event(text)}\n".encode()
        if self._waiting(len(line)):
            return
        head, at_line_start = self._head()
        self._write(head + (line if at_line_start else b"\n" + line), len(line))

    def close(self) -> None:
        """Close the file (idempotent; nothing is buffered, so nothing is lost)."""
        self._close_fd()

    # -- building what to write ------------------------------------------------

    def _stamp(self) -> str:
        return self._clock().isoformat(timespec="milliseconds")

    def _stamped(self, data: bytes, at_line_start: bool) -> bytes:
        """``data`` with a stamp before the first byte of every line it starts."""
        if not at_line_start and data.find(b"\n", 0, len(data) - 1) < 0:
            return data
        stamp = self._stamp().encode() + b" "
        body = data.replace(b"\n", b"\n" + stamp)
        if data.endswith(b"\n"):
            body = body[: -len(stamp)]
        return stamp + body if at_line_start else body

    def _head(self) -> tuple[bytes, bool]:
        """The resume line owed after a failure streak, and the line state after it."""
        if not self._failing:
            return b"", self._at_line_start
        text = f"log resumed after {self._lost_in_streak} bytes lost"
        line = f"[consrv {self._stamp()}] {text}\n".encode()
        return (line if self._at_line_start else b"\n" + line), True

    # -- writing -------------------------------------------------------------

    def _waiting(self, payload: int) -> bool:
        """While failing and before the next retry: count ``payload`` lost, say True."""
        if not self._failing or self._monotonic() >= self._retry_at:
            return False
        self.bytes_lost += payload
        self._lost_in_streak += payload
        return True

    def _write(self, buf: bytes, payload: int) -> None:
        before = self.bytes_written
        try:
            self._write_all(self._fd_for(len(buf)), buf)
        except OSError as exc:
            written = self.bytes_written - before
            if written:
                self._at_line_start = buf[written - 1] == ord("\n")
            self._fail(exc, min(payload, len(buf) - written))
            return
        self._at_line_start = buf.endswith(b"\n")
        if self._failing:
            self._resumed()

    def _write_all(self, fd: int, buf: bytes) -> None:
        n = os.write(fd, buf)
        self._count(n)
        if n < len(buf):
            view = memoryview(buf)
            while n < len(buf):
                step = os.write(fd, view[n:])
                self._count(step)
                n += step

    def _count(self, n: int) -> None:
        self.bytes_written += n
        self._size += n

    def _fail(self, exc: OSError, lost: int) -> None:
        self.write_errors += 1
        self.bytes_lost += lost
        self._lost_in_streak += lost
        self.last_error = _describe(exc)
        self._close_fd()
        self._retry_at = self._monotonic() + self.retry_interval
        if not self._failing:
            self._failing = True
            log.warning(
                "console log %s: %s; dropping output, retrying every %.1f s",
                self.path,
                self.last_error,
                self.retry_interval,
            )

    def _resumed(self) -> None:
        log.info("console log %s: resumed after %d bytes lost", self.path, self._lost_in_streak)
        self._failing = False
        self._lost_in_streak = 0

    # -- the file --------------------------------------------------------------

    def _fd_for(self, n: int) -> int:
        """The open fd, rotated first when ``n`` more bytes would exceed ``max_size``."""
        fd = self._fd if self._fd is not None else self._open()
        if self._size > 0 and self._size + n > self.max_size:
            fd = self._rotate()
        return fd

    def _open(self) -> int:
        fd = open_for_append(self.path)
        self._fd = fd
        self._size = os.fstat(fd).st_size
        return fd

    def _rotate(self) -> int:
        """NAME.log.(keep-1) → NAME.log.keep ... NAME.log → NAME.log.1; open a fresh one."""
        self._close_fd()
        rotate_files(self.path, self.keep)
        self.rotations += 1
        return self._open()

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with suppress(OSError):
                os.close(fd)
