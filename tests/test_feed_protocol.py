"""The fleet feed's wire format (consrv/protocol/feed.py): byte transcripts, the same
events however the bytes are cut, and a broken line reported at its place."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consrv.protocol.feed import (
    FEED_SCHEMA,
    MAX_LINE,
    ConsoleEntry,
    Event,
    FeedDecoder,
    FeedError,
    Hello,
    Removed,
    Sync,
    decode,
    encode,
)
from tests.chunking import chunked

ENTRY: dict[str, Any] = {"name": "ioc-a", "state": "connected", "rw": ["alice"], "who": []}


def events_of(*chunks: bytes) -> list[Event]:
    decoder, events = FeedDecoder(), []
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not None:
            events.append(event)
    return events


def test_the_lines_are_what_gateways_of_schema_1_read() -> None:
    assert FEED_SCHEMA == 1
    assert encode(Hello({"alice": ["ops"], "bob": []})) == (
        b'{"schema":1,"type":"hello","users":{"alice":["ops"],"bob":[]}}\n'
    )
    assert encode(ConsoleEntry({"name": "a", "rw": ["*"]})) == (
        b'{"schema":1,"type":"console","console":{"name":"a","rw":["*"]}}\n'
    )
    assert encode(Removed("a")) == b'{"schema":1,"type":"removed","name":"a"}\n'
    assert encode(Sync()) == b'{"schema":1,"type":"sync"}\n'


def test_a_transcript_decodes_to_its_events() -> None:
    wire = (
        b'{"schema":1,"type":"hello","users":{"alice":["ops"]}}\n'
        b'{"schema":1,"type":"console","console":{"name":"ioc-a","state":"connected","rw":["alice"],"who":[]}}\n'
        b'{"schema": 1, "type": "removed", "name": "old"}\n'
        b'{"schema":1,"type":"sync"}\n'
    )  # fmt: skip
    assert events_of(wire) == [
        Hello({"alice": ("ops",)}), ConsoleEntry(ENTRY), Removed("old"), Sync(),
    ]  # fmt: skip


_names = st.text("abcdefgh-", min_size=1, max_size=8)
_events = st.lists(
    st.one_of(
        st.dictionaries(_names, st.lists(_names, max_size=3).map(tuple), max_size=3).map(Hello),
        _names.map(lambda n: ConsoleEntry({"name": n, "state": "down", "who": []})),
        _names.map(Removed),
        st.just(Sync()),
    ),
    max_size=8,
)


@given(st.data(), _events)
def test_any_chunking_gives_the_events_written(data: st.DataObject, events: list[Event]) -> None:
    wire = b"".join(encode(event) for event in events)
    assert events_of(*data.draw(chunked(wire))) == events


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"",
        b'{"schema": 2, "type": "sync"}',
        b'{"schema": 1, "type": "what"}',
        b'{"schema": 1, "type": "console"}',
        b'{"schema": 1, "type": "console", "console": {"state": "down"}}',
        b'{"schema": 1, "type": "hello", "users": [1]}',
        b'{"schema": 1, "type": "removed"}',
        b"[1]",
    ],
)
def test_a_line_that_is_no_event_is_an_error(line: bytes) -> None:
    with pytest.raises(FeedError):
        decode(line)


@given(st.data())
def test_a_broken_line_is_reported_where_it_is(data: st.DataObject) -> None:
    """The events before a broken line are given first, however the bytes are cut."""
    wire = encode(Removed("a")) + encode(Sync()) + b"broken\n" + encode(Removed("b"))
    events: list[Event] = []
    with pytest.raises(FeedError):
        _collect(events, data.draw(chunked(wire)))
    assert events == [Removed("a"), Sync()]


def _collect(events: list[Event], chunks: list[bytes]) -> None:
    """Decode ``chunks`` into ``events`` as they come (kept when an error ends it)."""
    decoder = FeedDecoder()
    for chunk in chunks:
        decoder.receive_data(chunk)
        while (event := decoder.next_event()) is not None:
            events.append(event)


def test_an_endless_line_is_an_error_past_its_bound() -> None:
    decoder = FeedDecoder()
    decoder.receive_data(b"x" * MAX_LINE)
    assert decoder.next_event() is None
    assert decoder.buffered_bytes == MAX_LINE
    decoder.receive_data(b"x")
    with pytest.raises(FeedError, match="over 1 MiB"):
        decoder.next_event()
