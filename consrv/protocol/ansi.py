"""Terminal escape sequences taken out of console output, for readers that are not terminals.

Owns recognising ECMA-48 sequences in a byte stream: CSI (``ESC [ ... final``: colours,
cursor moves, erasing), OSC (``ESC ] ... BEL`` or ``... ESC \\``: titles, links,
clipboard), DCS/SOS/PM/APC strings (``ESC P|X|^|_ ... ESC \\``) and the two- and
three-byte escapes (``ESC 7``, ``ESC ( B``). `AnsiStripper.receive_data` drops them
and passes every other byte on unchanged (text, newlines, other control bytes); a
sequence split across chunks is carried over, so any chunking gives the same output.
A sequence that never ends is bounded: after `MAX_SEQUENCE` bytes it is dropped
whole and reading starts again as text.

Used where console output goes to something that is not a terminal: the web's log
pages and ``ssh ... tail`` / ``log`` without a pty. Must not know: sockets, time, SSH.
"""

from __future__ import annotations

import enum

ESC = 0x1B
BEL = 0x07
MAX_SEQUENCE = 4096  # bytes of one unfinished sequence before it is given up


class _State(enum.Enum):
    TEXT = enum.auto()
    ESCAPE = enum.auto()  # after ESC
    INTERMEDIATE = enum.auto()  # ESC then 0x20-0x2F bytes: ends at 0x30-0x7E
    CSI = enum.auto()  # ESC [: parameters and intermediates, ends at 0x40-0x7E
    STRING = enum.auto()  # OSC / DCS / SOS / PM / APC: ends at BEL (OSC) or ESC \
    STRING_ESCAPE = enum.auto()  # ESC inside a string: "\" ends it


_STRING_OPENERS = frozenset(b"]PX^_")


class AnsiStripper:
    """A stream of console output with its escape sequences removed."""

    def __init__(self) -> None:
        self._state = _State.TEXT
        self._length = 0  # bytes of the sequence being skipped

    def receive_data(self, data: bytes) -> bytes:
        """The bytes of `data` that are not part of an escape sequence."""
        if self._state is _State.TEXT and ESC not in data:
            return data
        out = bytearray()
        for byte in data:
            if self._state is _State.TEXT:
                if byte == ESC:
                    self._state, self._length = _State.ESCAPE, 1
                else:
                    out.append(byte)
                continue
            self._length += 1
            self._state = self._next(byte)
            if self._state is not _State.TEXT and self._length > MAX_SEQUENCE:
                self._state = _State.TEXT
        return bytes(out)

    def _next(self, byte: int) -> _State:
        """The state after `byte`, inside a sequence."""
        state = self._state
        if byte == ESC and state in (_State.ESCAPE, _State.INTERMEDIATE, _State.CSI):
            return _State.ESCAPE  # as a terminal does: a new sequence starts
        if state is _State.ESCAPE:
            if byte == ord("["):
                return _State.CSI
            if byte in _STRING_OPENERS:
                return _State.STRING
            if 0x20 <= byte <= 0x2F:
                return _State.INTERMEDIATE
            return _State.TEXT  # a two-byte escape (ESC 7, ESC =, ...) or a stray ESC
        if state is _State.INTERMEDIATE:
            return _State.INTERMEDIATE if 0x20 <= byte <= 0x2F else _State.TEXT
        if state is _State.CSI:
            return _State.TEXT if 0x40 <= byte <= 0x7E else _State.CSI
        if state is _State.STRING:
            if byte == BEL:
                return _State.TEXT
            return _State.STRING_ESCAPE if byte == ESC else _State.STRING
        # STRING_ESCAPE: "\" is the string terminator; anything else stays in the string
        if byte == ord("\\"):
            return _State.TEXT
        return _State.STRING_ESCAPE if byte == ESC else _State.STRING


def strip(data: bytes) -> bytes:
    """`data` without escape sequences (a sequence cut off at its end is dropped)."""
    return AnsiStripper().receive_data(data)
