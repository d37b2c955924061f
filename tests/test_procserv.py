"""Tests for consrv.protocol.procserv: byte transcripts in, events out; no I/O, no mocks.

REAL_27 is the exact byte stream a control client received from Debian's procServ
2.7.0 (``procServ -f -q --holdoff 1 --name=MYIOC --port=unix:/tmp/cap/run/ctl
/bin/sh -c "printf 'hi \\377\\n'; sleep 2; exit 3"``, an AF_UNIX client connected
~1 s after start): the banner with the child running, the telnet negotiation,
two normal exits (status 3) with restarts, a ``^X`` kill (signal 9), ``^T`` to
OFF (exit, no restart) and ``^T`` back to ON (restart). ``hi \\377`` shows the IOC's
0xFF arriving as ``FF FF``.

FROM_SOURCE_28 is not captured: no 2.8 binary here. It is assembled from the
format strings in ralphlange/procServ 2.8 (clientFactory.cc, procServ.cc,
processFactory.cc), with the 2.8-only lines: ``auto restart mode is``, the logout
key line, ``Child log file``, ``Toggled auto restart mode to``, ``Got a kill
command`` and ``oneshot mode: server will exit``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consrv.protocol.procserv import (
    MAX_LINE,
    AutoRestartMode,
    ChildExited,
    ChildRunning,
    ChildShutDown,
    ChildShuttingDown,
    ChildStarted,
    ControlKeys,
    Event,
    LogoutKey,
    ProcServParser,
    ServerBanner,
    ServerPid,
    parse_line,
)
from consrv.protocol.telnet import TelnetDecoder
from tests.chunking import chunked

NEGOTIATION = b"\xff\xfb\x01\xff\xfd\x22"

REAL_27 = (
    b"@@@ Welcome to procServ (procServ Process Server 2.7.0)\r\n"
    b"@@@ Use ^X to kill the child, auto restart is ON, use ^T to toggle auto restart\r\n"
    b"@@@ procServ server PID: 4145\r\n"
    b"@@@ Server startup directory: /tmp/cap/run\r\n"
    b"@@@ Child startup directory: /tmp/cap/run\r\n"
    b'@@@ Child "MYIOC" started as: /bin/sh\r\n'
    b'@@@ Child "MYIOC" PID: 4146\r\n'
    b"@@@ procServ server started at: Sat Nov 21 09:20:43 2026\r\n"
    b'@@@ Child "MYIOC" started at: Sat Nov 21 09:20:43 2026\r\n'
    b"@@@ 0 user(s) and 0 logger(s) connected (plus you)\r\n"
    b'\xff\xfb\x01\xff\xfd"@@@ Current time: Sat Nov 21 09:20:45 2026\r\n'
    b"@@@ Child process is shutting down, a new one will be restarted shortly\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b"\r\n"
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 4146. Normal exit status = 3\r\n"
    b'@@@ Restarting child "MYIOC"\r\n'
    b"@@@    (as /bin/sh)\r\n"
    b'@@@ The PID of new child "MYIOC" is: 4148\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"hi \xff\xff\r\n"
    b"\r\n"
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 4148. Normal exit status = 3\r\n"
    b"@@@ Current time: Sat Nov 21 09:20:48 2026\r\n"
    b"@@@ Child process is shutting down, a new one will be restarted shortly\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b'@@@ Restarting child "MYIOC"\r\n'
    b"@@@    (as /bin/sh)\r\n"
    b'@@@ The PID of new child "MYIOC" is: 4179\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"hi \xff\xff\r\n"
    b"\r\n"
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 4179. The process was killed by signal 9\r\n"
    b"@@@ Current time: Sat Nov 21 09:20:49 2026\r\n"
    b"@@@ Child process is shutting down, a new one will be restarted shortly\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b'@@@ Restarting child "MYIOC"\r\n'
    b"@@@    (as /bin/sh)\r\n"
    b'@@@ The PID of new child "MYIOC" is: 4181\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"hi \xff\xff\r\n"
    b"\r\n"
    b"@@@ Toggled auto restart to OFF\r\n"
    b"\r\n"
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 4181. Normal exit status = 3\r\n"
    b"@@@ Current time: Sat Nov 21 09:20:51 2026\r\n"
    b"@@@ Child process is shutting down, auto restart is disabled\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b"\r\n"
    b"@@@ Toggled auto restart to ON\r\n"
    b'@@@ Restarting child "MYIOC"\r\n'
    b"@@@    (as /bin/sh)\r\n"
    b'@@@ The PID of new child "MYIOC" is: 4189\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
)

REAL_27_EVENTS: list[Event] = [
    ServerBanner("2.7.0"),
    ControlKeys(0x18, 0x14, "ON"),
    ServerPid(4145),
    ChildRunning(4146),
    ChildShuttingDown("restart"),
    ChildExited(4146, 3, None),
    ChildStarted(4148),
    ChildExited(4148, 3, None),
    ChildShuttingDown("restart"),
    ChildStarted(4179),
    ChildExited(4179, None, 9),
    ChildShuttingDown("restart"),
    ChildStarted(4181),
    AutoRestartMode("OFF"),
    ChildExited(4181, 3, None),
    ChildShuttingDown("disabled"),
    AutoRestartMode("ON"),
    ChildStarted(4189),
]

# Captured the same way, connected before the first child started (2.7.0).
REAL_27_SHUT_DOWN = (
    b"@@@ Welcome to procServ (procServ Process Server 2.7.0)\r\n"
    b"@@@ Use ^X to kill the child, auto restart is ON, use ^T to toggle auto restart\r\n"
    b"@@@ procServ server PID: 3892\r\n"
    b"@@@ Server startup directory: /tmp/cap/run\r\n"
    b"@@@ Child startup directory: /tmp/cap/run\r\n"
    b'@@@ Child "MYIOC" started as: /bin/sh\r\n'
    b'@@@ Child "MYIOC" is SHUT DOWN\r\n'
    b"@@@ procServ server started at: Sat Nov 21 09:20:32 2026\r\n"
    b"@@@ 0 user(s) and 0 logger(s) connected (plus you)\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b'\xff\xfb\x01\xff\xfd"@@@ Restarting child "MYIOC"\r\n'
    b"@@@    (as /bin/sh)\r\n"
    b'@@@ The PID of new child "MYIOC" is: 3893\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"hi\r\n"
)

FROM_SOURCE_28 = (
    b"@@@ Welcome to procServ (procServ Process Server 2.8.0)\r\n"
    b"@@@ Use ^X to kill the child, auto restart mode is ONESHOT, use ^T to toggle auto restart\r\n"
    b"@@@ Use ^D to logout from procServ server\r\n"
    b"@@@ procServ server PID: 548\r\n"
    b"@@@ Server startup directory: /\r\n"
    b"@@@ Child startup directory: /\r\n"
    b"@@@ Child started as: /opt/ioc/st.cmd\r\n"
    b"@@@ Child log file: -\r\n"
    b'@@@ Child "/opt/ioc/st.cmd" PID: 579\r\n'
    b"@@@ procServ server started at: Wed Jan  8 18:23:03 2025\r\n"
    b'@@@ Child "/opt/ioc/st.cmd" started at: Wed Jan  8 18:23:04 2025\r\n'
    b"@@@ 0 user(s) and 0 logger(s) connected (plus you)\r\n" + NEGOTIATION + b"epics> "
    b"\r\n@@@ Toggled auto restart mode to ON\r\n"
    b"\r\n@@@ Toggled auto restart mode to OFF\r\n"
    b"\r\n@@@ Got a kill command\r\n"
    b"@@@ Current time: Wed Jan  8 18:30:00 2025\r\n"
    b"@@@ Child process is shutting down, auto restart is disabled\r\n"
    b"@@@ ^R or ^X restarts the child, ^Q quits the server\r\n"
    b"\r\n@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 579. The process was killed by signal 9\r\n"
    b"\r\n@@@ Toggled auto restart mode to ONESHOT\r\n"
    b'@@@ Restarting child "/opt/ioc/st.cmd"\r\n'
    b'@@@ The PID of new child "/opt/ioc/st.cmd" is: 601\r\n'
    b"@@@ @@@ @@@ @@@ @@@\r\n"
    b"epics> exit\r\n"
    b"@@@ Current time: Wed Jan  8 18:31:00 2025\r\n"
    b"@@@ Child process is shutting down, oneshot mode: server will exit\r\n"
    b"\r\n@@@ @@@ @@@ @@@ @@@\r\n"
    b"@@@ Received a sigChild for process 601. Normal exit status = 0\r\n"
)

FROM_SOURCE_28_EVENTS: list[Event] = [
    ServerBanner("2.8.0"),
    ControlKeys(0x18, 0x14, "ONESHOT"),
    LogoutKey(0x04),
    ServerPid(548),
    ChildRunning(579),
    AutoRestartMode("ON"),
    AutoRestartMode("OFF"),
    ChildShuttingDown("disabled"),
    ChildExited(579, None, 9),
    AutoRestartMode("ONESHOT"),
    ChildStarted(601),
    ChildShuttingDown("oneshot"),
    ChildExited(601, 0, None),
]


def parse(*chunks: bytes) -> list[Event]:
    parser = ProcServParser()
    return [event for chunk in chunks for event in parser.receive_data(chunk)]


def decode_and_parse(*chunks: bytes) -> list[Event]:
    decoder, parser = TelnetDecoder(), ProcServParser()
    return [e for c in chunks for e in parser.receive_data(decoder.receive_data(c))]


# --- transcripts -----------------------------------------------------------------


def test_real_27_transcript() -> None:
    assert decode_and_parse(REAL_27) == REAL_27_EVENTS


def test_real_27_transcript_byte_by_byte() -> None:
    assert decode_and_parse(*(bytes([b]) for b in REAL_27)) == REAL_27_EVENTS


def test_real_27_banner_is_everything_before_the_negotiation() -> None:
    decoder, parser = TelnetDecoder(), ProcServParser()
    banner_events = []
    for byte in REAL_27:
        text = decoder.receive_data(bytes([byte]))
        if decoder.negotiation_seen:
            break
        banner_events += parser.receive_data(text)
    assert banner_events == REAL_27_EVENTS[:4]
    assert parser.buffered_bytes == 0


def test_real_27_child_shut_down_at_connect() -> None:
    assert decode_and_parse(REAL_27_SHUT_DOWN) == [
        ServerBanner("2.7.0"),
        ControlKeys(0x18, 0x14, "ON"),
        ServerPid(3892),
        ChildShutDown(),
        ChildStarted(3893),
    ]


def test_28_transcript_from_source() -> None:
    assert decode_and_parse(FROM_SOURCE_28) == FROM_SOURCE_28_EVENTS


def test_events_are_frozen() -> None:
    event = ChildExited(1, 0, None)
    with pytest.raises(AttributeError):
        event.pid = 2  # type: ignore[misc]
    assert hash(event) == hash(ChildExited(1, 0, None))


# --- single lines ------------------------------------------------------------------

LINES: list[tuple[bytes, Event | None]] = [
    (b"@@@ Welcome to procServ (procServ Process Server 2.7.0)", ServerBanner("2.7.0")),
    (
        b"@@@ Welcome to the procServ process server (procServ Process Server 2.4.0)",
        ServerBanner("2.4.0"),
    ),
    (
        b"@@@ Kill command disabled, auto restart is OFF, auto restart toggle disabled",
        ControlKeys(None, None, "OFF"),
    ),
    (
        b"@@@ Use ^X to kill the child, auto restart mode is OFF, use ^T to toggle auto restart",
        ControlKeys(0x18, 0x14, "OFF"),
    ),
    # procServ 2.7.0 -k ^K --autorestartcmd "" -x ^L (captured)
    (
        b"@@@ Use ^K to kill the child, auto restart is ON, auto restart toggle disabled",
        ControlKeys(0x0B, None, "ON"),
    ),
    (b"@@@ Use ^L to logout from procServ server", LogoutKey(0x0C)),
    # a printable key is shown as itself, "^^" as "^"
    (
        b"@@@ Use k to kill the child, auto restart mode is ON, use ^ to toggle auto restart",
        ControlKeys(ord("k"), ord("^"), "ON"),
    ),
    (b"@@@ Toggled auto restart to ON", AutoRestartMode("ON")),
    (b"@@@ Toggled auto restart mode to ONESHOT", AutoRestartMode("ONESHOT")),
    (b"@@@ Toggled auto restart to MAYBE", None),
    (b"@@@ procServ server PID: 5803", ServerPid(5803)),
    (b'@@@ Child "MY IOC:1" PID: 5834', ChildRunning(5834)),
    (b'@@@ Child "MYIOC" is SHUT DOWN', ChildShutDown()),
    (b'@@@ The PID of new child "MYIOC" is: 8320', ChildStarted(8320)),
    (
        b"@@@ Received a sigChild for process 8320. Normal exit status = 3",
        ChildExited(8320, 3, None),
    ),
    (
        b"@@@ Received a sigChild for process 8320. The process was killed by signal 9",
        ChildExited(8320, None, 9),
    ),
    (b"@@@ Received a sigChild for process 8320.", ChildExited(8320, None, None)),
    (
        b"@@@ Child process is shutting down, a new one will be restarted shortly",
        ChildShuttingDown("restart"),
    ),
    (b"@@@ Child process is shutting down, for tea", None),
    (
        b"@@@ Child process is shutting down, auto restart is disabled",
        ChildShuttingDown("disabled"),
    ),
    (b"@@@ ^R or ^X restarts the child, ^Q quits the server", None),
    (b"@@@ @@@ @@@ @@@ @@@", None),
    (b"@@@ procServ server PID: 12x", None),
    (b"@@@ procServ server PID: ", None),
    (b"@@@procServ server PID: 12", None),
    (b"epics> @@@ Toggled auto restart to OFF", None),
    (b" @@@ procServ server PID: 12", None),
    (b"", None),
]


@pytest.mark.parametrize(("line", "event"), LINES, ids=[repr(line)[:50] for line, _ in LINES])
def test_line(line: bytes, event: Event | None) -> None:
    assert parse_line(line) == event
    assert parse(line + b"\r\n") == ([] if event is None else [event])


def test_line_endings() -> None:
    line = b"@@@ procServ server PID: 7"
    for ending in (b"\n", b"\r\n", b"\r\r\n"):
        assert parse(line + ending) == [ServerPid(7)]
    assert parse(line) == []  # not finished until its newline


def test_partial_line_is_carried() -> None:
    parser = ProcServParser()
    assert parser.receive_data(b"@@@ procServ server ") == []
    assert parser.buffered_bytes == len(b"@@@ procServ server ")
    assert parser.receive_data(b"PID: 7\r") == []
    assert parser.receive_data(b"\nhi") == [ServerPid(7)]


def test_console_output_is_not_buffered() -> None:
    parser = ProcServParser()
    assert parser.receive_data(b"epics> dbpr foo") == []
    assert parser.buffered_bytes == 0
    assert parser.receive_data(b"\r\n@@@ procServ server PID: 7\r\n@@") == [ServerPid(7)]
    assert parser.buffered_bytes == 2
    assert parser.receive_data(b"x") == []
    assert parser.buffered_bytes == 0


# --- long lines ------------------------------------------------------------------


def running_line(length: int) -> bytes:
    """A ChildRunning line (pid 7) of exactly ``length`` bytes."""
    line = b'@@@ Child "" PID: 7'
    return line[:11] + b"n" * (length - len(line)) + line[11:]


@pytest.mark.parametrize("crlf", [False, True])
def test_line_of_max_length_is_parsed(crlf: bool) -> None:
    line = running_line(MAX_LINE - 1) + b"\r" if crlf else running_line(MAX_LINE)
    assert parse(line + b"\n") == [ChildRunning(7)]
    assert parse(*(bytes([b]) for b in line + b"\n")) == [ChildRunning(7)]


@pytest.mark.parametrize("crlf", [False, True])
def test_longer_line_is_dropped_however_split(crlf: bool) -> None:
    line = running_line(MAX_LINE) + b"\r" if crlf else running_line(MAX_LINE + 1)
    stream = line + b"\n@@@ procServ server PID: 5\n"
    assert parse(stream) == [ServerPid(5)]
    assert parse(*(bytes([b]) for b in stream)) == [ServerPid(5)]


def test_flood_without_newline_is_bounded() -> None:
    parser = ProcServParser()
    assert parser.receive_data(b"@@@ ") == []
    for _ in range(1000):
        assert parser.receive_data(b"x" * 1000) == []
        assert parser.buffered_bytes <= MAX_LINE
    assert parser.receive_data(b"\n@@@ procServ server PID: 5\n") == [ServerPid(5)]


# --- properties ------------------------------------------------------------------

_prefixes = st.sampled_from(
    [
        b"@@@ ",
        b"@@@ Toggled auto restart to ",
        b"@@@ Toggled auto restart mode to ",
        b"@@@ procServ server PID: ",
        b'@@@ Child "X" PID: ',
        b"@@@ Received a sigChild for process 1.",
        b"@@@ Received a sigChild for process ",
        b"@@@ Child process is shutting down, ",
        b"@@@ Welcome to procServ (",
        b"epics> ",
        b"",
    ]
)
_tails = st.sampled_from([b"ON", b"OFF", b"12", b" Normal exit status = 3", b"x)", b""])
_line = st.tuples(_prefixes, st.one_of(_tails, st.binary(max_size=10))).map(b"".join)
_endings = st.sampled_from([b"\n", b"\r\n", b"\r\r\n", b"\r", b""])
_long = st.integers(MAX_LINE - 2, MAX_LINE + 2).map(running_line)
_stream = st.lists(st.tuples(st.one_of(_line, _long), _endings).map(b"".join)).map(b"".join)


@given(st.data())
def test_real_transcript_any_chunking(data: st.DataObject) -> None:
    assert decode_and_parse(*data.draw(chunked(REAL_27))) == REAL_27_EVENTS


@given(st.data(), _stream)
def test_any_chunking_same_events(data: st.DataObject, stream: bytes) -> None:
    assert parse(*data.draw(chunked(stream))) == parse(stream)


@given(st.data(), st.binary(max_size=300))
def test_never_raises_and_chunking_is_invisible(data: st.DataObject, stream: bytes) -> None:
    assert parse(*data.draw(chunked(stream))) == parse(stream)
