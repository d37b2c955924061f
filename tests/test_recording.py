"""Recording and recordings against real files: fake clocks, no mocks of os.

Faults are real: a symlink to /dev/full gives ENOSPC on write.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from consrv.recording import Recording
from consrv.recordings import Event, cast_files, export, read_range
from tests.chunking import split_at

T0 = 1_796_000_000.25  # wall clock at the start


class Clocks:
    """A wall clock and a monotonic clock that move together (``advance``)."""

    def __init__(self) -> None:
        self.wall, self.mono = T0, 500.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def recording(path: Path, clocks: Clocks, **kwargs: int) -> Recording:
    return Recording(
        path, title="ioc1", clock=lambda: clocks.wall, monotonic=lambda: clocks.mono, **kwargs
    )


def lines(path: Path) -> list[object]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_header_output_and_markers(tmp_path: Path) -> None:
    clocks = Clocks()
    rec = recording(tmp_path / "ioc1.cast", clocks)
    rec.write_output(b"epics> ")
    clocks.advance(1.5)
    rec.write_marker("attach alice rw")
    clocks.advance(40)
    rec.write_output(b"dbl\r\n\x1b[1mA\x1b[0m \xff\n")
    rec.close()
    header, *events = lines(tmp_path / "ioc1.cast")
    assert header == {
        "version": 2, "width": 80, "height": 24, "timestamp": int(T0), "title": "ioc1"
    }  # fmt: skip
    assert events == [
        [0.25, "o", "epics> "],
        [1.75, "m", "attach alice rw"],
        [41.75, "o", "dbl\r\n\x1b[1mA\x1b[0m \ufffd\n"],
    ]


@given(st.lists(st.integers(0, 100), max_size=6))
def test_utf8_split_across_reads_is_kept_whole(cuts: list[int]) -> None:
    data = "µs élan ✓ IOC 🚀\n".encode() * 4
    with _tmp() as tmp:
        clocks = Clocks()
        rec = recording(tmp / "x.cast", clocks)
        for chunk in split_at(data, cuts):
            rec.write_output(chunk)
        rec.close()
        text = "".join(str(e[2]) for e in lines(tmp / "x.cast")[1:])  # type: ignore[index]
        assert text == data.decode()


def _tmp() -> _TmpDir:
    return _TmpDir()


class _TmpDir:
    def __enter__(self) -> Path:
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        return Path(self._dir.name)

    def __exit__(self, *exc: object) -> None:
        self._dir.cleanup()


def test_rotation_keeps_a_header_in_every_file(tmp_path: Path) -> None:
    clocks = Clocks()
    rec = recording(tmp_path / "ioc1.cast", clocks, max_size=2000, keep=2)
    for i in range(200):
        clocks.advance(0.5)
        rec.write_output(b"line %d\r\n" % i)
    rec.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ioc1.cast", "ioc1.cast.1", "ioc1.cast.2"]
    assert rec.rotations >= 2
    for name in names:
        path = tmp_path / name
        assert path.stat().st_size <= 2000
        assert lines(path)[0]["version"] == 2  # type: ignore[index]
    files = cast_files(tmp_path, "ioc1")
    assert [f.name for f in files] == ["ioc1.cast.2", "ioc1.cast.1", "ioc1.cast"]
    got = read_range(files).events
    numbers = [int(e.data.split()[1]) for e in got]
    assert numbers == list(range(numbers[0], 200))
    for event, n in zip(got, numbers, strict=True):
        assert abs(event.time - (T0 + 0.5 * (n + 1))) < 0.002


def test_a_restart_continues_the_file_with_wall_clock_times(tmp_path: Path) -> None:
    clocks = Clocks()
    rec = recording(tmp_path / "a.cast", clocks)
    rec.write_output(b"one\n")
    rec.close()
    clocks.advance(100)
    clocks.mono = 3.0  # a new process: another monotonic origin
    again = recording(tmp_path / "a.cast", clocks)
    again.write_output(b"two\n")
    again.close()
    events = read_range(cast_files(tmp_path, "a")).events
    assert [(round(e.time - T0, 3), e.data) for e in events] == [(0.0, "one\n"), (100.0, "two\n")]


def test_a_foreign_file_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "a.cast").write_text("not a recording\n")
    rec = recording(tmp_path / "a.cast", Clocks())
    rec.write_output(b"x")
    rec.close()
    assert (tmp_path / "a.cast.1").read_text() == "not a recording\n"
    assert lines(tmp_path / "a.cast")[1] == [0.25, "o", "x"]


def test_a_full_disk_is_counted_and_never_raised(tmp_path: Path) -> None:
    os.symlink("/dev/full", tmp_path / "a.cast")
    clocks = Clocks()
    rec = recording(tmp_path / "a.cast", clocks)
    rec.write_output(b"lost")
    rec.write_output(b"also lost")
    assert rec.failing
    assert (rec.write_errors, rec.bytes_lost) == (1, 13)
    assert "ENOSPC" in str(rec.last_error)


def test_range_and_export_play_in_debians_asciinema(tmp_path: Path) -> None:
    clocks = Clocks()
    rec = recording(tmp_path / "a.cast", clocks)
    for i in range(10):
        rec.write_output(b"line %d\r\n" % i)
        rec.write_marker(f"mark {i}")
        clocks.advance(1)
    rec.close()
    files = cast_files(tmp_path, "a")
    since = datetime.fromtimestamp(T0 + 2.5, UTC)
    until = datetime.fromtimestamp(T0 + 5.5, UTC)
    got = read_range(files, since, until).events
    assert [e.data for e in got if e.code == "o"] == ["line 3\r\n", "line 4\r\n", "line 5\r\n"]
    cast = b"".join(export(got, "a"))
    (tmp_path / "out.cast").write_bytes(cast)
    assert json.loads(cast.splitlines()[1])[0] == 0.25  # from the header's whole second
    for command in ("cat", "play -s 100"):  # asciinema wants a terminal: script(1) gives one
        played = subprocess.run(
            ["script", "-qec", f"asciinema {command} {tmp_path / 'out.cast'}", "/dev/null"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=30,
        )
        assert played.stdout.replace(b"\r", b"") == b"line 3\nline 4\nline 5\n", command


def test_export_of_nothing_is_a_header() -> None:
    (only,) = list(export([], "a", start=T0))
    assert json.loads(only)["timestamp"] == int(T0)
    assert list(export([Event(T0, "o", "x")], "a"))[1] == b'[0.250,"o","x"]\n'
