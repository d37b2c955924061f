"""procServ's ``@@@`` messages: the connect banner and the child start/exit lines, as events.

Must not know: sockets, time, telnet (it is fed the output *after* TelnetDecoder).

Invariants
----------
1. The parser's memory between chunks is ``_state`` (one ``_LineState``) and
   ``_partial`` (the start of the current line). Any split of the same byte
   stream gives the same events as feeding it whole.
2. Lines end at ``\\n``; trailing ``\\r`` are stripped. Only lines that start
   with ``@@@ `` can produce an event; all other output is skipped as soon as
   its first bytes show it cannot start with ``@@@ ``, so ordinary console
   output is never buffered.
3. A line longer than ``MAX_LINE`` bytes (counted before the ``\\r`` strip) is
   dropped whole, however it is split: at most ``MAX_LINE`` bytes are carried.
4. Unknown ``@@@`` lines are ignored; ``receive_data`` never raises on any input.

Wording, 2.7 vs 2.8+ (ralphlange/procServ; NL is ``\\r\\n``)
----------------------------------------------------------
- clientFactory.cc, the greeting:
  ``@@@ Welcome to procServ (procServ Process Server 2.7.0)``
  (before 2.6: ``@@@ Welcome to the procServ process server (...)``), then
  2.7:  ``@@@ Use ^X to kill the child, auto restart is ON, use ^T to toggle auto restart``
  2.8+: ``@@@ Use ^X to kill the child, auto restart mode is ON|OFF|ONESHOT, use ^T ...``
  (``@@@ Kill command disabled, ...`` when there is no kill key, ``... auto restart
  toggle disabled`` when there is no toggle key); the keys are set with ``-k`` and
  ``--autorestartcmd`` and shown as ``^K`` (a control key) or the character itself.
  With ``-x``: ``@@@ Use ^L to logout from procServ server`` (2.7 and 2.8+).
  Keys the server acts on (clientFactory.cc processInput): the kill key always;
  the toggle key always; the logout key always; while no child runs, ^R (fixed)
  and the kill key restart it and ^Q (fixed) quits procServ.
- clientFactory.cc, ^T: 2.7 ``@@@ Toggled auto restart to ON|OFF``,
  2.8+ ``@@@ Toggled auto restart mode to ON|OFF|ONESHOT``.
- procServ.cc, infoMessage1/2: ``@@@ procServ server PID: 5803``, then
  ``@@@ Child "MYIOC" PID: 5834`` or ``@@@ Child "MYIOC" is SHUT DOWN``.
- processFactory.cc (home of processClass; there is no processClass.cc):
  ``@@@ The PID of new child "MYIOC" is: 8320`` and, from ~processClass,
  ``@@@ Child process is shutting down, <next>`` where <next> is
  ``a new one will be restarted shortly`` | ``auto restart is disabled`` (2.7 and 2.8+)
  | ``oneshot mode: server will exit`` (2.8+ only).
- procServ.cc, OnPollTimeout: ``@@@ Received a sigChild for process 8320.``
  followed by `` Normal exit status = 3`` or `` The process was killed by signal 9``
  (same in 2.7 and 2.8+).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "MAX_LINE",
    "QUIT_KEY",
    "RESTART_KEY",
    "AutoRestartMode",
    "ChildExited",
    "ChildRunning",
    "ChildShutDown",
    "ChildShuttingDown",
    "ChildStarted",
    "ControlKeys",
    "Event",
    "LogoutKey",
    "ProcServParser",
    "RestartMode",
    "ServerBanner",
    "ServerPid",
    "ShutdownNext",
    "key_name",
    "parse_line",
]

MAX_LINE = 4096
MARKER = b"@@@ "
# Fixed in procServ (no option changes them); acted on only while no child runs.
RESTART_KEY, QUIT_KEY = 0x12, 0x11

RestartMode: TypeAlias = Literal["ON", "OFF", "ONESHOT"]
ShutdownNext: TypeAlias = Literal["restart", "disabled", "oneshot"]


@dataclass(frozen=True, slots=True)
class ServerBanner:
    """The greeting; ``version`` is the last word in its parentheses, e.g. ``"2.7.0"``."""

    version: str


@dataclass(frozen=True, slots=True)
class AutoRestartMode:
    """The auto-restart mode, from the banner or from a ^T toggle."""

    mode: RestartMode


@dataclass(frozen=True, slots=True)
class ControlKeys:
    """The greeting's keys line: the kill and auto-restart toggle keys (None: disabled)
    and the auto-restart mode."""

    kill: int | None
    toggle: int | None
    mode: RestartMode


@dataclass(frozen=True, slots=True)
class LogoutKey:
    """The greeting's logout line: the key that ends a client's connection (``-x``)."""

    key: int


@dataclass(frozen=True, slots=True)
class ServerPid:
    """The procServ process's own PID (banner)."""

    pid: int


