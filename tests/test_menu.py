"""The menu's line editor: bounded, whatever is pasted into it."""

from __future__ import annotations

from consrv.menu import MAX_LINE, MAX_PENDING, LineReader, pick
from tests.fakes import MemorySink


async def test_lines_typed_ahead_are_bounded_and_the_end_always_counts() -> None:
    reader = LineReader(MemorySink())
    reader.feed(b"x\r" * 100_000)
    reader.eof()
    lines = [await reader.read_line() for _ in range(MAX_PENDING)]
    assert lines == ["x"] * (MAX_PENDING - 1) + [None]


async def test_a_long_line_is_cut() -> None:
    reader = LineReader(MemorySink())
    reader.feed(b"a" * 10_000 + b"\r")
    assert await reader.read_line() == "a" * MAX_LINE


def test_pick_by_number_name_or_prefix() -> None:
    names = ["llrf-1", "llrf-2", "vac"]
    assert (pick("2", names), pick("vac", names), pick("v", names)) == ("llrf-2", "vac", "vac")
    assert pick("llrf", names) == ["llrf-1", "llrf-2"]
    assert pick("9", names) == []
