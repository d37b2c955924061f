"""tests/witness.py against a real procServ: what a witness types reaches the IOC.

procServ 2.7 greets a client when it gets round to accepting it; if the client has
already closed, the greeting's write fails (SIGPIPE: every client is told "@@@ Got a
sigPipe signal: Did the child close its tty?") and procServ drops the client before
reading what it sent. That is how tests/fleet/test_fleet.py::test_follow_across_hosts
lost every mark for 15 s on a busy machine (issue 22). procServ accepting late is
caused here by stopping it (SIGSTOP) for the moment the client connects, types and
closes. The last test keeps raw sends on a witness's socket out of the suite.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trio

from consrv.demo import ProcServ
from tests.witness import Witness

pytestmark = pytest.mark.integration

TESTS = Path(__file__).parent
SIGPIPE_LINE = b"@@@ Got a sigPipe signal: Did the child close its tty?"


@pytest.fixture
def cat(tmp_path: Path) -> Iterator[ProcServ]:
    """procServ running cat (it echoes what it is typed), stopped at the end."""
    procserv = ProcServ("cat", tmp_path, ["/bin/cat"])
    procserv.start()
    try:
        procserv.wait_ready()
        yield procserv
    finally:
        assert procserv.pid is not None
        os.kill(procserv.pid, signal.SIGCONT)  # if a test failed while it was stopped
        procserv.stop()


@pytest.fixture
def observer(cat: ProcServ) -> Iterator[Witness]:
    """A witness connected (and greeted) before the test acts: it sees what cat echoes."""
    with Witness(cat.socket) as witness:
        witness.wait_greeted()
        yield witness


async def test_procserv_drops_a_client_that_closed_before_it_was_greeted(
    cat: ProcServ, observer: Witness
) -> None:
    """The behaviour Witness.send guards against, pinned down: if it ever changes, this
    test says so (and the guard may go)."""
    assert cat.pid is not None
    os.kill(cat.pid, signal.SIGSTOP)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as hasty:
            hasty.connect(str(cat.socket))  # into the listen backlog: not yet accepted
            hasty.sendall(b"typed-then-closed\r")
    finally:
        os.kill(cat.pid, signal.SIGCONT)
    await observer.expect(re.escape(SIGPIPE_LINE))
    await trio.sleep(0.5)  # cat would have echoed it by now
    assert b"typed-then-closed" not in observer.read()


async def test_what_a_witness_sends_arrives_even_if_it_closes_at_once(
    cat: ProcServ, observer: Witness
) -> None:
    """procServ stopped while the witness connects: send waits for its greeting, so the
    witness may close the moment send returns."""
    assert cat.pid is not None
    returned: list[bool] = []
    os.kill(cat.pid, signal.SIGSTOP)
    try:
        with Witness(cat.socket) as hasty:

            def send_and_close() -> None:
                hasty.send(b"sent-then-closed\r")
                returned.append(True)
                hasty.close()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(trio.to_thread.run_sync, send_and_close))
                await trio.sleep(0.3)
                assert not returned  # send still waits: procServ has not accepted the witness
                os.kill(cat.pid, signal.SIGCONT)
    finally:
        os.kill(cat.pid, signal.SIGCONT)
    await observer.expect(rb"sent-then-closed\r\nsent-then-closed")  # tty echo, cat's echo


def test_a_witness_that_is_never_greeted_names_the_socket(cat: ProcServ) -> None:
    assert cat.pid is not None
    os.kill(cat.pid, signal.SIGSTOP)
    try:
        with Witness(cat.socket) as witness, pytest.raises(AssertionError) as caught:
            witness.send(b"x", timeout=0.3)
    finally:
        os.kill(cat.pid, signal.SIGCONT)
    assert f"procServ at {cat.socket} to greet a witness" in str(caught.value)


def raw_sends(source: str, filename: str) -> list[str]:
    """``file:line`` of each ``X.sock.send(...)`` / ``X.sock.sendall(...)`` (X not self):
    a witness typing past `Witness.send`."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("send", "sendall")
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "sock"
            and not (isinstance(node.value.value, ast.Name) and node.value.value.id == "self")
        ):
            lines.append(node.lineno)
    return [f"{filename}:{line}" for line in sorted(lines)]


def test_no_test_types_past_witness_send() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path not in (TESTS / "witness.py", Path(__file__)):
            name = str(path.relative_to(TESTS.parent))
            found += raw_sends(path.read_text(encoding="utf-8"), name)
    assert found == [], (
        "type through witness.send(data) (it waits until procServ has greeted the"
        " witness), not its raw socket, at:\n  " + "\n  ".join(found)
    )


def test_the_walk_finds_raw_sends_but_not_a_class_of_its_own() -> None:
    source = (
        "witness.sock.sendall(b'x')\n"
        "trigger.sock.send(b'x')\n"
        "self.sock.sendall(b'x')\n"
        "conn.sendall(b'x')\n"
        "site.witness(p).sock.sendall(b'x')\n"
    )
    assert raw_sends(source, "t.py") == ["t.py:1", "t.py:2", "t.py:5"]
