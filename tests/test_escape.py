"""Tests for consrv.protocol.escape: keystroke transcripts in, events out; no I/O, no mocks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consrv.protocol.escape import (
    COMMAND_KEYS,
    DEFAULT_PREFIX,
    LINE_KEYS,
    Answer,
    Cancelled,
    Command,
    Data,
    Echo,
    EscapeParser,
    Event,
    Guarded,
    Line,
    LineStart,
    State,
    Unknown,
    format_prefix,
    parse_prefix,
)
from tests.chunking import chunked

E = b"\x05"  # ^E, the prefix's first byte
EC = b"\x05c"  # the whole default prefix
GUARDED = frozenset({0x18, 0x14})  # procServ's ^X (kill) and ^T (toggle auto-restart)
RUBOUT = b"\b \b"


def state_of(parser: EscapeParser) -> State:
    """The parser's state (a call, so that mypy does not narrow it across feeds)."""
    return parser.state


def drain(parser: EscapeParser) -> list[Event]:
    return list(iter(parser.next_event, None))


def feed(parser: EscapeParser, *chunks: bytes) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        parser.receive_data(chunk)
        events += drain(parser)
    return events


def run(*chunks: bytes, guarded: frozenset[int] = GUARDED, max_line: int = 512) -> list[Event]:
    return feed(EscapeParser(guarded=guarded, max_line=max_line), *chunks)


def merged(events: list[Event]) -> list[Event]:
    """Adjacent Data events joined, and adjacent Echo events joined (chunking splits both)."""
    out: list[Event] = []
    for ev in events:
        last = out[-1] if out else None
        if isinstance(ev, Data) and isinstance(last, Data):
            out[-1] = Data(last.data + ev.data)
        elif isinstance(ev, Echo) and isinstance(last, Echo):
            out[-1] = Echo(last.data + ev.data)
        else:
            out.append(ev)
    return out


def data_of(events: list[Event]) -> bytes:
    return b"".join(ev.data for ev in events if isinstance(ev, Data))


# --- plain data and single-key commands ------------------------------------------


def test_plain_input_is_one_data_event() -> None:
    parser = EscapeParser(guarded=GUARDED)
    assert feed(parser, b"dbl\r") == [Data(b"dbl\r")]
    assert feed(parser, b"") == []
    assert parser.next_event() is None
    assert state_of(parser) is State.NORMAL


def test_key_sets() -> None:
    assert frozenset(".?afswrpi") == COMMAND_KEYS
    assert frozenset("bn!") == LINE_KEYS
    assert not COMMAND_KEYS & LINE_KEYS
    assert DEFAULT_PREFIX == EC


@pytest.mark.parametrize("key", sorted(COMMAND_KEYS))
def test_every_command_key(key: str) -> None:
    typed = EC + key.encode()
    assert run(typed) == [Command(key)]
    assert run(b"ab" + typed + b"cd") == [Data(b"ab"), Command(key), Data(b"cd")]
    assert run(b"ab\x05", b"c", key.encode() + b"cd") == [Data(b"ab"), Command(key), Data(b"cd")]


def test_states_through_a_command() -> None:
    parser = EscapeParser()
    assert feed(parser, E) == []
    assert state_of(parser) is State.PREFIX
    assert feed(parser, b"c") == []
    assert state_of(parser) is State.COMMAND
    assert feed(parser, b"w") == [Command("w")]
    assert state_of(parser) is State.NORMAL


def test_events_come_one_at_a_time() -> None:
    parser = EscapeParser()
    parser.receive_data(b"x\x05c.y")
    assert parser.next_event() == Data(b"x")
    assert parser.next_event() == Command(".")
    assert parser.next_event() == Data(b"y")
    assert parser.next_event() is None


# --- unknown keys ----------------------------------------------------------------


@pytest.mark.parametrize("key", [b"x", b"A", b"W", b"c", b" ", b"\r", b"\x00", b"\xe9", b"\x18"])
def test_unknown_key_is_swallowed(key: bytes) -> None:
    assert run(b"a" + EC + key + b"b") == [Data(b"a"), Unknown(chr(key[0])), Data(b"b")]


