"""Pattern counters: how many output lines of one console matched each configured regex.

Owns splitting a console's output into lines and counting matches; must not know
consoles, metrics or I/O (the console calls ``feed`` with its decoded output).
Rules, h11-style:

1. A line is the bytes up to ``\\n`` (not included); one ``\\r`` before the ``\\n``
   is removed, so ``$`` works on procServ's ``\\r\\n`` lines. A partial line is
   carried over to the next ``feed``; it is counted when its ``\\n`` arrives.
2. A line longer than ``piece`` bytes (64 KiB) is matched in pieces: the raw
   line cut at every multiple of ``piece``; the trailing ``\\r`` is removed from
   the last piece, and an empty last piece is not matched. Anchors and ``\\b``
   see piece edges as string edges; a match across a cut is missed. A piece is
   matched as soon as more bytes follow it, so the carry-over never holds more
   than ``piece`` bytes (and a hit in a long line counts before its ``\\n``).
3. Each line counts at most once per pattern, however many pieces or matches.
4. Any chunking of the same output gives the same counts (tests/test_patterns.py).

Speed: without patterns ``feed`` returns at once. Otherwise the complete lines
of a chunk are searched as one block with a MULTILINE copy of each pattern (one
C-level scan), and only a line holding a hit is checked on its own with the
pattern as configured (a pattern with ``$`` searches a copy without the ``\\r``s).
That is exact for patterns the block cannot fool; a pattern with ``\\A``,
``\\Z``/``\\z``, a lookaround, an atomic group or a possessive quantifier (which
could see or eat across a line end) is matched line by line instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from consrv.config import Pattern

__all__ = ["PIECE", "LineMatcher"]

PIECE = 64 * 1024

# Constructs whose result can depend on bytes beyond the line (or that can eat a
# line end without backtracking): such a pattern is matched line by line.
_BLOCK_UNSAFE = re.compile(rb"\\[AZz]|\(\?<?[=!]|\(\?>|[*+?}]\+")


@dataclass(frozen=True)
class _Rule:
    name: str
    regex: re.Pattern[bytes]
    block: re.Pattern[bytes] | None  # the MULTILINE copy, when block search is exact
    dollar: bool  # ``$`` must not see the ``\r`` of ``\r\n``: search a stripped block

    @classmethod
    def of(cls, pattern: Pattern) -> _Rule:
        regex, source = pattern.regex, pattern.regex.pattern
        if _BLOCK_UNSAFE.search(source):
            return cls(pattern.name, regex, None, dollar=True)
        block = re.compile(source, regex.flags | re.MULTILINE)
        return cls(pattern.name, regex, block, dollar=b"$" in source)


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


class LineMatcher:
    """Counts, per configured pattern, the output lines that match it."""

    def __init__(self, patterns: Sequence[Pattern], *, piece: int = PIECE) -> None:
        if piece < 1:
            raise ValueError("piece must be at least 1 byte")
        self._rules = tuple(_Rule.of(p) for p in patterns)
        self._piece = piece
        self.counts: dict[str, int] = {p.name: 0 for p in patterns}
        self._pending = b""  # the current line's bytes not matched yet (<= piece)
        self._pieced = False  # some pieces of the current line were matched already
        self._hit: set[str] = set()  # patterns counted for the current line

    @property
    def carried(self) -> int:
        """Bytes of an unfinished line held over to the next ``feed`` (at most ``piece``)."""
        return len(self._pending)

    def feed(self, data: bytes) -> None:
        """Count the lines that ``data`` completes; carry the rest over."""
        if not self._rules or not data:
            return
        last = data.rfind(b"\n")
        if last < 0:
            self._carry(data)
            return
        start = 0
        if self._pieced:  # finish the long line first: it has hits to remember
            start = data.find(b"\n") + 1
            self._carry(data[: start - 1])
            self._end_line()
        if start <= last:
            block, self._pending = self._pending + data[start : last + 1], b""
            self._match_block(block)
        self._carry(data[last + 1 :])

    # -- long lines: pieces ------------------------------------------------------

    def _carry(self, data: bytes) -> None:
        """Add to the current line; match every full piece beyond the first ``piece`` bytes."""
        buf, size, at = self._pending + data, self._piece, 0
        while len(buf) - at > size:
            self._match_piece(buf[at : at + size])
            at += size
        self._pending = buf[at:]

    def _end_line(self) -> None:
        tail = _strip_cr(self._pending)
        if tail or not self._pieced:
            self._match_piece(tail)
        self._pending, self._pieced = b"", False
        self._hit.clear()

    def _match_piece(self, piece: bytes) -> None:
        self._pieced = True
        for rule in self._rules:
            if rule.name not in self._hit and rule.regex.search(piece):
                self._hit.add(rule.name)
                self.counts[rule.name] += 1

    def _match_raw_line(self, line: bytes) -> None:
        self._carry(line)
        self._end_line()

    # -- complete lines: the block -----------------------------------------------

    def _match_block(self, block: bytes) -> None:
        """Count over ``block``: complete raw lines, each ending in ``\\n``."""
        if _has_long_line(block, self._piece):
            for line in block[:-1].split(b"\n"):
                self._match_raw_line(line)
            return
        stripped: bytes | None = None  # made only for a rule that needs it: it costs a copy
        lines: list[bytes] | None = None
        for rule in self._rules:
            if not rule.dollar:
                self.counts[rule.name] += _count_in_block(rule, block, strip=True)
                continue
            stripped = block.replace(b"\r\n", b"\n") if stripped is None else stripped
            if rule.block is not None:
                self.counts[rule.name] += _count_in_block(rule, stripped, strip=False)
            else:
                lines = stripped[:-1].split(b"\n") if lines is None else lines
                self.counts[rule.name] += sum(1 for line in lines if rule.regex.search(line))


def _count_in_block(rule: _Rule, block: bytes, *, strip: bool) -> int:
    """Lines of ``block`` (each ending in ``\\n``) that ``rule`` matches.

    A hit of the MULTILINE copy only says which line to check; the line alone,
    with its ``\\r`` stripped (when ``strip``), decides.
    """
    assert rule.block is not None
    count, pos, size = 0, 0, len(block)
    while (hit := rule.block.search(block, pos)) is not None and hit.start() < size:
        begin = block.rfind(b"\n", 0, hit.start()) + 1
        end = block.find(b"\n", hit.start())
        line = block[begin:end]
        if rule.regex.search(_strip_cr(line) if strip else line):
            count += 1
        pos = end + 1
    return count


def _has_long_line(block: bytes, piece: int) -> bool:
    """True if a line of ``block`` is longer than ``piece``.

    Such a line covers ``piece + 1`` consecutive offsets, so it covers a multiple
    of ``piece + 1``: looking around those offsets only is enough.
    """
    if len(block) <= piece + 1:
        return False
    for at in range(0, len(block), piece + 1):
        end = block.find(b"\n", at)
        if end - (block.rfind(b"\n", 0, at) + 1) > piece:
            return True
    return False
