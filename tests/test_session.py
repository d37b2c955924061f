"""Sessions on one console: the write lock, escapes, procServ keys, replay, input paths.

Policy: a scripted peer plays procServ on a real UNIX socket in tmp_path, and
what it receives is what procServ would get; every wait is bounded. Real
procServ, OpenSSH and asyncssh clients are exercised in tests/integration.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import trio
import trio.lowlevel

from consrv.access import Role
from consrv.config import ConsoleConfig
from consrv.console import Console
from consrv.consolelog import ConsoleLog
from consrv.ratelimit import MessageBudgets
from consrv.session import Session
from consrv.upstream import UnixTarget
from tests.fakes import MemorySink, Peer, running, unix_server, wait_for

BANNER = b'@@@ Child "T" PID: 4242\r\n\xff\xfb\x01\xff\xfd\x22'
ESC = b"\x05c"  # ^Ec


def settings(**changes: Any) -> ConsoleConfig:
    base = ConsoleConfig(
        name="t-ioc",
        socket=Path("/unused"),
        tcp=None,
        rw=(),
        ro=(),
        scrollback=4096,
        viewer_buffer=1 << 20,
        timestamps=False,
    )
    return dataclasses.replace(base, **changes)


@dataclass
class Bench:
    console: Console
    peer: Peer
    nursery: trio.Nursery
    sessions: list[tuple[Session, MemorySink]]

    def join(
        self,
        user: str,
        role: Role = Role.RW,
        *,
        pty: bool = True,
        write: bool = True,
        **changes: Any,
    ) -> tuple[Session, MemorySink]:
        sink = MemorySink()
        session = Session(
            self.console, sink, user=user, role=role, settings=settings(**changes), pty=pty
        )
        session.attach(write=write)
        self.nursery.start_soon(session.run)
        self.sessions.append((session, sink))
        return session, sink

    async def received(self, size: int) -> bytes:
        return await self.peer.receive_until(size)

    async def nothing_more(self, size: int) -> bytes:
        """Wait a little: anything past `size` bytes would be a leak."""
        with trio.move_on_after(0.3):
            await self.peer.receive_until(size + 1)
        return bytes(self.peer.received)


@asynccontextmanager
async def bench(
    tmp_path: Path, *, log: bool = False, write: Literal["exclusive", "shared"] = "exclusive"
) -> AsyncIterator[Bench]:
    path = tmp_path / "ctl"
    console_log = ConsoleLog(tmp_path / "t-ioc.log") if log else None
    console = Console(
        "t-ioc",
        UnixTarget(path),
        scrollback=4096,
        log=console_log,
        write=write,
    )
    async with unix_server(path) as server, running(console) as nursery:
        peer = await server.next_peer()
        await peer.send(BANNER)
        await wait_for(lambda: console.up and console.child_pid == 4242)
        yield Bench(console, peer, nursery, [])
    if console_log is not None:
        console_log.close()


# -- one writer ------------------------------------------------------------------


async def test_first_writer_writes_and_a_later_read_write_user_only_watches(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        bob, bob_sink = b.join("bob")
        assert b"attached to t-ioc: you write" in alice_sink.notices
        assert b"read-write, watching (^Eca to write); alice writes" in bob_sink.notices
        bob.feed(b"BOB\r")
        alice.feed(b"ALICE\r")
        assert await b.nothing_more(6) == b"ALICE\r"
        assert b"watching: your input is not sent (^Eca to write)" in bob_sink.notices


async def test_ask_queues_and_write_passes_only_to_those_who_asked(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        bob, bob_sink = b.join("bob")
        carol, carol_sink = b.join("carol")  # never asks
        bob.feed(ESC + b"a")
        assert b"alice writes; you are number 1 in the write queue" in bob_sink.notices
        assert b"bob asks for write" in alice_sink.notices
        alice.feed(ESC + b"s")
        assert b"you stopped writing; bob now writes" in alice_sink.notices
        assert b"alice stopped writing; you now write" in bob_sink.notices
        assert b"alice stopped writing; bob now writes" in carol_sink.notices
        bob.feed(ESC + b".")  # bob leaves: nobody asked, so nobody writes
        await wait_for(lambda: b"bob left; nobody writes" in carol_sink.notices)
        assert b.console.lock.writer is None
        carol.feed(b"CAROL\r")
        alice.feed(b"ALICE\r")
        assert await b.nothing_more(0) == b""


async def test_force_makes_the_old_writer_watch_and_tells_both(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, alice_sink = b.join("alice")
        bob, bob_sink = b.join("bob")
        bob.feed(ESC + b"f")
        assert b"bob forced write; you now watch" in alice_sink.notices
        assert b"you now write (forced from alice)" in bob_sink.notices
        alice.feed(b"A\r")
        bob.feed(b"B\r")
        assert await b.nothing_more(2) == b"B\r"
    assert "write: bob forced write from alice" in (tmp_path / "t-ioc.log").read_text()


async def test_idle_writer_releases_the_lock_and_users_are_told(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        _, alice_sink = b.join("alice", writer_idle_timeout=0.3)
        bob, bob_sink = b.join("bob", writer_idle_timeout=0.3)
        bob.feed(ESC + b"a")
        await wait_for(lambda: b"write released; you now write" in bob_sink.notices, timeout=3)
        assert b"you idle for" in alice_sink.notices
        assert b.console.lock.writer is bob.viewer


async def test_read_only_user_cannot_ask_or_force(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        b.join("alice")
        olga, olga_sink = b.join("olga", Role.RO)
        olga.feed(ESC + b"a" + ESC + b"f" + b"\x18\x14x\r" + ESC + b"\\030")
        assert olga_sink.notices.count(b"read-only: you cannot write to this console") == 2
        assert await b.nothing_more(0) == b""
        assert b.console.lock.writer is not olga.viewer


async def test_shared_mode_lets_every_read_write_user_type(tmp_path: Path) -> None:
    async with bench(tmp_path, write="shared") as b:
        alice, _ = b.join("alice")
        bob, bob_sink = b.join("bob")
        assert b"shared: everyone may write" in bob_sink.notices
        alice.feed(b"A\r")
        await b.received(2)
        bob.feed(b"B\r")
        assert await b.nothing_more(4) == b"A\rB\r"


async def test_attach_read_only_on_request_does_not_take_a_free_lock(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        bob, _ = b.join("bob", write=False)
        assert b.console.lock.writer is None
        bob.feed(ESC + b"a")
        assert b.console.lock.writer is bob.viewer


# -- procServ's keys --------------------------------------------------------------


async def test_kill_key_is_confirmed_and_sent_only_on_yes(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, sink = b.join("alice")
        alice.feed(b"ab\x18")
        assert b"Send ^X (kill/restart) to IOC t-ioc? [y/N]" in sink.notices
        alice.feed(b"n")
        assert b"not sent" in sink.notices
        alice.feed(b"\x18")
        alice.feed(b"y")
        assert await b.nothing_more(3) == b"ab\x18"
    log = (tmp_path / "t-ioc.log").read_text()
    assert log.count("alice sent ^X (kill/restart)") == 1


async def test_blocked_keys_never_reach_procserv(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, sink = b.join("alice", procserv_keys="block")
        alice.feed(b"\x18y\x14" + ESC + b"\\030" + b"ok\r")
        assert await b.nothing_more(4) == b"yok\r"
        assert sink.notices.count(b"is not sent: blocked on t-ioc") == 3
    assert "alice sent ^X: blocked" in (tmp_path / "t-ioc.log").read_text()


async def test_pass_policy_sends_keys_and_logs_them(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, _ = b.join("alice", procserv_keys="pass")
        alice.feed(b"\x14x")
        assert await b.nothing_more(2) == b"\x14x"
    assert "alice sent ^T (toggle auto-restart)" in (tmp_path / "t-ioc.log").read_text()


async def test_confirm_without_a_terminal_blocks(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, sink = b.join("alice", pty=False)
        alice.feed(b"\x18y\n")
        assert await b.nothing_more(2) == b"y\r"
        assert b"^X is not sent: blocked on t-ioc" in sink.notices


async def test_restart_keys_are_guarded_only_while_the_child_is_down(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, sink = b.join("alice")
        alice.feed(b"\x12")  # ^R while the child runs: readline's reverse search
        await b.received(1)
        await b.peer.send(b"@@@ Child process is shutting down, a new one will be restarted\r\n")
        await b.peer.send(b"@@@ Received a sigChild for process 4242. Normal exit status = 0\r\n")
        await wait_for(lambda: b.console.child_running is False)
        alice.feed(b"\x12")
        assert b"Send ^R (restart) to IOC t-ioc? [y/N]" in sink.notices
        alice.feed(b"y")
        assert await b.nothing_more(2) == b"\x12\x12"


async def test_typeahead_never_answers_a_question(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, sink = b.join("alice")
        alice.feed(b"text\x18yes more")  # one paste: the question was not shown yet
        assert b"Send ^X (kill/restart) to IOC t-ioc? [y/N]" in sink.notices
        assert b"8 byte(s) typed before the question was shown: discarded" in sink.notices
        alice.feed(b"yes\r")  # a later chunk that is more than one key: a paste, too
        assert sink.notices.count(b"typed before the question was shown") == 1  # not this one
        assert b"4 byte(s) came together (a paste or typeahead), not one key" in sink.notices
        alice.feed(b"n")
        assert b"not sent" in sink.notices
        alice.feed(b"\x05c!restart\ry")  # no IOC here, so no question: plain data after
        assert await b.nothing_more(5) == b"text" + b"y"
    assert "alice sent ^X" not in (tmp_path / "t-ioc.log").read_text()


class FakeIoc:
    """An IOC unit that records what it was asked to do."""

    def __init__(self, may_operate: bool = True) -> None:
        self.may_operate = may_operate
        self.done: list[str] = []

    async def act(self, verb: str) -> str:
        self.done.append(verb)
        return verb

    def describe(self) -> Any:
        raise AssertionError("not used")


async def test_an_ioc_action_is_not_confirmed_by_typeahead(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        sink = MemorySink()
        ioc = FakeIoc()
        alice = Session(b.console, sink, user="alice", role=Role.RW, settings=settings(),
                        pty=True, ioc=ioc)  # fmt: skip
        alice.attach()
        b.nursery.start_soon(alice.run)
        alice.feed(ESC + b"!restart\ry")
        assert b"Restart IOC t-ioc? [y/N]" in sink.notices
        assert b"1 byte(s) typed before the question was shown: discarded" in sink.notices
        await trio.sleep(0.05)
        assert ioc.done == []
        alice.feed(b"y")
        await wait_for(lambda: ioc.done == ["restart"])


async def test_the_keys_procserv_announces_are_the_ones_guarded(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        await b.peer.send(
            b"@@@ Use ^K to kill the child, auto restart is ON, auto restart toggle disabled\r\n"
            b"@@@ Use ^L to logout from procServ server\r\n"
        )
        await wait_for(lambda: b.console.keys.logout == 0x0C)
        alice, sink = b.join("alice", procserv_keys="block")
        alice.feed(b"\x0b\x0c\x14\x18ok\r")  # ^K ^L guarded; ^T ^X mean nothing here
        assert await b.nothing_more(5) == b"\x14\x18ok\r"
        assert b"^K is not sent" in sink.notices
        assert b"^L is not sent" in sink.notices
        alice.feed(ESC + b"?")
        assert b"^K ^L  procServ keys: blocked" in sink.notices


async def test_a_lone_prefix_key_that_is_a_procserv_key_is_guarded_when_released(
    tmp_path: Path,
) -> None:
    async with bench(tmp_path) as b:
        await b.peer.send(
            b"@@@ Use ^E to kill the child, auto restart is ON, use ^T to toggle auto restart\r\n"
        )
        await wait_for(lambda: b.console.keys.kill == 0x05)
        alice, sink = b.join("alice", procserv_keys="block")
        alice.feed(b"\x05")  # held as the escape's first key, released after a pause
        await wait_for(lambda: b"^E is not sent" in sink.notices)
        alice.feed(b"\x05x")  # not the escape after all
        alice.feed(b"ok\r")
        assert await b.nothing_more(4) == b"xok\r"
        assert sink.notices.count(b"^E is not sent") == 2


async def test_notes_and_broadcasts_are_limited_per_user_and_cut(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        budgets = MessageBudgets(burst=3, per_minute=1, max_length=10)
        sinks = []
        for _ in range(2):  # two sessions of one user share one budget
            sink = MemorySink()
            olga = Session(b.console, sink, user="olga", role=Role.RO, settings=settings(),
                           pty=True, messages=budgets)  # fmt: skip
            olga.attach()
            b.nursery.start_soon(olga.run)
            olga.feed(ESC + b"nfirst\r" + ESC + b"b" + b"x" * 30 + b"\r")
            sinks.append(sink)
        assert b"cut to 10 characters" in sinks[0].notices
        assert b"olga: xxxxxxxxxx]" in sinks[0].notices  # the broadcast, cut
        assert b"not sent: too many messages; try again in 60 s" in sinks[1].notices
    log = (tmp_path / "t-ioc.log").read_text()
    assert log.count("note from olga") + log.count("broadcast from olga") == 3


async def test_write_lock_changes_are_limited_per_user(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        b.join("alice")
        bob, sink = b.join("bob")
        bob.feed((ESC + b"a" + ESC + b"s") * 50)  # queued, left the queue: 50 times
        assert b"not done: too many write-lock changes; try again in 10 s" in sink.notices
        bob.feed(ESC + b"s")  # leaving the queue records nothing: always allowed
        assert b"left the write queue; watching" in sink.notices
    log = (tmp_path / "t-ioc.log").read_text()
    assert log.count("write: bob queued") == 10


class StalledSink(MemorySink):
    """A sink whose reader may stop reading consrv's messages too."""

    def write_notice(self, data: bytes) -> None:
        super().write_notice(data)
        if self.stalled:
            self.unread += len(data)


