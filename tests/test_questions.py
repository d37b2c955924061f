"""Questions that stop being true are withdrawn (consrv/questions.py, through Session).

Policy: as tests/test_session.py: real Consoles on scripted procServ peers over UNIX
sockets, a hand-written sink and IOC unit. With a real ``ioc@`` unit under a systemd
user manager and the OpenSSH client on a pty:
tests/integration/test_lifecycle.py::test_the_start_question_is_withdrawn_when_the_ioc_is_started_elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consrv.access import Role
from consrv.console import Console
from consrv.session import Session
from consrv.upstream import UnixTarget
from tests.fakes import MemorySink, running, unix_server, wait_for
from tests.test_session import BANNER, ESC, bench, settings


@dataclass
class Described:
    state: str


class StoppedUnit:
    """An IOC unit whose last health poll said "stopped" (the poll is an hour away)."""

    def __init__(self, may_operate: bool = True) -> None:
        self.may_operate = may_operate
        self.done: list[str] = []

    async def act(self, verb: str) -> str:
        self.done.append(verb)
        return verb

    def describe(self) -> Any:  # only its state is read
        return Described("stopped")


async def test_the_start_question_goes_when_the_ioc_comes_up_by_other_means(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ctl"
    console = Console("t-ioc", UnixTarget(path), scrollback=4096)
    unit, sink = StoppedUnit(), MemorySink()
    async with running(console) as nursery:
        session = Session(
            console, sink, user="alice", role=Role.RW, settings=settings(), pty=True, ioc=unit
        )
        session.attach()
        nursery.start_soon(session.run)
        assert b"IOC t-ioc is stopped. Start it? [y/N] " in sink.notices
        async with unix_server(path) as server:  # someone else started it
            peer = await server.next_peer()
            await peer.send(BANNER)
            await wait_for(lambda: b"question withdrawn" in sink.notices)
            assert b"[consrv: question withdrawn: IOC t-ioc was started meanwhile]" in sink.notices
            session.feed(b"dbgf x\r")  # goes to the IOC, as if no question had been asked
            assert await peer.receive_until(len(b"dbgf x\r")) == b"dbgf x\r"
            assert unit.done == []
            assert b"byte(s)" not in sink.notices
        nursery.cancel_scope.cancel()


async def test_an_answer_to_a_question_that_went_stale_is_not_taken(tmp_path: Path) -> None:
    """The answer arrives before the recheck saw the change: withdrawn, not obeyed."""
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        bob, _ = b.join("bob")
        alice.feed(b"\x18")
        assert b"Send ^X (kill/restart) to IOC t-ioc? [y/N]" in alice_sink.notices
        bob.feed(ESC + b"f")  # and at once, before any recheck:
        alice.feed(b"y")
        assert b"question withdrawn: you no longer write to t-ioc" in alice_sink.notices
        assert b"the 1 byte(s) typed as its answer were not sent" in alice_sink.notices
        assert await b.nothing_more(0) == b""


async def test_the_procserv_key_question_goes_when_the_writer_is_forced_off(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        bob, _ = b.join("bob")
        alice.feed(b"\x18")
        assert b"Send ^X (kill/restart) to IOC t-ioc? [y/N]" in alice_sink.notices
        bob.feed(ESC + b"f")
        await wait_for(lambda: b"question withdrawn" in alice_sink.notices)
        assert b"question withdrawn: you no longer write to t-ioc" in alice_sink.notices
        alice.feed(b"y")  # now a watcher's keystroke: not sent, not an answer
        assert await b.nothing_more(0) == b""
