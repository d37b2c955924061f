"""Tests for consrv.protocol.telnet: byte transcripts in, bytes out; no I/O, no mocks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consrv.protocol.telnet import InputEncoder, TelnetDecoder, escape_iac
from tests.chunking import chunked

# What procServ 2.7.0 sends right after its banner: IAC WILL ECHO, IAC DO LINEMODE.
NEGOTIATION = b"\xff\xfb\x01\xff\xfd\x22"


def decode(*chunks: bytes) -> bytes:
    decoder = TelnetDecoder()
    return b"".join(decoder.receive_data(c) for c in chunks)


def encode(*chunks: bytes) -> bytes:
    encoder = InputEncoder()
    return b"".join(encoder.encode(c) for c in chunks)


# --- TelnetDecoder: transcripts ------------------------------------------------


def test_plain_chunk_is_returned_as_is() -> None:
    decoder = TelnetDecoder()
    chunk = b"epics> dbl\r\n" * 100
    assert decoder.receive_data(chunk) is chunk
    assert not decoder.negotiation_seen


def test_procserv_negotiation_is_removed_and_marks_banner_end() -> None:
    decoder = TelnetDecoder()
    assert decoder.receive_data(b"@@@ 0 user(s) and 0 logger(s) connected (plus you)\r\n") == (
        b"@@@ 0 user(s) and 0 logger(s) connected (plus you)\r\n"
    )
    assert not decoder.negotiation_seen
    assert decoder.receive_data(NEGOTIATION + b"epics> ") == b"epics> "
    assert decoder.negotiation_seen


def test_escaped_iac_is_one_data_byte() -> None:
    decoder = TelnetDecoder()
    assert decoder.receive_data(b"hi \xff\xff\r\n") == b"hi \xff\r\n"
    assert decoder.receive_data(b"\xff\xff\xff\xff") == b"\xff\xff"
    assert not decoder.negotiation_seen


def test_option_verbs_are_swallowed() -> None:
    for verb in (0xFB, 0xFC, 0xFD, 0xFE):
        assert decode(b"a\xff" + bytes([verb]) + b"\x03b") == b"ab"


def test_option_byte_may_be_ff() -> None:
    assert decode(b"a\xff\xfb\xffb") == b"ab"


def test_two_byte_commands_are_swallowed() -> None:
    for command in (0xF1, 0xF3, 0xF4, 0xF5, 0xF6, 0xF9, 0xF0):  # NOP BRK IP AO AYT GA SE
        decoder = TelnetDecoder()
        assert decoder.receive_data(b"x\xff" + bytes([command]) + b"y") == b"xy"
        assert decoder.negotiation_seen


def test_subnegotiation_is_swallowed_including_escaped_iac() -> None:
    assert decode(b"a\xff\xfa\x18\x01\xff\xff\xfe\xff\xf0b") == b"ab"


def test_subnegotiation_split_everywhere() -> None:
    stream = b"a\xff\xfa\x22\x01\xff\xff\x03\xff\xf0b\xff\xffc"
    assert decode(*(bytes([b]) for b in stream)) == b"ab\xffc"


def test_malformed_subnegotiation_ends_at_next_command() -> None:
    # IAC inside SB followed by neither SE nor IAC: the SB ends, the byte is a command.
    assert decode(b"a\xff\xfa\x01\x02\xff\xfb\x01b") == b"ab"


def test_split_after_iac() -> None:
    assert decode(b"a\xff", b"\xffb") == b"a\xffb"
    assert decode(b"a\xff", b"\xfb", b"\x01b") == b"ab"


def test_negotiation_seen_only_by_commands() -> None:
    decoder = TelnetDecoder()
    decoder.receive_data(b"\xff")
    assert not decoder.negotiation_seen
    decoder.receive_data(b"\xff")
    assert not decoder.negotiation_seen
    decoder.receive_data(b"\xff\xf1")
    assert decoder.negotiation_seen


def test_escape_iac() -> None:
    assert escape_iac(b"") == b""
    assert escape_iac(b"a\xffb\xff\xff") == b"a\xff\xffb\xff\xff\xff\xff"


# --- TelnetDecoder: properties ---------------------------------------------------

# A telnet stream as tokens, each with the data bytes it must decode to.
_data_token = st.binary(max_size=20).map(lambda b: (b.replace(b"\xff", b""),) * 2)
_escaped_iac = st.just((b"\xff\xff", b"\xff"))
_option = st.tuples(st.sampled_from([0xFB, 0xFC, 0xFD, 0xFE]), st.integers(0, 255)).map(
    lambda t: (bytes([0xFF, *t]), b"")
)
_command = st.integers(0xF0, 0xF9).map(lambda c: (bytes([0xFF, c]), b""))
_subneg = st.binary(max_size=10).map(lambda b: (b"\xff\xfa" + escape_iac(b) + b"\xff\xf0", b""))
_tokens = st.lists(st.one_of(_data_token, _escaped_iac, _option, _command, _subneg))


@given(st.data(), _tokens)
def test_decoder_output_is_exactly_the_data(
    data: st.DataObject, tokens: list[tuple[bytes, bytes]]
) -> None:
    wire = b"".join(w for w, _ in tokens)
    expected = b"".join(d for _, d in tokens)
    assert decode(*data.draw(chunked(wire))) == expected


@given(st.data(), st.binary(max_size=200))
def test_decoder_any_chunking_same_output(data: st.DataObject, wire: bytes) -> None:
    assert decode(*data.draw(chunked(wire))) == decode(wire)


@given(st.data(), st.binary(max_size=200))
def test_escape_iac_round_trips(data: st.DataObject, payload: bytes) -> None:
    assert decode(*data.draw(chunked(escape_iac(payload)))) == payload


# --- InputEncoder: transcripts ---------------------------------------------------


def test_enter_forms_become_cr() -> None:
    assert encode(b"dbl\r") == b"dbl\r"
    assert encode(b"dbl\r\n") == b"dbl\r"
    assert encode(b"dbl\n") == b"dbl\r"
    assert encode(b"dbl\r\0") == b"dbl\r"


def test_enter_pairs_split_across_calls() -> None:
    assert encode(b"dbl\r", b"\n") == b"dbl\r"
    assert encode(b"dbl\r", b"\0") == b"dbl\r"
    assert encode(b"dbl\r", b"", b"\nx") == b"dbl\rx"
    assert encode(b"\r", b"\r", b"\n", b"\n") == b"\r\r\r"


def test_blank_lines_and_lone_bytes() -> None:
    assert encode(b"\n\n") == b"\r\r"
    assert encode(b"\r\r\n") == b"\r\r"
    assert encode(b"\r\n\0") == b"\r\0"  # the NUL after a full \r\n is not part of Enter
    assert encode(b"a\0b") == b"a\0b"


def test_iac_is_escaped() -> None:
    assert encode(b"\xff") == b"\xff\xff"
    assert encode(b"\xff\r\n\xff") == b"\xff\xff\r\xff\xff"


def test_control_and_binary_pass_unchanged() -> None:
    keys = bytes(b for b in range(256) if b not in (0x0A, 0x0D, 0xFF))
    assert encode(keys) == keys
    assert encode(b"\x18\x14\x03\x1b[A\xc3\x28") == b"\x18\x14\x03\x1b[A\xc3\x28"


# --- InputEncoder: properties ----------------------------------------------------

_keys = st.lists(st.sampled_from([b"\r", b"\n", b"\0", b"\xff", b"a", b"\x18"])).map(b"".join)


@given(st.data(), st.one_of(_keys, st.binary(max_size=200)))
def test_encoder_any_chunking_same_output(data: st.DataObject, keys: bytes) -> None:
    assert encode(*data.draw(chunked(keys))) == encode(keys)


@given(_keys)
def test_encoder_output_has_no_lf_and_survives_decoding(keys: bytes) -> None:
    out = encode(keys)
    assert b"\n" not in out
    assert decode(out) == out.replace(b"\xff\xff", b"\xff")
