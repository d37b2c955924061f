"""conserver's ``^Ec`` escape sequences in a user's keystrokes, as events.

Must not know: sockets, time, roles, consoles. It says what the user typed; the
caller decides what a command does, who may use it, and what to print.

Shape (h11): ``receive_data(bytes)``, then ``next_event()`` until it returns None
(need more data). Input is parsed lazily, one event per call, so the caller may
call ``expect_answer()`` or change ``guarded`` between two events of one chunk
and the rest of the chunk is read in the new state.

Commands (prefix ``^Ec`` by default; ``parse_prefix`` reads conserver notation)
------------------------------------------------------------------------------
=============  ==================================================================
``^Ec.``       Command(".")  detach
``^Ec?``       Command("?")  help
``^Eca``       Command("a")  attach read-write
``^Ecf``       Command("f")  force read-write
``^Ecs``       Command("s")  spy (read-only)
``^Ecw``       Command("w")  who is on this console
``^Ecr``       Command("r")  replay the last 20 lines
``^Ecp``       Command("p")  replay the last 60 lines
``^Eci``       Command("i")  console info
``^Ecb`` text  LineStart("b"), Echo..., Line("b", text)  broadcast a message
``^Ecn`` text  LineStart("n"), Echo..., Line("n", text)  note into the log
``^Ec!`` text  LineStart("!"), Echo..., Line("!", text)  IOC action: restart|start|stop
``^Ec\\ooo``    Data(bytes([0ooo])), or Guarded(0ooo) for a guarded byte
other          Unknown(key): ``^Ec`` then any other byte (also ``^E`` again)
=============  ==================================================================

A literal ``^Ec`` for the IOC (conserver has no way): type ``^Ec\\005`` then ``c``.

Rules
-----
1. Everything the parser remembers between calls is ``_state`` (one ``State``),
   the unread input, the line command's key and text, the octal digits and one
   bit (the previous Enter was ``\\r``). So any chunking of the same input gives
   the same events, once adjacent Data (and adjacent Echo) events are merged.
2. No byte is lost or duplicated: the Data payloads, in order, are exactly the
   input minus the recognised sequences (``^Ec`` + key, line text and its
   Enter, ``\\ooo`` digits, answers) and what the caller drops with
   ``discard_unread()`` (typeahead before a question). A ``^E`` not followed
   by ``c`` is data: ``^E x`` gives Data(b"\\x05x"); ``^E ^E c`` gives Data(b"\\x05") and a new
   ``^Ec``; a held ``^E`` that is a guarded byte gives Guarded instead, and ``x``
   is its Answer. ``^E`` as the last byte so far is held (state PREFIX) until the
   next byte, or until ``flush_pending()`` releases it.
3. A run of plain bytes is one Data event (a Data from ``\\ooo`` stands alone).
   Bytes before a guarded byte come out first; then Guarded(byte), and the
   next byte typed is the Answer. ``expect_answer()`` asks for one explicitly.
   ``^Ec`` is recognised before guarded bytes (even if ``^E`` is guarded).
4. In a line: printable bytes (and bytes >= 0x80, UTF-8) are echoed up to
   ``max_line`` bytes, the rest ignored; backspace (0x7f, 0x08) deletes one
   character and echoes ``b"\\b \\b"``; ^U deletes all; ^C, ESC, ^D cancel;
   ``\\r`` or ``\\n`` ends it; other control bytes (``^E`` and guarded bytes
   too) are ignored. Line.text is the UTF-8 text (errors replaced), stripped.
5. After an Enter ``\\r`` that ended a line or was an answer, a following
   ``\\n`` or ``\\0`` is swallowed, even in the next chunk.
6. ``\\`` takes 1 to 3 octal digits; the first non-octal byte ends it and is
   then read normally. ``\\`` without a digit is Unknown("\\\\"); a value over
   0o377 is Unknown("\\\\" + digits). Keys of Unknown and Answer are
   ``chr(byte)``. The parser never raises on input.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "COMMAND_KEYS",
    "DEFAULT_PREFIX",
    "LINE_KEYS",
    "Answer",
    "Cancelled",
    "Command",
    "Data",
    "Echo",
    "EscapeParser",
    "Event",
    "Guarded",
    "Line",
    "LineStart",
    "State",
    "Unknown",
    "format_prefix",
    "parse_prefix",
]

DEFAULT_PREFIX = b"\x05c"
COMMAND_KEYS = frozenset(".?afswrpi")
LINE_KEYS = frozenset("bn!")

_CONTROL_NAMES = "@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_"
_ENTER = b"\r\n"
_CANCEL = b"\x03\x1b\x04"  # ^C, ESC, ^D
_BACKSPACE = b"\x7f\x08"
_KILL_LINE = 0x15  # ^U
_RUBOUT = b"\b \b"
_OCTAL = b"01234567"
_PRINTABLE = re.compile(rb"[\x20-\x7e\x80-\xff]+")


@dataclass(frozen=True, slots=True)
class Data:
    """Bytes for the IOC."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Command:
    """A single-key command, one of COMMAND_KEYS."""

    key: str