async def test_messages_to_a_stalled_viewer_share_its_bound(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        sink = StalledSink()
        olga = Session(b.console, sink, user="olga", role=Role.RO,
                       settings=settings(viewer_buffer=1024), pty=True)  # fmt: skip
        olga.attach()
        b.nursery.start_soon(olga.run)
        sink.stalled = True
        alice = Session(b.console, MemorySink(), user="alice", role=Role.RW, settings=settings(),
                        pty=True, messages=MessageBudgets(burst=1000))  # fmt: skip
        alice.attach()
        b.nursery.start_soon(alice.run)
        for _ in range(200):
            alice.feed(ESC + b"b" + b"x" * 100 + b"\r")
        assert sink.unread < 1024 + 200  # the bound, and the one message that crossed it
        sink.take()
        olga.drained()
        assert re.search(rb"\[consrv: 1[89][0-9] consrv message\(s\) dropped\]", sink.notices)


# -- escapes ---------------------------------------------------------------------------


async def test_replay_works_without_a_log(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        await b.peer.send(b"".join(b"line %d\r\n" % i for i in range(100)))
        await wait_for(lambda: b"line 99" in b.console.scrollback.data())
        olga, sink = b.join("olga", Role.RO)
        olga.feed(ESC + b"r")
        assert b"line 80\r\n" in sink.data
        assert b"line 79\r\n" not in sink.data
        olga.feed(ESC + b"p")
        assert b"line 40\r\n" in sink.data


async def test_replay_on_attach_from_config(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        await b.peer.send(b"one\r\ntwo\r\nthree\r\n")
        await wait_for(lambda: b"three" in b.console.scrollback.data())
        _, sink = b.join("olga", Role.RO, replay=2)
        assert b"two\r\nthree\r\n" in sink.data
        assert b"one" not in sink.data


async def test_help_lists_only_what_the_role_allows(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        olga, olga_sink = b.join("olga", Role.RO)
        alice.feed(ESC + b"?")
        olga.feed(ESC + b"?")
        assert b"^Ecf  force write" in alice_sink.notices
        assert b"^Ec.  detach" in olga_sink.notices
        assert b"force" not in olga_sink.notices
        assert b"octal" not in olga_sink.notices


async def test_who_shows_writer_watchers_and_queue(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, alice_sink = b.join("alice")
        bob, _ = b.join("bob")
        b.join("olga", Role.RO)
        bob.feed(ESC + b"a")
        alice.feed(ESC + b"w")
        text = bytes(alice_sink.notices).decode()
        rows = [
            line.split()[:2]
            for line in text.splitlines()
            if line.split()[:1] in (["alice"], ["bob"], ["olga"])
        ]
        assert rows == [["alice", "writer"], ["bob", "queued"], ["olga", "read-only"]]


async def test_broadcast_reaches_everyone_and_note_goes_to_the_log(tmp_path: Path) -> None:
    async with bench(tmp_path, log=True) as b:
        alice, alice_sink = b.join("alice")
        _, olga_sink = b.join("olga", Role.RO)
        alice.feed(ESC + b"bhello all\r")
        assert b"broadcast: hello all" in alice_sink.notices  # the prompt and the echo
        assert b"[consrv: alice: hello all]" in olga_sink.notices
        alice.feed(ESC + b"nrebooting crate\x7f\x7f\x7f\x7f\x7fIOC\r")
        assert b"note written to the log" in alice_sink.notices
        assert await b.nothing_more(0) == b""
    log = (tmp_path / "t-ioc.log").read_text()
    assert "note from alice: rebooting IOC" in log


async def test_detach_escape_ends_the_session(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, sink = b.join("alice")
        alice.feed(b"ls\r" + ESC + b".after\r")
        await wait_for(lambda: alice.viewer not in b.console.viewers)
        assert b"detached from t-ioc" in sink.notices
        assert await b.nothing_more(3) == b"ls\r"


async def test_lone_ctrl_e_passes_through_after_a_pause(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, _ = b.join("alice")
        alice.feed(b"\x05x\x05")
        await b.received(2)
        assert await b.received(3) == b"\x05x\x05"  # flushed by the session's timer


async def test_octal_escape_sends_one_byte(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, _ = b.join("alice")
        alice.feed(ESC + b"\\101" + b"\r")
        assert await b.nothing_more(2) == b"A\r"


async def test_unknown_escape_is_swallowed_with_a_hint(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        alice, sink = b.join("alice")
        alice.feed(ESC + b"zq")
        assert b"unknown escape ^Ecz; ^Ec? for help" in sink.notices
        assert await b.nothing_more(1) == b"q"


# -- the input path (from the core issue) -------------------------------------------


async def test_read_only_input_never_reaches_upstream(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        olga, olga_sink = b.join("olga", Role.RO)
        alice, _ = b.join("alice")
        olga.feed(b"\x18\x14evil\r")
        alice.feed(b"dbl\n\xff")
        olga.feed(b"more evil\r\n")
        assert await b.nothing_more(6) == b"dbl\r\xff\xff"
        assert b"read-only: your input is not sent" in olga_sink.notices


async def test_large_paste_flows_with_back_pressure(tmp_path: Path) -> None:
    paste = bytes(range(6, 255)).replace(b"\r", b"").replace(b"\n", b"") * 4000  # ~1 MB
    paste = paste.replace(b"\x14", b"").replace(b"\x18", b"")
    async with bench(tmp_path) as b:
        session, sink = b.join("alice")
        paused_seen = False
        for i in range(0, len(paste), 32768):
            session.feed(paste[i : i + 32768])
            paused_seen |= sink.paused_reading
            while sink.paused_reading:  # what asyncssh does: stop calling data_received
                await b.peer.receive_until(len(b.peer.received) + 1)
                await trio.lowlevel.checkpoint()
        received = await b.received(len(paste))
    assert paused_seen
    assert received == paste


async def test_a_keystroke_goes_out_from_feed_itself(tmp_path: Path) -> None:
    async with bench(tmp_path) as b:
        session, _ = b.join("alice")
        await wait_for(lambda: b.console.may_send_now())
        session.feed(b"k")  # no checkpoint between: the pump task cannot have run
        assert b.console.stats.bytes_in == 1
        assert await b.nothing_more(1) == b"k"


async def test_keystrokes_into_a_full_socket_arrive_whole_and_in_order(tmp_path: Path) -> None:
    # Each feed is small enough for the direct path; procServ reads nothing until
    # its socket is full, so later keystrokes take the queue behind a partial send.
    keys = [f"line {i:05d} \xff\r".encode("latin-1") for i in range(40_000)]
    async with bench(tmp_path) as b:
        session, _ = b.join("alice")
        for key in keys:
            session.feed(key)
        assert session._unsent is not None or session._inbox  # the socket did fill
        expected = b"".join(keys).replace(b"\xff", b"\xff\xff")
        while len(b.peer.received) < len(expected):  # read, as asyncssh would resume us
            await b.peer.receive_until(len(b.peer.received) + 1)
            await trio.lowlevel.checkpoint()
        assert await b.nothing_more(len(expected)) == expected


async def test_input_while_down_is_discarded_with_a_notice(tmp_path: Path) -> None:
    console = Console("t-ioc", UnixTarget(tmp_path / "missing"), scrollback=1024)
    sink = MemorySink()
    async with running(console) as nursery:
        session = Session(console, sink, user="w", role=Role.RW, settings=settings(), pty=False)
        session.attach()
        nursery.start_soon(session.run)
        session.feed(b"hello\n")
        await wait_for(lambda: b"input discarded" in sink.notices)
        session.eof()
    assert b"[consrv: t-ioc is down; waiting for it]\n" in sink.notices