def test_prefix_byte_after_prefix_is_unknown_and_ends_the_escape() -> None:
    # ^Ec^E: Unknown("\x05"); the following "c." is plain data, not a new ^Ec.
    assert run(EC + E + b"c.") == [Unknown("\x05"), Data(b"c.")]
    assert run(EC, E, b"c.") == [Unknown("\x05"), Data(b"c.")]


# --- lone ^E ---------------------------------------------------------------------


def test_lone_prefix_byte_passes_through() -> None:
    assert run(E + b"x") == [Data(b"\x05x")]
    assert run(b"ab" + E + b"xy") == [Data(b"ab\x05xy")]
    assert run(E + b"\r") == [Data(b"\x05\r")]
    assert run(b"a" + E + b"\n") == [Data(b"a\x05\n")]  # not held: "\n" is not the end


def test_double_prefix_byte_then_c_is_data_then_prefix() -> None:
    assert run(E + EC + b".") == [Data(b"\x05"), Command(".")]
    assert run(E + E + EC + b"?") == [Data(b"\x05\x05"), Command("?")]
    assert run(E + E + b"x") == [Data(b"\x05\x05x")]


def test_prefix_byte_at_chunk_end_is_held() -> None:
    parser = EscapeParser()
    assert feed(parser, b"ab\x05") == [Data(b"ab")]
    assert state_of(parser) is State.PREFIX
    assert feed(parser, b"xy") == [Data(b"\x05xy")]
    assert state_of(parser) is State.NORMAL


def test_held_prefix_byte_then_more_prefix_bytes() -> None:
    assert run(E, E, b"c.") == [Data(b"\x05"), Command(".")]
    assert run(E, E, E, b"x") == [Data(b"\x05"), Data(b"\x05"), Data(b"\x05x")]
    assert run(E, b"", b"c", b"", b"a") == [Command("a")]


def test_held_prefix_byte_then_guarded_byte() -> None:
    assert run(E + b"\x18y") == [Data(b"\x05"), Guarded(0x18), Answer("y")]
    assert run(E, b"\x18", b"y") == [Data(b"\x05"), Guarded(0x18), Answer("y")]


def test_flush_pending_releases_a_held_prefix_byte() -> None:
    parser = EscapeParser()
    assert feed(parser, b"ab\x05") == [Data(b"ab")]
    assert parser.flush_pending() == E
    assert state_of(parser) is State.NORMAL
    assert parser.flush_pending() == b""
    assert feed(parser, b"c.") == [Data(b"c.")]  # no longer a command


def test_flush_pending_with_nothing_held() -> None:
    parser = EscapeParser()
    assert parser.flush_pending() == b""
    assert feed(parser, b"abc") == [Data(b"abc")]
    assert parser.flush_pending() == b""
    feed(parser, EC)
    assert state_of(parser) is State.COMMAND
    assert parser.flush_pending() == b""  # a complete prefix is not "pending"
    assert feed(parser, b".") == [Command(".")]


def test_flush_pending_does_not_release_a_byte_with_unread_input() -> None:
    parser = EscapeParser()
    assert feed(parser, E) == []
    parser.receive_data(b"c.")  # not yet read: the ^E is not lone any more
    assert parser.flush_pending() == b""
    assert drain(parser) == [Command(".")]


# --- line commands ----------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(LINE_KEYS))
def test_every_line_key(key: str) -> None:
    parser = EscapeParser()
    assert feed(parser, EC + key.encode()) == [LineStart(key)]
    assert state_of(parser) is State.LINE
    assert feed(parser, b"hello world") == [Echo(b"hello world")]
    assert feed(parser, b"\r") == [Line(key, "hello world")]
    assert state_of(parser) is State.NORMAL


