"""Tests for consrv.patterns: output bytes in, per-pattern line counts out; no I/O.

The property tests compare LineMatcher, fed any chunking of the same output, with
a ten-line reference that applies the rules of the module docstring literally
(split on ``\\n``, cut long lines into pieces, strip one ``\\r``, search each piece).
The patterns cover both of the matcher's paths: block search (anchors, ``\\b``,
patterns that can span lines) and line-by-line (lookarounds, ``\\A``/``\\Z``,
possessive quantifiers).
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consrv.config import Pattern
from consrv.patterns import PIECE, LineMatcher
from tests.chunking import chunked


def patterns(**regexes: bytes) -> list[Pattern]:
    return [Pattern(name, re.compile(regex)) for name, regex in regexes.items()]


TRICKY = patterns(
    literal=rb"ab",
    starts=rb"^a",
    ends=rb"b$",
    blank=rb"^$",
    word=rb"\ba\b",
    spans_space=rb"a\s*b",
    spans_dotall=rb"(?s)a.*-",
    lookahead=rb"a(?=b)",
    lookbehind=rb"(?<!a)b",
    absolute_start=rb"\Ab",
    absolute_end=rb"a\Z",
    possessive=rb"a[\s\S]*+\b",
    atomic=rb"(?>a\s*)b",
    inner_cr=rb"a\r",
    case=rb"(?i)AB-",
)


def reference_counts(pats: list[Pattern], data: bytes, piece: int) -> dict[str, int]:
    counts = {p.name: 0 for p in pats}
    *lines, unfinished = data.split(b"\n")
    for line in lines:
        pieces = [line[i : i + piece] for i in range(0, len(line), piece)] or [b""]
        pieces[-1] = pieces[-1].removesuffix(b"\r")
        if len(pieces) > 1 and not pieces[-1]:
            pieces.pop()
        count_line(counts, pats, pieces)
    # an unfinished line: the pieces followed by more than a piece are matched already
    count_line(
        counts, pats, [unfinished[i : i + piece] for i in range(0, len(unfinished) - piece, piece)]
    )
    return counts


def count_line(counts: dict[str, int], pats: list[Pattern], pieces: list[bytes]) -> None:
    for p in pats:
        counts[p.name] += any(p.regex.search(x) for x in pieces)


def fed(matcher: LineMatcher, *chunks: bytes) -> dict[str, int]:
    for chunk in chunks:
        matcher.feed(chunk)
    return matcher.counts


output = st.lists(
    st.sampled_from([b"a", b"b", b"-", b" ", b"\r", b"\n", b"ab\r\n", b"aB-", b"\x00", b"\xff"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), text=output, piece=st.sampled_from([1, 3, 5, 8, PIECE]))
def test_any_chunking_gives_the_reference_counts(
    data: st.DataObject, text: bytes, piece: int
) -> None:
    chunks = data.draw(chunked(text))
    matcher = LineMatcher(TRICKY, piece=piece)
    assert fed(matcher, *chunks) == reference_counts(TRICKY, text, piece)
    assert matcher.carried <= piece


@settings(max_examples=100, deadline=None)
@given(data=st.data(), text=output)
def test_whole_and_bytewise_agree_with_default_piece(data: st.DataObject, text: bytes) -> None:
    chunks = data.draw(chunked(text, max_cuts=5))
    whole = dict(fed(LineMatcher(TRICKY), text))
    assert fed(LineMatcher(TRICKY), *chunks) == whole
    bytewise = [text[i : i + 1] for i in range(len(text))]
    assert fed(LineMatcher(TRICKY), *bytewise) == whole


def test_every_name_is_there_from_the_start() -> None:
    matcher = LineMatcher(patterns(segv=rb"Segmentation fault", sig=rb"caught signal"))
    assert matcher.counts == {"segv": 0, "sig": 0}


def test_no_patterns_counts_nothing_and_carries_nothing() -> None:
    matcher = LineMatcher([])
    matcher.feed(b"x" * 100_000)
    assert matcher.counts == {}
    assert matcher.carried == 0


def test_a_line_counts_once_per_pattern_however_many_matches() -> None:
    matcher = LineMatcher(patterns(segv=rb"fault", epics=rb"epics"))
    assert fed(matcher, b"fault fault fault\r\n", b"epics> fault\r\n") == {"segv": 2, "epics": 1}


def test_a_partial_line_waits_for_its_newline() -> None:
    matcher = LineMatcher(patterns(segv=rb"Segmentation fault$"))
    matcher.feed(b"epics> Segmentation fa")
    matcher.feed(b"ult")
    assert matcher.counts == {"segv": 0}
    matcher.feed(b"\r\nepics> ")
    assert matcher.counts == {"segv": 1}


def test_dollar_matches_before_procservs_crlf() -> None:
    matcher = LineMatcher(patterns(prompt=rb"^epics> $", anywhere=rb"quote$"))
    fed(matcher, b"epics> \r\nUnbalanced quote\r\nquote \r\n")
    assert matcher.counts == {"prompt": 1, "anywhere": 1}


def test_a_long_line_is_matched_in_pieces_and_counted_once() -> None:
    matcher = LineMatcher(patterns(cut=rb"^needle", twice=rb"x"), piece=8)
    # pieces of the first line: "xxxxxxxx" "needlexx" "needle"
    fed(matcher, b"xxxxxxxxneedlexxneedle\r\n")
    assert matcher.counts == {"cut": 1, "twice": 1}


def test_a_match_across_a_piece_cut_is_missed() -> None:
    matcher = LineMatcher(patterns(segv=rb"fault"), piece=8)
    fed(matcher, b"xxxxxxfault\n")  # pieces "xxxxxxfa" "ult"
    assert matcher.counts == {"segv": 0}


def test_carry_over_stays_bounded_without_newlines() -> None:
    matcher = LineMatcher(patterns(segv=rb"Segmentation fault"))
    chunk = b"y" * 65536
    for _ in range(64):
        matcher.feed(chunk)
        assert matcher.carried <= PIECE
    matcher.feed(b"Segmentation fault\n")
    assert matcher.counts == {"segv": 1}


def test_a_huge_chunk_without_newline_is_linear() -> None:
    matcher = LineMatcher(patterns(segv=rb"Segmentation fault"))
    started = time.perf_counter()
    matcher.feed(b"z" * (16 << 20))
    assert time.perf_counter() - started < 2.0
    assert matcher.carried <= PIECE


def console_burst(size: int) -> bytes:
    """IOC-like output: short CRLF lines of 3-15 words, one in 1000 a segfault report."""
    words = [b"epics>", b"dbpr", b"PV:SOME:NAME", b"12.5", b"record", b"scan", b"ok"]
    lines = []
    for i in range(1000):
        line = b" ".join(words[(i + k) % 7] for k in range(3 + i * 7 % 13))
        lines.append((b"Segmentation fault " if i == 500 else b"") + line + b"\r\n")
    block = b"".join(lines)
    return block * (size // len(block) + 1)


def test_a_20_mb_burst_with_three_patterns_is_fast() -> None:
    burst = console_burst(20 << 20)
    pats = patterns(
        segv=rb"Segmentation fault", signal=rb"caught signal \d+", quote=rb"Unbalanced quote"
    )
    matcher = LineMatcher(pats)
    started = time.perf_counter()
    for at in range(0, len(burst), 65536):
        matcher.feed(burst[at : at + 65536])
    elapsed = time.perf_counter() - started
    assert matcher.counts == reference_counts(pats, burst, PIECE)
    assert matcher.counts["segv"] > 0
    # ~200 MB/s on the development machine; the bound only catches a blow-up.
    assert len(burst) / elapsed > 20e6


@pytest.mark.parametrize(
    ("regex", "line"),
    [
        (rb"a(?=b)", b"a\r\nb\n"),
        (rb"(?<!\n)b", b"a\nb\n"),
        (rb"a\Z", b"a\nb\n"),
        (rb"a[\s\S]*+\b", b"a\n-\n"),
    ],
)
def test_patterns_that_see_past_a_line_are_matched_line_by_line(regex: bytes, line: bytes) -> None:
    (pattern,) = patterns(p=regex)
    assert fed(LineMatcher([pattern]), line) == reference_counts([pattern], line, PIECE)