@dataclass(frozen=True, slots=True)
class ChildRunning:
    """Banner: the child is running with this PID."""

    pid: int


@dataclass(frozen=True, slots=True)
class ChildShutDown:
    """Banner: no child is running."""


@dataclass(frozen=True, slots=True)
class ChildStarted:
    """A new child was started with this PID."""

    pid: int


@dataclass(frozen=True, slots=True)
class ChildExited:
    """procServ reaped a child: an exit code, or the signal that killed it."""

    pid: int
    exit_code: int | None
    signal: int | None


@dataclass(frozen=True, slots=True)
class ChildShuttingDown:
    """The child is gone; ``next`` says what procServ does now."""

    next: ShutdownNext


Event: TypeAlias = (
    ServerBanner
    | ControlKeys
    | LogoutKey
    | AutoRestartMode
    | ServerPid
    | ChildRunning
    | ChildShutDown
    | ChildStarted
    | ChildExited
    | ChildShuttingDown
)

_MODES: dict[bytes, RestartMode] = {b"ON": "ON", b"OFF": "OFF", b"ONESHOT": "ONESHOT"}
_NEXT: dict[bytes, ShutdownNext] = {
    b"a new one will be restarted shortly": "restart",
    b"auto restart is disabled": "disabled",
    b"oneshot mode: server will exit": "oneshot",
}
_NUM = rb"([0-9]{1,18})"


def _banner(m: re.Match[bytes]) -> Event:
    return ServerBanner(m[1].rsplit(b" ", 1)[-1].decode("ascii", "replace"))


def _mode(m: re.Match[bytes]) -> Event:
    return AutoRestartMode(_MODES[m[1]])


def key_name(key: int) -> str:
    """A key as procServ writes it: ``^X`` for a control key, else the character."""
    return "^" + chr(key + 64) if key < 32 else chr(key)


def _key(text: bytes | None) -> int | None:
    """A key as procServ writes it (``^K``, or one character), as a byte; None if absent."""
    if text is None:
        return None
    return text[1] - 64 if len(text) == 2 else text[0]


_KEY = rb"(\^[@-_]|.)"


def _keys(m: re.Match[bytes]) -> Event:
    return ControlKeys(_key(m["kill"]), _key(m["toggle"]), _MODES[m["mode"]])


def _logout(m: re.Match[bytes]) -> Event:
    return LogoutKey(m[1][1] - 64 if len(m[1]) == 2 else m[1][0])


def _exited(m: re.Match[bytes]) -> Event:
    code = None if m[2] is None else int(m[2])
    sig = None if m[3] is None else int(m[3])
    return ChildExited(int(m[1]), code, sig)


def _shutting_down(m: re.Match[bytes]) -> Event | None:
    nxt = _NEXT.get(m[1])
    return None if nxt is None else ChildShuttingDown(nxt)


_Rule: TypeAlias = tuple[re.Pattern[bytes], Callable[[re.Match[bytes]], Event | None]]

# One rule per message; each pattern is matched against a whole line after "@@@ ".
_RULES: list[_Rule] = [
    (re.compile(rb"Welcome to (?:the )?procServ (?:process server )?\((.*)\)"), _banner),
    (
        re.compile(
            rb"(?:Use (?P<kill>\^[@-_]|.) to kill the child|Kill command disabled),"
            rb" auto restart (?:mode )?is (?P<mode>ON|OFF|ONESHOT),"
            rb" (?:use (?P<toggle>\^[@-_]|.) to toggle auto restart|auto restart toggle disabled)",
            re.DOTALL,
        ),
        _keys,
    ),
    (re.compile(rb"Use " + _KEY + rb" to logout from procServ server", re.DOTALL), _logout),
    (re.compile(rb"Toggled auto restart (?:mode )?to (ON|OFF|ONESHOT)"), _mode),
    (re.compile(rb"procServ server PID: " + _NUM), lambda m: ServerPid(int(m[1]))),
    (re.compile(rb'Child ".*" PID: ' + _NUM), lambda m: ChildRunning(int(m[1]))),
    (re.compile(rb'Child ".*" is SHUT DOWN'), lambda m: ChildShutDown()),
    (re.compile(rb'The PID of new child ".*" is: ' + _NUM), lambda m: ChildStarted(int(m[1]))),
    (
        re.compile(
            rb"Received a sigChild for process " + _NUM + rb"\."
            rb"(?: Normal exit status = " + _NUM + rb")?"
            rb"(?: The process was killed by signal " + _NUM + rb")?"
        ),
        _exited,
    ),
    (re.compile(rb"Child process is shutting down, (.*)"), _shutting_down),
]


