"""ConsoleLog against real files: no mocks of os, a fake wall clock and monotonic clock.

Faults are real and work as root (permissions do not stop root): a parent that is
a regular file (ENOTDIR), a symlink to /dev/full (ENOSPC), an fd closed under the
log (EBADF) and a 64 KiB tmpfs that fills up (a real partial write).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consrv.consolelog import ConsoleLog, sanitize_event
from tests.chunking import split_at

T0 = datetime(2026, 11, 21, 9, 18, 26, 123456, tzinfo=UTC)
S0 = b"2026-11-21T09:18:26.123+00:00 "
EVENT_RE = re.compile(rb"^\[consrv \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d\] ")


class FakeClock:
    """Wall clock: returns ``now``; ``step`` is added after every reading."""

    def __init__(self, step: timedelta = timedelta(0)) -> None:
        self.now = T0
        self.step = step
        self.calls = 0

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        self.calls += 1
        return now


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def stamp(seconds: int) -> bytes:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").encode() + b" "


def make_log(
    path: Path,
    *,
    timestamps: bool = False,
    max_size: int = 10 * 2**20,
    keep: int = 5,
    retry_interval: float = 1.0,
) -> tuple[ConsoleLog, FakeMonotonic]:
    mono = FakeMonotonic()
    log = ConsoleLog(
        path,
        timestamps=timestamps,
        max_size=max_size,
        keep=keep,
        clock=FakeClock(),
        monotonic=mono,
        retry_interval=retry_interval,
    )
    return log, mono


def event_lines(content: bytes) -> list[bytes]:
    return [line for line in content.split(b"\n") if line.startswith(b"[consrv ")]


# -- plain output --------------------------------------------------------------


def test_output_is_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "ioc1.log"
    log, _ = make_log(path)
    chunks = [
        b"epics> ",
        b"\xff\xfe\x00\x1b[31mred\x1b[0m\r\n",
        b"\xc3(\xed\xa0\x80 bad utf-8",
        b"",
    ]
    for chunk in chunks:
        log.write_output(chunk)
    assert path.read_bytes() == b"".join(chunks)  # on disk with no close
    assert log.bytes_written == len(b"".join(chunks))
    assert (log.write_errors, log.bytes_lost, log.failing) == (0, 0, False)
    log.close()
    log.close()


def test_created_lazily_with_modes(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "ioc1.log"
    log, _ = make_log(path)
    assert not path.parent.exists()
    log.write_output(b"x")
    assert stat.S_IMODE(path.stat().st_mode) & ~0o640 == 0
    assert stat.S_IMODE(path.parent.stat().st_mode) & ~0o750 == 0
    log.close()


def test_appends_to_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    path.write_bytes(b"old\n")
    log, _ = make_log(path)
    log.write_output(b"new\n")
    assert path.read_bytes() == b"old\nnew\n"
    log.close()


def test_write_after_close_reopens(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path)
    log.write_output(b"a")
    log.close()
    log.write_output(b"b")
    assert path.read_bytes() == b"ab"
    log.close()


# -- timestamps ----------------------------------------------------------------


def test_stamp_format_and_every_line_start(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path, timestamps=True)
    log.write_output(b"one\r\ntwo\n\nfour\rstill four\n")
    assert path.read_bytes() == (
        S0 + b"one\r\n" + S0 + b"two\n" + S0 + b"\n" + S0 + b"four\rstill four\n"
    )
    log.close()


def test_stamp_is_time_of_the_lines_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    clock = FakeClock(step=timedelta(seconds=1))
    log = ConsoleLog(path, timestamps=True, clock=clock)
    log.write_output(b"a\nb")  # t=0: stamps "a" and "b"
    log.write_output(b"c")  # continuation: no stamp, no clock reading
    log.write_output(b"d\n")  # continuation ending the line
    log.write_output(b"e\r")  # t=1
    log.write_output(b"\nf\n")  # t=2: stamps "f" only
    assert path.read_bytes() == (
        stamp(0) + b"a\n" + stamp(0) + b"bcd\n" + stamp(1) + b"e\r\n" + stamp(2) + b"f\n"
    )
    assert clock.calls == 3
    log.close()


def test_default_clock_is_local_time_with_offset(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log = ConsoleLog(path, timestamps=True)
    log.write_output(b"x\n")
    log.write_event("hello")
    first, second, _ = path.read_bytes().split(b"\n")
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d x", first)
    assert EVENT_RE.match(second)
    assert second.endswith(b"] hello")
    log.close()


def reference(stream: bytes, stamp_bytes: bytes) -> bytes:
    """The stamped file, built byte by byte."""
    out, at_start = bytearray(), True
    for byte in stream:
        if at_start:
            out += stamp_bytes
        out.append(byte)
        at_start = byte == ord("\n")
    return bytes(out)


@given(
    stream=st.lists(st.sampled_from([b"a", b"\n", b"\r", b"\r\n", b"\xff", b"\x00"])).map(b"".join),
    cuts=st.lists(st.integers(min_value=0, max_value=64)),
)
def test_any_chunking_gives_the_same_file(stream: bytes, cuts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ioc1.log"
        log = ConsoleLog(path, timestamps=True, clock=FakeClock())
        for chunk in split_at(stream, cuts):
            log.write_output(chunk)
        log.close()
        content = path.read_bytes() if path.exists() else b""
    assert content == reference(stream, S0)


# -- events --------------------------------------------------------------------


def test_event_lines_stand_alone(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path, timestamps=True)
    log.write_event("attach alice rw (console@127.0.0.1)")
    log.write_output(b"epics> ")
    log.write_event("detach alice")
    log.write_output(b"dbl\n")
    assert path.read_bytes() == (
        b"[consrv 2026-11-21T09:18:26.123+00:00] attach alice rw (console@127.0.0.1)\n"
        + S0
        + b"epics> \n"
        + b"[consrv 2026-11-21T09:18:26.123+00:00] detach alice\n"
        + S0
        + b"dbl\n"
    )
    log.close()


def test_event_text_cannot_forge_a_line(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path)
    log.write_event("bob\n[consrv fake] root logged in\r\x1b[2K\u2028\x85\udcff")
    content = path.read_bytes()
    assert content.count(b"\n") == 1
    assert len(event_lines(content)) == 1
    assert content.endswith(
        b"] bob\\x0a[consrv fake] root logged in\\x0d\\x1b[2K\\u2028\\x85\\udcff\n"
    )
    log.close()


def test_sanitize_event() -> None:
    assert sanitize_event("plain text é") == "plain text é"
    assert sanitize_event("a\\x0a\tb") == "a\\\\x0a\\x09b"
    assert sanitize_event("x" * 2000) == "x" * 1000 + "[...]"
    assert sanitize_event("\n" * 2000) == "\\x0a" * 250 + "[...]"


# -- rotation ------------------------------------------------------------------


def test_rotation_sizes_names_retention_and_order(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path, max_size=100, keep=2)
    chunks = [b"%02d%s\n" % (i, b"x" * 37) for i in range(12)]  # 40 bytes each
    for chunk in chunks:
        log.write_output(chunk)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ioc1.log", "ioc1.log.1", "ioc1.log.2"]
    files = [tmp_path / "ioc1.log.2", tmp_path / "ioc1.log.1", path]
    assert [f.stat().st_size for f in files] == [80, 80, 80]
    assert b"".join(f.read_bytes() for f in files) == b"".join(chunks[6:])
    assert log.rotations == 5
    assert log.bytes_written == 480
    log.close()


def test_oversized_write_goes_whole_into_a_fresh_file(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, _ = make_log(path, max_size=10, keep=1)
    log.write_output(b"y" * 25)  # empty file: no rotation, written whole
    log.write_output(b"a")
    log.write_output(b"z" * 30)
    assert (tmp_path / "ioc1.log.1").read_bytes() == b"a"
    assert path.read_bytes() == b"z" * 30
    assert log.rotations == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ioc1.log", "ioc1.log.1"]
    log.close()


def test_existing_big_file_is_rotated_and_keep_zero_deletes(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    path.write_bytes(b"o" * 50)
    log, _ = make_log(path, max_size=50, keep=0)
    log.write_output(b"new")
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["ioc1.log"]
    log.close()


# -- failures, for real --------------------------------------------------------


def test_parent_is_a_file_then_a_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consrv.consolelog")
    parent = tmp_path / "logs"
    parent.write_bytes(b"not a directory")
    log, mono = make_log(parent / "ioc1.log", retry_interval=2.0)
    log.write_output(b"lost1\n")
    assert (log.failing, log.write_errors, log.bytes_lost) == (True, 1, 6)
    assert log.last_error is not None
    assert log.last_error.startswith("ENOTDIR: Not a directory")
    mono.t += 2.0
    log.write_event("attach alice rw")  # a retry that fails again: one more error
    assert log.write_errors == 2
    parent.unlink()
    parent.mkdir()
    mono.t += 2.0
    log.write_output(b"back\n")
    assert not log.failing
    lost = 6 + len(b"[consrv 2026-11-21T09:18:26.123+00:00] attach alice rw\n")
    assert log.bytes_lost == lost
    assert (parent / "ioc1.log").read_bytes() == (
        b"[consrv 2026-11-21T09:18:26.123+00:00] log resumed after %d bytes lost\nback\n" % lost
    )
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert len(levels) == 2
    assert levels[0][0] == "WARNING"
    assert str(parent / "ioc1.log") in levels[0][1]
    assert "Not a directory" in levels[0][1]
    assert levels[1] == (
        "INFO",
        f"console log {parent / 'ioc1.log'}: resumed after {lost} bytes lost",
    )
    log.close()


def test_dev_full_then_a_normal_file(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    path.symlink_to("/dev/full")
    log, mono = make_log(path, timestamps=True)
    log.write_output(b"partial line")
    log.write_output(b" more\n")  # within retry_interval: lost, not an error
    assert (log.write_errors, log.bytes_lost) == (1, 18)
    assert log.last_error == "ENOSPC: No space left on device"
    mono.t += 1.0
    log.write_output(b"again\n")
    assert (log.write_errors, log.bytes_lost, log.bytes_written) == (2, 24, 0)
    path.unlink()
    mono.t += 1.0
    log.write_output(b"ok")
    assert path.read_bytes() == (
        b"[consrv 2026-11-21T09:18:26.123+00:00] log resumed after 24 bytes lost\n" + S0 + b"ok"
    )
    log.write_event("end")
    assert path.read_bytes().endswith(b"ok\n[consrv 2026-11-21T09:18:26.123+00:00] end\n")
    assert (log.failing, log.write_errors, log.bytes_lost) == (False, 2, 24)
    log.close()


def test_no_attempt_before_retry_interval(tmp_path: Path) -> None:
    parent = tmp_path / "logs"
    parent.write_bytes(b"")
    log, mono = make_log(parent / "ioc1.log", retry_interval=5.0)
    log.write_output(b"a")
    parent.unlink()
    parent.mkdir()  # fixed, but the log must not look before the interval is over
    for _ in range(3):
        mono.t += 1.0
        log.write_output(b"bb")
    mono.t += 1.99
    log.write_event("x")
    assert not (parent / "ioc1.log").exists()
    assert (log.write_errors, log.failing) == (1, True)
    assert log.bytes_lost == 1 + 6 + len(b"[consrv 2026-11-21T09:18:26.123+00:00] x\n")
    mono.t += 0.01
    log.write_output(b"c")
    assert not log.failing
    assert (parent / "ioc1.log").read_bytes().endswith(b"lost\nc")
    log.close()


def test_fd_closed_under_the_log_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "ioc1.log"
    log, mono = make_log(path)
    log.write_output(b"first ")
    assert log._fd is not None  # the one white-box poke: simulate a stray close()
    os.close(log._fd)
    log.write_output(b"gone")
    assert log.last_error is not None
    assert log.last_error.startswith("EBADF")
    mono.t += 1.0
    log.write_output(b"second\n")
    assert path.read_bytes() == (
        b"first \n[consrv 2026-11-21T09:18:26.123+00:00] log resumed after 4 bytes lost\nsecond\n"
    )
    log.close()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB file system (we are root); unmounted afterwards."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_full_disk_partial_write_and_recovery(small_tmpfs: Path) -> None:
    filler = small_tmpfs / "filler"
    filler.write_bytes(b"f" * 32768)
    path = small_tmpfs / "ioc1.log"
    log, mono = make_log(path)
    log.write_output(b"y" * 50000)  # a short write, then ENOSPC
    size = path.stat().st_size
    assert 0 < size < 50000
    assert (log.bytes_written, log.bytes_lost, log.write_errors) == (size, 50000 - size, 1)
    assert log.last_error == "ENOSPC: No space left on device"
    filler.unlink()
    mono.t += 1.0
    log.write_output(b"ok\n")
    assert path.read_bytes() == b"y" * size + (
        b"\n[consrv 2026-11-21T09:18:26.123+00:00] log resumed after %d bytes lost\nok\n"
        % (50000 - size)
    )
    assert log.bytes_written == path.stat().st_size
    log.close()