def test_line_echo_follows_the_chunks() -> None:
    typed = [EC, b"n", b"a", b"b", b"c", b"\n"]
    assert run(*typed) == [LineStart("n"), Echo(b"a"), Echo(b"b"), Echo(b"c"), Line("n", "abc")]


def test_line_then_data_in_one_chunk() -> None:
    assert run(b"x" + EC + b"bhi all\ry") == [
        Data(b"x"),
        LineStart("b"),
        Echo(b"hi all"),
        Line("b", "hi all"),
        Data(b"y"),
    ]


@pytest.mark.parametrize("bs", [b"\x7f", b"\x08"])
def test_backspace_deletes_one_character(bs: bytes) -> None:
    assert run(EC + b"nabc" + bs + b"d\r") == [
        LineStart("n"),
        Echo(b"abc"),
        Echo(RUBOUT),
        Echo(b"d"),
        Line("n", "abd"),
    ]


def test_backspace_on_empty_line_echoes_nothing() -> None:
    assert run(EC + b"n\x7f\x08x\x7f\x7f\r") == [
        LineStart("n"),
        Echo(b"x"),
        Echo(RUBOUT),
        Line("n", ""),
    ]


def test_backspace_deletes_a_whole_utf8_character() -> None:
    # "é" is two bytes, "€" three, "😀" four: each is one character on the screen.
    for char in ("é", "€", "😀"):
        typed = EC + b"nx" + char.encode() + b"\x7f\r"
        assert run(typed)[-2:] == [Echo(RUBOUT), Line("n", "x")]


def test_backspace_after_a_broken_utf8_byte_deletes_one_byte() -> None:
    assert run(EC + b"nab\xa9\x7f\r")[-2:] == [Echo(RUBOUT), Line("n", "ab")]
    assert run(EC + b"n\xa9\xa9\x7f\r")[-2:] == [Echo(RUBOUT), Line("n", "\ufffd")]


def test_ctrl_u_clears_the_line() -> None:
    assert run(EC + b"nabc\x15xy\r") == [
        LineStart("n"),
        Echo(b"abc"),
        Echo(RUBOUT * 3),
        Echo(b"xy"),
        Line("n", "xy"),
    ]


def test_ctrl_u_counts_characters_not_bytes_and_is_silent_when_empty() -> None:
    assert run(EC + b"n\x15h\xc3\xa9\x15\x15\r") == [
        LineStart("n"),
        Echo(b"h\xc3\xa9"),
        Echo(RUBOUT * 2),
        Line("n", ""),
    ]


@pytest.mark.parametrize("abort", [b"\x03", b"\x1b", b"\x04"])
def test_abort_keys_cancel_the_line(abort: bytes) -> None:
    parser = EscapeParser()
    assert feed(parser, EC + b"!restart" + abort + b"xy") == [
        LineStart("!"),
        Echo(b"restart"),
        Cancelled("!"),
        Data(b"xy"),
    ]
    assert state_of(parser) is State.NORMAL


def test_escape_sequence_cancels_and_its_tail_is_data() -> None:
    # An arrow key is ESC [ A: ESC cancels, "[A" is then typed at the IOC.
    assert run(EC + b"nab\x1b[A")[-2:] == [Cancelled("n"), Data(b"[A")]


@pytest.mark.parametrize("enter", [b"\r", b"\n", b"\r\n", b"\r\0"])
def test_enter_variants_end_the_line(enter: bytes) -> None:
    assert run(EC + b"nhi" + enter + b"x")[-2:] == [Line("n", "hi"), Data(b"x")]


def test_enter_tail_is_swallowed_across_chunks() -> None:
    assert run(EC + b"nhi\r", b"\nx")[-2:] == [Line("n", "hi"), Data(b"x")]
    assert run(EC + b"nhi\r", b"", b"\0x")[-2:] == [Line("n", "hi"), Data(b"x")]


