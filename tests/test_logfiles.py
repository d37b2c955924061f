"""A console's log files: which files, and search by substring and time range."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consrv.logfiles import (
    BadTime,
    Limits,
    Query,
    find_file,
    log_files,
    parse_time,
    search,
)
from consrv.names import InvalidName

UTC = UTC


def stamp(minute: int) -> str:
    return f"2026-12-03T21:{minute:02d}:00.000+00:00"


def at(minute: int) -> datetime:
    return datetime(2026, 12, 3, 21, minute, tzinfo=UTC)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """ioc.log.2 (minutes 0-9), ioc.log.1 (10-19), ioc.log (20-29), and strangers."""
    for name, first in (("ioc.log.2", 0), ("ioc.log.1", 10), ("ioc.log", 20)):
        lines = [
            f"{stamp(m)} line {m} {'dbl' if m % 5 == 0 else 'x'}\n"
            for m in range(first, first + 10)
        ]
        lines.insert(3, "  continued without a stamp dbl\n")
        lines.append(f"[consrv {stamp(first + 9)}] attach alice ro\n")
        (tmp_path / name).write_text("".join(lines))
        os.utime(tmp_path / name, (at(first + 9).timestamp(), at(first + 9).timestamp()))
    (tmp_path / "other.log").write_text("dbl\n")
    (tmp_path / "ioc.log.x").write_text("dbl\n")
    (tmp_path / "ioc.log.0").write_text("dbl\n")
    (tmp_path / "secret").write_text("dbl secret\n")
    (tmp_path / "ioc.log.3").symlink_to(tmp_path / "secret")
    return tmp_path


def test_the_files_are_the_current_and_rotated_ones_oldest_first(logs: Path) -> None:
    assert [f.name for f in log_files(logs, "ioc")] == ["ioc.log.2", "ioc.log.1", "ioc.log"]


def test_find_file_takes_only_a_listed_name(logs: Path) -> None:
    assert find_file(logs, "ioc", "ioc.log.1") is not None
    for name in ("ioc.log.3", "../secret", "secret", "other.log", str(logs / "ioc.log"), ""):
        assert find_file(logs, "ioc", name) is None, name
    with pytest.raises(InvalidName):
        find_file(logs, "../ioc", "ioc.log")


def test_a_missing_directory_has_no_files(tmp_path: Path) -> None:
    assert log_files(tmp_path / "nowhere", "ioc") == []


def test_substring_search_across_files(logs: Path) -> None:
    result = search(log_files(logs, "ioc"), Query(text=b"dbl"))
    found = [(m.file, m.line) for m in result.matches]
    assert found[:3] == [("ioc.log.2", 1), ("ioc.log.2", 4), ("ioc.log.2", 7)]
    assert len(found) == 9
    assert result.stopped is None
    continued = result.matches[1]
    assert continued.data == b"  continued without a stamp dbl"
    assert continued.stamp == at(2)


def test_time_range(logs: Path) -> None:
    query = Query(text=b"line", since=at(8), until=at(12))
    result = search(log_files(logs, "ioc"), query)
    assert [m.data.split()[2] for m in result.matches] == [b"8", b"9", b"10", b"11", b"12"]


def test_since_skips_files_written_before_it(logs: Path) -> None:
    result = search(log_files(logs, "ioc"), Query(since=at(25)))
    assert {m.file for m in result.matches} == {"ioc.log"}
    assert result.bytes_read == (logs / "ioc.log").stat().st_size


def test_limits_stop_the_search_and_say_why(logs: Path) -> None:
    files = log_files(logs, "ioc")
    few = search(files, Query(text=b"line"), Limits(results=4))
    assert len(few.matches) == 4
    assert few.stopped == "4 results"
    small = search(files, Query(text=b"line"), Limits(bytes=100))
    assert small.stopped == "100 bytes read"
    assert small.bytes_read < 300


def test_parse_time() -> None:
    now = at(30)
    assert parse_time("10m", now) == at(20)
    assert parse_time("2026-12-03T21:05:00+00:00", now) == at(5)
    assert parse_time("2026-12-03T21:05", now).tzinfo is not None
    with pytest.raises(BadTime, match="not a time"):
        parse_time("yesterday", now)
    assert parse_time("1d", now) == now - timedelta(days=1)