def parse_line(line: bytes) -> Event | None:
    """The event for one complete line (no ``\\r\\n``), or None."""
    if not line.startswith(MARKER):
        return None
    body = line[len(MARKER) :]
    for pattern, build in _RULES:
        m = pattern.fullmatch(body)
        if m is not None:
            return build(m)
    return None


_NEWLINE_MARKER = b"\n" + MARKER
# Looked for first: a one-byte search is memchr (0.01 ns a byte here) where the
# five-byte marker's is 0.4 ns a byte, and most output holds no "@" at all.
_MARKER_BYTE = MARKER[:1]


class _LineState(enum.Enum):
    COLLECTING = enum.auto()  # the current line may still be an @@@ line: carry it
    SKIPPING = enum.auto()  # the current line cannot matter: drop bytes up to "\n"


class ProcServParser:
    """Turn procServ's decoded output stream into events."""

    def __init__(self) -> None:
        self._state = _LineState.COLLECTING
        self._partial = b""

    def snapshot(self) -> dict[str, str]:
        """What the parser carries between chunks (invariant 1), as JSON-able values:
        the line state and the unfinished line (latin-1, so any byte survives)."""
        return {"state": self._state.name, "partial": self._partial.decode("latin-1")}

    @classmethod
    def resume(cls, snapshot: Mapping[str, object]) -> ProcServParser:
        """A parser in the state `snapshot` gave; ValueError if it is not one."""
        parser = cls()
        state, partial = snapshot.get("state"), snapshot.get("partial")
        if not isinstance(state, str) or state not in _LineState.__members__:
            raise ValueError(f"not a procServ parser state: {state!r}")
        if not isinstance(partial, str) or len(partial) > MAX_LINE:
            raise ValueError("the unfinished line is not a string of at most MAX_LINE")
        parser._state, parser._partial = _LineState[state], partial.encode("latin-1")
        return parser

    @property
    def buffered_bytes(self) -> int:
        """Bytes carried over from an unfinished line (never more than MAX_LINE)."""
        return len(self._partial)

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed output bytes; return the events of every line completed by them."""
        events: list[Event] = []
        first = data.find(b"\n")
        if first < 0:
            self._carry(data)
            return events
        self._end_line(data[:first], events)  # it may finish a line begun earlier
        last = data.rfind(b"\n")
        # The whole lines in between matter only if one starts with the marker: an
        # IOC's output (almost every chunk) is skipped without looking at each line.
        if last > first and _holds(data, _NEWLINE_MARKER, first, last):
            start = first + 1
            while (end := data.find(b"\n", start)) >= 0:
                self._end_line(data[start:end], events)
                start = end + 1
        self._carry(data[last + 1 :])
        return events

    def _end_line(self, tail: bytes, events: list[Event]) -> None:
        skip, line = self._state is _LineState.SKIPPING, self._partial + tail
        self._state, self._partial = _LineState.COLLECTING, b""
        if skip or len(line) > MAX_LINE:
            return
        event = parse_line(line.rstrip(b"\r"))
        if event is not None:
            events.append(event)

    def _carry(self, tail: bytes) -> None:
        if self._state is _LineState.SKIPPING:
            return
        partial = self._partial + tail
        if len(partial) > MAX_LINE or not _may_be_marker(partial):
            self._state, self._partial = _LineState.SKIPPING, b""
        else:
            self._partial = partial


def _holds(data: bytes, marker: bytes, start: int, end: int) -> bool:
    """Whether ``marker`` starts in ``data[start:end]`` (its "@" looked for first)."""
    return data.find(_MARKER_BYTE, start, end) >= 0 and data.find(marker, start, end) >= 0


def _may_be_marker(start: bytes) -> bool:
    """Whether a line beginning with ``start`` may still be an ``@@@ `` line."""
    return start.startswith(MARKER) or MARKER.startswith(start)