@dataclass(frozen=True, slots=True)
class LineStart:
    """A line command (one of LINE_KEYS) began: show a prompt."""

    key: str


@dataclass(frozen=True, slots=True)
class Echo:
    """Bytes to show the user while a line is typed."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Line:
    """A line command's text, complete."""

    key: str
    text: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """A line command was abandoned (^C, ESC or ^D)."""

    key: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The prefix followed by a key that means nothing (swallowed)."""

    key: str


@dataclass(frozen=True, slots=True)
class Guarded:
    """A guarded byte was typed: not sent; the next byte is its Answer."""

    byte: int


@dataclass(frozen=True, slots=True)
class Answer:
    """The byte typed after Guarded or expect_answer(), as a character."""

    key: str


Event: TypeAlias = Data | Command | LineStart | Echo | Line | Cancelled | Unknown | Guarded | Answer


class State(enum.Enum):
    NORMAL = enum.auto()  # plain data
    PREFIX = enum.auto()  # the prefix's first byte is held: is the next one its second?
    COMMAND = enum.auto()  # saw the whole prefix: the next byte is the command key
    OCTAL = enum.auto()  # saw prefix + "\": reading up to 3 octal digits
    LINE = enum.auto()  # collecting a line command's text
    ANSWER = enum.auto()  # the next byte is an Answer


def parse_prefix(text: str) -> bytes:
    """The prefix bytes for conserver notation such as ``"^Ec"``, ``"^]c"``, ``"^Ak"``."""
    if len(text) != 3 or text[0] != "^":
        raise ValueError(
            f"escape prefix {text!r}: write it as '^' + a control key + a character, like '^Ec'"
        )
    control, key = text[1].upper(), text[2]
    if control not in _CONTROL_NAMES:
        raise ValueError(
            f"escape prefix {text!r}: ^{text[1]} is not a control key"
            " (use ^@, ^A to ^Z, ^[, ^\\, ^], ^^ or ^_)"
        )
    if not "!" <= key <= "~":
        raise ValueError(
            f"escape prefix {text!r}: its second key {key!r} must be a printable"
            " ASCII character other than space"
        )
    return bytes([ord(control) ^ 0x40, ord(key)])


def format_prefix(prefix: bytes) -> str:
    """Conserver notation for a prefix, e.g. ``b"\\x05c"`` -> ``"^Ec"`` (for help text)."""
    if len(prefix) != 2 or prefix[0] >= 0x20 or not 0x21 <= prefix[1] <= 0x7E:
        raise ValueError(
            f"escape prefix {prefix!r}: must be a control byte then a printable ASCII byte"
        )
    return "^" + chr(prefix[0] ^ 0x40) + chr(prefix[1])


class EscapeParser:
    """Split a user's keystrokes into data for the IOC and escape-command events."""

    def __init__(
        self,
        prefix: bytes = DEFAULT_PREFIX,
        *,
        guarded: frozenset[int] = frozenset(),
        max_line: int = 512,
    ) -> None:
        format_prefix(prefix)  # validates
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, not {max_line}")
        self._prefix, self._max_line = prefix, max_line
        self.guarded = guarded
        self._state = State.NORMAL
        self._buf, self._pos = b"", 0
        self._after_cr = False  # rule 5
        self._key = ""  # the line command being typed
        self._line = bytearray()
        self._digits = b""
        self._steps: dict[State, Callable[[], Event | None]] = {
            State.NORMAL: self._in_normal,
            State.PREFIX: self._in_prefix,
            State.COMMAND: self._in_command,
            State.OCTAL: self._in_octal,
            State.LINE: self._in_line,
            State.ANSWER: self._in_answer,
        }

    @property
    def state(self) -> State:
        """Where the parser is after the events returned so far."""
        return self._state

    @property
    def guarded(self) -> frozenset[int]:
        """Bytes that need confirmation (Guarded, then Answer) instead of passing as Data."""
        return self._guarded

    @guarded.setter
    def guarded(self, value: frozenset[int]) -> None:
        self._guarded = frozenset(value)
        p0, p1 = (re.escape(bytes([b])) for b in self._prefix)
        stops = [b"(?P<prefix>" + p0 + p1 + b")", b"(?P<held>" + p0 + rb"\Z)"]
        if self._guarded:
            members = b"".join(re.escape(bytes([b])) for b in sorted(self._guarded))
            stops.append(b"(?P<guard>[" + members + b"])")
        self._stops = re.compile(b"|".join(stops))

    def receive_data(self, data: bytes) -> None:
        """Add keystrokes; read them with next_event()."""
        self._buf = self._buf[self._pos :] + bytes(data)
        self._pos = 0

    def next_event(self) -> Event | None:
        """The next event, or None when all input so far is used (or held)."""
        while self._pos < len(self._buf):
            if self._after_cr:
                self._after_cr = False
                if self._buf[self._pos] in b"\n\0":
                    self._pos += 1
                    continue
            event = self._steps[self._state]()
            if event is not None:
                return event
        return None

    def expect_answer(self) -> None:
        """Make the next byte typed an Answer (state NORMAL or ANSWER; else RuntimeError).

        A held prefix byte (state PREFIX) must be released first with flush_pending().
        """
        if self._state not in (State.NORMAL, State.ANSWER):
            raise RuntimeError(f"expect_answer() in state {self._state.name}")
        self._state = State.ANSWER

    def cancel_answer(self) -> None:
        """No question is asked after all (e.g. a guarded byte that is just blocked):
        the next byte is parsed as usual. A no-op outside state ANSWER."""
        if self._state is State.ANSWER:
            self._state = State.NORMAL

    def discard_unread(self) -> int:
        """Drop the input received but not read yet; the number of bytes dropped.

        For typeahead: what arrived with the key that raised a question must not
        answer it. A held prefix byte is not unread input (it was read).
        """
        dropped = len(self._buf) - self._pos
        self._buf, self._pos = b"", 0
        return dropped

    def flush_pending(self) -> bytes:
        """Release a held prefix byte as data (for an idle timer); b"" if none is held.

        The caller guards it if it is a guarded byte (``expect_answer()`` then asks).
        """
        if self._state is not State.PREFIX or self._pos < len(self._buf):
            return b""
        self._state = State.NORMAL
        return self._prefix[:1]

    # Each step reads from self._buf at self._pos; it consumes a byte or returns an event.

    def _take(self) -> int:
        byte = self._buf[self._pos]
        self._pos += 1
        return byte

    def _in_normal(self, carry: bytes = b"") -> Event | None:
        m = self._stops.search(self._buf, self._pos)
        end = len(self._buf) if m is None else m.start()
        if carry or end > self._pos:
            data, self._pos = carry + self._buf[self._pos : end], end
            return Data(data)
        assert m is not None
        self._pos = m.end()
        if m.lastgroup == "prefix":
            self._state = State.COMMAND
        elif m.lastgroup == "held":
            self._state = State.PREFIX
        else:
            return self._guard(m[0][0])
        return None

    def _in_prefix(self) -> Event | None:
        if self._buf[self._pos] == self._prefix[1]:
            self._pos += 1
            self._state = State.COMMAND
            return None
        self._state = State.NORMAL  # the held byte was data after all
        if self._prefix[0] in self._guarded:  # ... and guarded: the next byte answers
            return self._guard(self._prefix[0])
        return self._in_normal(carry=self._prefix[:1])

    def _in_command(self) -> Event | None:
        key = chr(self._take())
        self._state = State.NORMAL
        if key in COMMAND_KEYS:
            return Command(key)
        if key in LINE_KEYS:
            self._state, self._key = State.LINE, key
            self._line.clear()
            return LineStart(key)
        if key == "\\":
            self._state, self._digits = State.OCTAL, b""
            return None
        return Unknown(key)

    def _in_octal(self) -> Event | None:
        byte = self._buf[self._pos]
        if byte in _OCTAL:
            self._pos += 1
            self._digits += bytes([byte])
            return self._octal_done() if len(self._digits) == 3 else None
        if not self._digits:  # "\" and no digit: the byte is read normally
            self._state = State.NORMAL
            return Unknown("\\")
        return self._octal_done()

    def _octal_done(self) -> Event:
        self._state = State.NORMAL
        value = int(self._digits, 8)
        if value > 0xFF:
            return Unknown("\\" + self._digits.decode())
        if value in self._guarded:
            return self._guard(value)
        return Data(bytes([value]))

    def _guard(self, byte: int) -> Event:
        self._state = State.ANSWER
        return Guarded(byte)

    def _in_answer(self) -> Event:
        byte = self._take()
        self._state, self._after_cr = State.NORMAL, byte == 0x0D
        return Answer(chr(byte))

    def _in_line(self) -> Event | None:
        run = _PRINTABLE.match(self._buf, self._pos)
        if run is not None:
            self._pos = run.end()
            room = self._max_line - len(self._line)
            echo = run[0][: max(room, 0)]
            self._line += echo
            return Echo(echo) if echo else None
        byte = self._take()
        if byte in _ENTER:
            self._state, self._after_cr = State.NORMAL, byte == 0x0D
            return Line(self._key, self._line.decode("utf-8", "replace").strip())
        if byte in _CANCEL:
            self._state = State.NORMAL
            return Cancelled(self._key)
        if byte in _BACKSPACE:
            return self._rub_out(_last_char_start(self._line))
        if byte == _KILL_LINE:
            return self._rub_out(0)
        return None  # other control bytes are ignored

    def _rub_out(self, start: int) -> Event | None:
        chars = len(self._line[start:].decode("utf-8", "replace"))  # a bad byte shows as one
        del self._line[start:]
        return Echo(_RUBOUT * chars) if chars else None


def _last_char_start(line: bytearray) -> int:
    """Where the last UTF-8 character of ``line`` starts (a lone byte if malformed)."""
    i = len(line) - 1
    while i > 0 and len(line) - i < 4 and 0x80 <= line[i] < 0xC0:
        i -= 1
    return i if i >= 0 and line[i] >= 0xC0 else max(len(line) - 1, 0)