def test_only_one_byte_after_cr_is_swallowed() -> None:
    assert run(EC + b"nhi\r\n\n")[-2:] == [Line("n", "hi"), Data(b"\n")]
    assert run(EC + b"nhi\r\r")[-2:] == [Line("n", "hi"), Data(b"\r")]
    assert run(EC + b"nhi\n\n")[-2:] == [Line("n", "hi"), Data(b"\n")]  # \n swallows nothing
    assert run(EC + b"nhi\n\0")[-2:] == [Line("n", "hi"), Data(b"\0")]


def test_line_text_is_utf8_and_stripped() -> None:
    typed = EC + b"n  Kalibrierung ge\xc3\xa4ndert \xff \r"
    assert run(typed)[-1] == Line("n", "Kalibrierung geändert \ufffd")


def test_line_ignores_other_control_bytes_and_the_prefix() -> None:
    # Inside a line ^E, ^X (even guarded), tab and NUL are not text and not commands.
    assert run(EC + b"na\x05c.\x18\t\0\x01b\r") == [
        LineStart("n"),
        Echo(b"a"),
        Echo(b"c."),
        Echo(b"b"),
        Line("n", "ac.b"),
    ]


def test_max_line_bytes_are_kept_and_the_rest_ignored() -> None:
    assert run(EC + b"nabcdefgh\r", max_line=5) == [
        LineStart("n"),
        Echo(b"abcde"),
        Line("n", "abcde"),
    ]
    assert run(EC + b"n", b"abc", b"def", b"g", b"\r", max_line=5) == [
        LineStart("n"),
        Echo(b"abc"),
        Echo(b"de"),
        Line("n", "abcde"),
    ]


def test_max_line_room_comes_back_after_backspace() -> None:
    assert run(EC + b"nabcdefg\x7fXY\r", max_line=5) == [
        LineStart("n"),
        Echo(b"abcde"),
        Echo(RUBOUT),
        Echo(b"X"),
        Line("n", "abcdX"),
    ]


def test_default_max_line_is_512() -> None:
    events = run(EC + b"n" + b"x" * 600 + b"\r")
    assert events[-1] == Line("n", "x" * 512)


# --- octal -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "events"),
    [
        (b"\\101", [Data(b"A")]),  # three digits end it at once
        (b"\\1011", [Data(b"A"), Data(b"1")]),  # a fourth digit is plain data
        (b"\\000", [Data(b"\0")]),
        (b"\\377", [Data(b"\xff")]),
        (b"\\12x", [Data(b"\n"), Data(b"x")]),  # two digits, ended by a non-digit
        (b"\\7x", [Data(b"\x07"), Data(b"x")]),  # one digit
        (b"\\08", [Data(b"\0"), Data(b"8")]),  # 8 and 9 are not octal digits
        (b"\\3\r", [Data(b"\x03"), Data(b"\r")]),
        (b"\\0\x05c.", [Data(b"\0"), Command(".")]),  # ended by a new escape
        (b"\\400", [Unknown("\\400")]),  # over 0o377
        (b"\\777x", [Unknown("\\777"), Data(b"x")]),
        (b"\\9", [Unknown("\\"), Data(b"9")]),  # no digit: the byte is read normally
        (b"\\x", [Unknown("\\"), Data(b"x")]),
        (b"\\\x05c?", [Unknown("\\"), Command("?")]),
        (b"\\\\101", [Unknown("\\"), Data(b"\\101")]),
    ],
)
def test_octal(typed: bytes, events: list[Event]) -> None:
    assert run(EC + typed) == events
    assert merged(run(*[bytes([b]) for b in EC + typed])) == merged(events)


def test_octal_waits_for_its_terminator() -> None:
    parser = EscapeParser()
    assert feed(parser, EC + b"\\1") == []
    assert state_of(parser) is State.OCTAL
    assert feed(parser, b"2") == []
    assert feed(parser, b"z") == [Data(b"\n"), Data(b"z")]
    assert state_of(parser) is State.NORMAL


