"""procServ's telnet framing: IAC stripping on output, IAC escaping and Enter on input.

Must not know: sockets, time, the procServ ``@@@`` messages (see procserv.py).

Invariants
----------
1. Everything the decoder remembers between chunks is ``_state`` (one
   ``_State``) and ``negotiation_seen``. So any split of the same byte stream
   gives the same output: ``b"".join(map(d.receive_data, chunks))`` equals
   ``TelnetDecoder().receive_data(b"".join(chunks))``.
2. The decoder only removes bytes: its output is the input's data bytes in
   order, with each ``FF FF`` turned into one ``FF``. Every other IAC command
   (WILL/WONT/DO/DONT + option, SB ... SE, any 2-byte command) is swallowed.
   It never answers: consrv sends no negotiation, and procServ needs none.
3. In the DATA state a chunk without 0xFF is returned as the same object; this
   runs on every byte of console output.
4. ``escape_iac`` is the inverse of the decoder on data:
   ``TelnetDecoder().receive_data(escape_iac(x)) == x``.
5. The encoder carries one bit between chunks (the previous byte was ``\\r``),
   so ``\\r\\n`` and ``\\r\\0`` split across two ``encode()`` calls still give
   one ``\\r``. It changes nothing else but 0xFF (doubled).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping

__all__ = ["InputEncoder", "TelnetDecoder", "escape_iac"]

IAC = 0xFF
SE = 0xF0  # end of subnegotiation
SB = 0xFA  # start of subnegotiation
WILL, WONT, DO, DONT = 0xFB, 0xFC, 0xFD, 0xFE
_OPTION_VERBS = frozenset((WILL, WONT, DO, DONT))
_IAC_BYTE = b"\xff"


def escape_iac(data: bytes) -> bytes:
    """Double every 0xFF, so telnet carries it as data."""
    return data.replace(_IAC_BYTE, b"\xff\xff")


class _State(enum.Enum):
    DATA = enum.auto()  # plain bytes
    IAC = enum.auto()  # after FF: the next byte is a command
    OPTION = enum.auto()  # after FF WILL/WONT/DO/DONT: the next byte is the option
    SB = enum.auto()  # inside FF SB ...: swallowed until FF SE
    SB_IAC = enum.auto()  # after FF inside SB


class TelnetDecoder:
    """Strip telnet commands from procServ's output stream, statefully across chunks."""

    def __init__(self) -> None:
        self._state = _State.DATA
        self._seen = False
        self._steps: dict[_State, Callable[[bytes, int, bytearray], int]] = {
            _State.DATA: self._in_data,
            _State.IAC: self._in_iac,
            _State.OPTION: self._in_option,
            _State.SB: self._in_sb,
            _State.SB_IAC: self._in_sb_iac,
        }

    def snapshot(self) -> dict[str, str | bool]:
        """What the decoder remembers between chunks, as JSON-able values (invariant 1).

        `resume` makes a decoder that goes on from exactly here: used to hand a
        connection to the next consrv process (handover.py).
        """
        return {"state": self._state.name, "negotiation_seen": self._seen}

    @classmethod
    def resume(cls, snapshot: Mapping[str, object]) -> TelnetDecoder:
        """A decoder in the state `snapshot` gave; ValueError if it is not one."""
        decoder = cls()
        state, seen = snapshot.get("state"), snapshot.get("negotiation_seen")
        if not isinstance(state, str) or state not in _State.__members__:
            raise ValueError(f"not a telnet decoder state: {state!r}")
        if not isinstance(seen, bool):
            raise ValueError(f"negotiation_seen is not true or false: {seen!r}")
        decoder._state, decoder._seen = _State[state], seen
        return decoder

    @property
    def negotiation_seen(self) -> bool:
        """True once any IAC command other than ``FF FF`` arrived (procServ's banner ended)."""
        return self._seen

    def receive_data(self, data: bytes) -> bytes:
        """Return the data bytes of ``data``, with all telnet commands removed."""
        if self._state is _State.DATA and IAC not in data:
            return data
        out = bytearray()
        pos = 0
        while pos < len(data):
            pos = self._steps[self._state](data, pos, out)
        return bytes(out)

    # Each step consumes from data[pos:] and returns the new position.

    def _in_data(self, data: bytes, pos: int, out: bytearray) -> int:
        i = data.find(IAC, pos)
        if i < 0:
            out += data[pos:]
            return len(data)
        out += data[pos:i]
        self._state = _State.IAC
        return i + 1

    def _in_iac(self, data: bytes, pos: int, out: bytearray) -> int:
        command = data[pos]
        if command == IAC:
            out.append(IAC)
            self._state = _State.DATA
            return pos + 1
        self._seen = True
        if command in _OPTION_VERBS:
            self._state = _State.OPTION
        elif command == SB:
            self._state = _State.SB
        else:  # NOP, GA, IP, AYT, SE, ...: two bytes, no argument
            self._state = _State.DATA
        return pos + 1

    def _in_option(self, data: bytes, pos: int, out: bytearray) -> int:
        self._state = _State.DATA
        return pos + 1

    def _in_sb(self, data: bytes, pos: int, out: bytearray) -> int:
        i = data.find(IAC, pos)
        if i < 0:
            return len(data)
        self._state = _State.SB_IAC
        return i + 1

    def _in_sb_iac(self, data: bytes, pos: int, out: bytearray) -> int:
        command = data[pos]
        if command == SE:
            self._state = _State.DATA
        elif command == IAC:  # FF FF inside SB is an escaped data byte of the SB
            self._state = _State.SB
        else:  # malformed: end the SB here and read this byte as a command (as libtelnet)
            self._state = _State.IAC
            return pos
        return pos + 1


# Enter in any form the client sends: \r\n, \r\0, a lone \r or a lone \n.
_ENTER = re.compile(rb"\r[\n\0]?|\n")
_PLAIN = re.compile(rb"[^\r\n\xff]*")


class InputEncoder:
    """Turn a client's keystrokes into bytes for procServ: 0xFF escaped, Enter as ``\\r``."""

    def __init__(self) -> None:
        self._after_cr = False

    def encode(self, data: bytes) -> bytes:
        """Return ``data`` ready to send to procServ; everything but Enter and 0xFF unchanged."""
        if not data:
            return b""
        if not self._after_cr and _PLAIN.fullmatch(data):  # most keystrokes
            return data
        if self._after_cr and data[0] in b"\n\0":
            data = data[1:]  # second half of a \r\n or \r\0 split across calls
        self._after_cr = data.endswith(b"\r")
        return escape_iac(_ENTER.sub(b"\r", data))
