"""The scrollback ring: bounded, oldest bytes forgotten first, last-N-lines view."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consrv.scrollback import Scrollback


def test_keeps_only_the_last_capacity_bytes() -> None:
    ring = Scrollback(8)
    ring.append(b"abcdef")
    ring.append(b"ghij")
    assert ring.data() == b"cdefghij"
    ring.append(b"0123456789")
    assert ring.data() == b"23456789"


def test_last_lines() -> None:
    ring = Scrollback(1024)
    ring.append(b"one\r\ntwo\r\nthree\r\nfour")
    assert ring.last_lines(1) == b"four"
    assert ring.last_lines(2) == b"three\r\nfour"
    assert ring.last_lines(10) == b"one\r\ntwo\r\nthree\r\nfour"
    ring.append(b"\r\n")
    assert ring.last_lines(1) == b"four\r\n"
    assert ring.last_lines(0) == b""


@given(st.lists(st.binary(max_size=50)), st.integers(min_value=0, max_value=64))
def test_equals_the_tail_of_everything_appended(chunks: list[bytes], capacity: int) -> None:
    ring = Scrollback(capacity)
    for chunk in chunks:
        ring.append(chunk)
    everything = b"".join(chunks)
    assert ring.data() == everything[max(0, len(everything) - capacity) :]


def test_resize_keeps_the_newest_bytes() -> None:
    ring = Scrollback(10)
    ring.append(b"0123456789")
    ring.resize(4)
    assert ring.data() == b"6789"
    ring.append(b"ab")
    assert ring.data() == b"89ab"
    ring.resize(8)
    ring.append(b"cdef")
    assert ring.data() == b"89abcdef"