def test_octal_guarded_byte_asks_for_an_answer() -> None:
    parser = EscapeParser(guarded=GUARDED)
    assert feed(parser, EC + b"\\030") == [Guarded(0x18)]
    assert state_of(parser) is State.ANSWER
    assert feed(parser, b"yz") == [Answer("y"), Data(b"z")]
    assert run(EC + b"\\24", b"n") == [Guarded(0x14), Answer("n")]


def test_literal_prefix_is_octal_then_c() -> None:
    assert data_of(run(EC + b"\\005c")) == EC


# --- guarded bytes and answers ---------------------------------------------------


def test_guarded_byte_mid_chunk() -> None:
    parser = EscapeParser(guarded=GUARDED)
    parser.receive_data(b"ab\x18ycd")
    assert parser.next_event() == Data(b"ab")
    assert parser.next_event() == Guarded(0x18)
    assert state_of(parser) is State.ANSWER
    assert parser.next_event() == Answer("y")
    assert state_of(parser) is State.NORMAL
    assert parser.next_event() == Data(b"cd")
    assert parser.next_event() is None


def test_answer_across_chunk_boundary() -> None:
    parser = EscapeParser(guarded=GUARDED)
    assert feed(parser, b"ab\x14") == [Data(b"ab"), Guarded(0x14)]
    assert state_of(parser) is State.ANSWER
    assert feed(parser, b"") == []
    assert feed(parser, b"Nx") == [Answer("N"), Data(b"x")]


@pytest.mark.parametrize("chunks", [[b"\x18\r\nx"], [b"\x18\r", b"\nx"], [b"\x18", b"\r", b"\nx"]])
def test_enter_as_answer_swallows_its_lf(chunks: list[bytes]) -> None:
    assert run(*chunks) == [Guarded(0x18), Answer("\r"), Data(b"x")]


def test_answer_lf_and_nul_after_cr() -> None:
    assert run(b"\x18\r\0x") == [Guarded(0x18), Answer("\r"), Data(b"x")]
    assert run(b"\x18\n\nx") == [Guarded(0x18), Answer("\n"), Data(b"\nx")]


def test_any_byte_is_an_answer() -> None:
    assert run(b"\x18\x18\x14") == [Guarded(0x18), Answer("\x18"), Guarded(0x14)]
    assert run(b"\x18\x05c.") == [Guarded(0x18), Answer("\x05"), Data(b"c.")]
    assert run(b"\x18\xc3\xa9") == [Guarded(0x18), Answer("\xc3"), Data(b"\xa9")]


def test_no_guarded_bytes_by_default() -> None:
    assert feed(EscapeParser(), b"\x18\x14") == [Data(b"\x18\x14")]


def test_guarded_changed_between_events_of_one_chunk() -> None:
    parser = EscapeParser()
    parser.receive_data(b"\x05c?\x18y")
    assert parser.next_event() == Command("?")
    parser.guarded = frozenset({0x18})
    assert drain(parser) == [Guarded(0x18), Answer("y")]

    parser.receive_data(b"\x05c?\x18y")
    assert parser.next_event() == Command("?")
    parser.guarded = frozenset()
    assert drain(parser) == [Data(b"\x18y")]


def test_guarded_bytes_that_are_special_in_a_regex() -> None:
    parser = EscapeParser(guarded=frozenset(b"]-^\\"))
    assert parser.guarded == frozenset(b"]-^\\")
    assert feed(parser, b"a]xb-yc^zd\\we") == [
        Data(b"a"),
        Guarded(ord("]")),
        Answer("x"),
        Data(b"b"),
        Guarded(ord("-")),
        Answer("y"),
        Data(b"c"),
        Guarded(ord("^")),
        Answer("z"),
        Data(b"d"),
        Guarded(ord("\\")),
        Answer("w"),
        Data(b"e"),
    ]


def test_guarded_prefix_byte_still_starts_the_prefix() -> None:
    assert run(b"\x05c.\x05x", guarded=frozenset({0x05})) == [
        Command("."),
        Guarded(0x05),
        Answer("x"),
    ]


