"""Tests for consrv.protocol.ansi: byte transcripts in, bytes out; no I/O, no mocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consrv.protocol.ansi import MAX_SEQUENCE, AnsiStripper, strip
from tests.chunking import chunked

# The soft IOC's prompt, as epicscorelibs' iocsh prints it on a terminal.
PROMPT = b"\x1b[32;1mepics> \x1b[0m"


def test_the_ioc_prompt_loses_its_colour() -> None:
    assert strip(PROMPT + b"dbl\r\n") == b"epics> dbl\r\n"


def test_plain_text_is_returned_as_is() -> None:
    data = b"iocRun: All initialization complete\r\n\x07\t"
    assert AnsiStripper().receive_data(data) is data


def test_every_kind_of_sequence_goes() -> None:
    data = (
        b"a\x1b[2J\x1b[1;1H"  # CSI: erase, cursor
        b"b\x1b]0;title\x07"  # OSC ended by BEL
        b"c\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"  # OSC 8 ended by ESC \
        b"d\x1bPq#0;2;0;0;0\x1b\\"  # DCS
        b"e\x1b7\x1b8\x1b(B"  # two- and three-byte escapes
        b"f\x1b[?25l\r\n"
    )
    assert strip(data) == b"abclinkdef\r\n"


def test_a_sequence_split_across_chunks_is_carried_over() -> None:
    stripper = AnsiStripper()
    assert stripper.receive_data(b"x\x1b[3") == b"x"
    assert stripper.receive_data(b"2;1") == b""
    assert stripper.receive_data(b"my") == b"y"


def test_a_sequence_that_never_ends_is_bounded() -> None:
    stripper = AnsiStripper()
    # Given up after MAX_SEQUENCE bytes: what follows is text again.
    assert stripper.receive_data(b"\x1b]" + b"a" * (MAX_SEQUENCE - 1) + b"0123") == b"0123"
    assert stripper.receive_data(b"text") == b"text"


@given(st.data())
def test_any_chunking_gives_the_same_output(data: st.DataObject) -> None:
    whole = PROMPT + b"dbgf x\r\n\x1b]0;t\x1b\\DBF_DOUBLE: 1\x1b[0m\r\n" + PROMPT
    chunks = data.draw(chunked(whole))
    stripper = AnsiStripper()
    assert b"".join(stripper.receive_data(c) for c in chunks) == strip(whole)


@given(st.binary(max_size=200))
def test_no_escape_byte_survives_a_finished_stream(data: bytes) -> None:
    out = strip(data + b"\x1b\\\x07x")  # whatever was open is closed by the end
    assert out.count(b"\x1b") == 0