def test_expect_answer_between_events_of_one_chunk() -> None:
    parser = EscapeParser()
    parser.receive_data(b"\x05c!restart\ryes\x05c.")
    assert parser.next_event() == LineStart("!")
    assert parser.next_event() == Echo(b"restart")
    assert parser.next_event() == Line("!", "restart")
    parser.expect_answer()
    assert state_of(parser) is State.ANSWER
    assert drain(parser) == [Answer("y"), Data(b"es"), Command(".")]


def test_expect_answer_after_line_skips_the_enter_tail() -> None:
    parser = EscapeParser()
    assert feed(parser, EC + b"!stop\r") == [LineStart("!"), Echo(b"stop"), Line("!", "stop")]
    parser.expect_answer()
    assert feed(parser, b"\n", b"y") == [Answer("y")]


def test_without_expect_answer_the_same_bytes_are_data() -> None:
    assert run(b"\x05c!restart\ryes")[-1] == Data(b"yes")


def test_expect_answer_twice_and_from_answer_state() -> None:
    parser = EscapeParser(guarded=GUARDED)
    parser.expect_answer()
    parser.expect_answer()
    assert feed(parser, b"\x18") == [Answer("\x18")]
    assert feed(parser, b"\x18") == [Guarded(0x18)]
    parser.expect_answer()
    assert feed(parser, b"ab") == [Answer("a"), Data(b"b")]


@pytest.mark.parametrize(
    ("typed", "state"),
    [(E, State.PREFIX), (EC, State.COMMAND), (EC + b"\\1", State.OCTAL), (EC + b"n", State.LINE)],
)
def test_expect_answer_refused_inside_an_escape(typed: bytes, state: State) -> None:
    parser = EscapeParser()
    feed(parser, typed)
    assert state_of(parser) is state
    with pytest.raises(RuntimeError, match=state.name):
        parser.expect_answer()
    assert state_of(parser) is state


# --- prefixes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("^Ec", b"\x05c"),
        ("^ec", b"\x05c"),
        ("^]c", b"\x1dc"),
        ("^Ak", b"\x01k"),
        ("^@x", b"\x00x"),
        ("^[!", b"\x1b!"),
        ("^\\~", b"\x1c~"),
        ("^^^", b"\x1e^"),
        ("^__", b"\x1f_"),
        ("^zZ", b"\x1aZ"),
    ],
)
def test_parse_prefix(text: str, prefix: bytes) -> None:
    assert parse_prefix(text) == prefix
    assert format_prefix(prefix) == text[0] + text[1].upper() + text[2]


def test_format_prefix_inverts_parse_prefix_for_every_prefix() -> None:
    for control in range(0x20):
        for key in range(0x21, 0x7F):
            prefix = bytes([control, key])
            assert parse_prefix(format_prefix(prefix)) == prefix


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "like '\\^Ec'"),
        ("^E", "like '\\^Ec'"),
        ("^Ecc", "like '\\^Ec'"),
        ("Ec", "like '\\^Ec'"),
        ("xEc", "like '\\^Ec'"),
        ("\x05c", "like '\\^Ec'"),
        ("^1c", "\\^1 is not a control key"),
        ("^?c", "\\^\\? is not a control key"),
        ("^ c", "\\^  is not a control key"),
        ("^éc", "\\^é is not a control key"),
        ("^E ", "second key ' ' must be a printable ASCII character other than space"),
        ("^E\t", "second key '\\\\t' must be a printable"),
        ("^E\x7f", "must be a printable"),
        ("^Eé", "must be a printable"),
    ],
)
def test_parse_prefix_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_prefix(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    "prefix", [b"", b"\x05", b"\x05cc", b"ab", b"\x05 ", b"\x05\x7f", b"\x7fc"]
)
def test_bad_prefix_bytes_are_refused(prefix: bytes) -> None:
    with pytest.raises(ValueError, match="control byte then a printable"):
        format_prefix(prefix)
    with pytest.raises(ValueError, match="control byte then a printable"):
        EscapeParser(prefix)


def test_max_line_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_line must be at least 1"):
        EscapeParser(max_line=0)


def test_custom_prefix() -> None:
    parser = EscapeParser(parse_prefix("^]c"), guarded=GUARDED)
    assert feed(parser, b"\x05c.\x1dc.") == [Data(b"\x05c."), Command(".")]
    assert feed(parser, b"\x1d", b"x\x1d") == [Data(b"\x1dx")]
    assert state_of(parser) is State.PREFIX
    assert parser.flush_pending() == b"\x1d"


def test_custom_prefix_with_regex_special_key() -> None:
    parser = EscapeParser(parse_prefix("^A."))
    assert feed(parser, b"a.\x01..\x01?\x01.\\101") == [
        Data(b"a."),
        Command("."),
        Data(b"\x01?"),
        Data(b"A"),
    ]
    backslash = EscapeParser(parse_prefix("^A\\"))
    assert feed(backslash, b"\x01\\w\x01\\\\101") == [Command("w"), Data(b"A")]


def test_prefix_on_ctrl_at_with_nul_bytes() -> None:
    parser = EscapeParser(parse_prefix("^@c"))
    assert feed(parser, b"\0\0c?\0x") == [Data(b"\0"), Command("?"), Data(b"\0x")]


# --- properties ----------------------------------------------------------------------

# Bytes that make the parser do something, and some that do not.
_interesting = st.sampled_from(
    [bytes([b]) for b in b"\x05c\\0378nb!.?x\r\n\0\x7f\x08\x15\x03\x1b\x04\x18\x14\xc3\xa9\x01"]
)
_keystrokes = st.one_of(
    st.lists(st.one_of(_interesting, st.binary(max_size=4)), max_size=60).map(b"".join),
    st.binary(max_size=200),
)


def outcome(chunks: list[bytes]) -> tuple[list[Event], State, bytes]:
    """Merged events, the final state and what flush_pending releases, for one chunking."""
    parser = EscapeParser(guarded=GUARDED, max_line=8)
    events = merged(feed(parser, *chunks))
    state = parser.state
    return events, state, parser.flush_pending()


@given(st.data(), _keystrokes)
def test_any_chunking_gives_the_same_events(data: st.DataObject, keys: bytes) -> None:
    # (1) Only the cut points of Data and Echo runs may differ, and merged() undoes them.
    assert outcome(data.draw(chunked(keys))) == outcome([keys])


_plain = st.binary(max_size=200).map(lambda b: bytes(x for x in b if x not in GUARDED | {0x05}))


@given(st.data(), _plain)
def test_input_without_prefix_or_guarded_bytes_passes_unchanged(
    data: st.DataObject, keys: bytes
) -> None:
    # (2) One Data per non-empty chunk, byte for byte, nothing held.
    chunks = data.draw(chunked(keys))
    parser = EscapeParser(guarded=GUARDED)
    for chunk in chunks:
        assert feed(parser, chunk) == ([Data(chunk)] if chunk else [])
    assert state_of(parser) is State.NORMAL
    assert parser.flush_pending() == b""


def is_subsequence(part: bytes, whole: bytes) -> bool:
    it = iter(whole)
    return all(b in it for b in part)


@given(st.data(), _keystrokes)
def test_random_bytes_never_raise_or_invent_bytes(data: st.DataObject, keys: bytes) -> None:
    # (3a) Safety on any input (3b below is the exact accounting): no exception;
    # the Data stream (plus a flushed ^E) is a subsequence of the input, and
    # everything before the first ^E or guarded byte is in it unchanged.
    events, _, flushed = outcome(data.draw(chunked(keys)))
    out = data_of(events) + flushed
    assert is_subsequence(out, keys)
    first_stop = min((i for i, b in enumerate(keys) if b in GUARDED | {0x05}), default=len(keys))
    assert out.startswith(keys[:first_stop])


# (3b) The exact invariant, "never lose or duplicate a byte": for input made of
# tokens, the Data stream is exactly the input minus the recognised sequences.
# Each token is (typed bytes, the Data it must give).
_STOPS = GUARDED | {0x05}
_Token = tuple[bytes, bytes]


def _no(excluded: bytes | frozenset[int]) -> st.SearchStrategy[int]:
    return st.integers(0, 255).filter(lambda b: b not in excluded)


def _octal_token(value: int, digits: str, term: int | None) -> _Token:
    tail = b"" if term is None else bytes([term])
    data = bytes([value]) if value <= 0xFF else b""
    return EC + b"\\" + (digits % value).encode() + tail, data + tail


_tokens = st.lists(
    st.one_of(
        _plain.map(lambda b: (b, b)),
        st.sampled_from(sorted(COMMAND_KEYS)).map(lambda k: (EC + k.encode(), b"")),
        _no(frozenset(ord(k) for k in COMMAND_KEYS | LINE_KEYS | {"\\"})).map(
            lambda k: (EC + bytes([k]), b"")
        ),
        st.tuples(
            st.sampled_from(sorted(LINE_KEYS)),
            st.lists(_no(b"\r\n\x03\x1b\x04"), max_size=20).map(bytes),
            st.sampled_from([b"\n", b"\r\n", b"\r\0", b"\x03", b"\x1b", b"\x04"]),
        ).map(lambda t: (EC + t[0].encode() + t[1] + t[2], b"")),
        st.integers(0, 0o777)
        .filter(lambda v: v not in GUARDED)
        .map(lambda v: _octal_token(v, "%03o", None)),
        st.tuples(
            st.integers(0, 0o77).filter(lambda v: v not in GUARDED), _no(_STOPS | set(b"01234567"))
        ).map(lambda t: _octal_token(t[0], "%o", t[1])),
        _no(_STOPS | set(b"01234567")).map(lambda t: (EC + b"\\" + bytes([t]), bytes([t]))),
        _no(_STOPS | {ord("c")}).map(lambda b: (E + bytes([b]), E + bytes([b]))),
        st.tuples(
            st.sampled_from(sorted(GUARDED)),
            st.one_of(_no(b"\r").map(lambda a: bytes([a])), st.sampled_from([b"\r\n", b"\r\0"])),
        ).map(lambda t: (bytes([t[0]]) + t[1], b"")),
        st.tuples(st.sampled_from(sorted(GUARDED)), _no(b"\r")).map(
            lambda t: (EC + b"\\%03o" % t[0] + bytes([t[1]]), b"")
        ),
    ),
    max_size=12,
)


@given(st.data(), _tokens)
def test_data_is_exactly_the_input_minus_escapes(data: st.DataObject, tokens: list[_Token]) -> None:
    typed = b"".join(t for t, _ in tokens)
    expected = b"".join(d for _, d in tokens)
    parser = EscapeParser(guarded=GUARDED)
    events = feed(parser, *data.draw(chunked(typed)))
    assert data_of(events) == expected
    assert state_of(parser) is State.NORMAL
    assert parser.flush_pending() == b""


def test_cancel_answer_parses_the_next_byte_as_usual() -> None:
    parser = EscapeParser(guarded=frozenset({0x18}))
    parser.receive_data(b"\x18y")
    assert parser.next_event() == Guarded(0x18)
    parser.cancel_answer()
    assert parser.next_event() == Data(b"y")
    assert parser.state is State.NORMAL
    parser.cancel_answer()  # outside ANSWER: nothing happens
    assert parser.state is State.NORMAL


def test_a_held_prefix_byte_that_is_guarded_is_guarded_when_released() -> None:
    parser = EscapeParser(b"\x0bc", guarded=frozenset({0x0B}))  # procServ's kill key is ^K
    assert feed(parser, b"\x0bx") == [Guarded(0x0B), Answer("x")]
    parser.receive_data(b"\x0b")
    assert parser.next_event() is None
    assert parser.flush_pending() == b"\x0b"  # the caller guards it
    assert feed(parser, b"\x0bc.") == [Command(".")]
