"""consrv end to end: real procServ, a real EPICS IOC, the real OpenSSH client and asyncssh.

Input is checked on the procServ side by a witness: a plain connection to
procServ's socket that sees everything the IOC echoes or prints.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import asyncssh
import pytest
import trio
import trio_asyncio

from consrv.demo import ProcServ
from consrv.upstream import path_identity
from tests.integration.conftest import IOC, World
from tests.sshclients import PtySSH, scripted_ssh, ssh_argv
from tests.waits import deadline
from tests.witness import Witness

pytestmark = pytest.mark.integration

IAC = b"\xff"


async def test_one_writer_a_queued_watcher_and_an_observer_share_one_console(
    world: World, witness: Witness
) -> None:
    alice = await PtySSH(ssh_argv(world.port, world.alice.private, "console", IOC)).start()
    await alice.expect(rb"attached to e2e-ioc: you write")
    olga = await PtySSH(ssh_argv(world.port, world.olga.private, "observer", IOC)).start()
    try:
        async with (
            trio_asyncio.open_loop(),
            scripted_ssh(world.port, world.bob.private, "console", IOC) as bob,
        ):
            await olga.expect(rb"attached to e2e-ioc: read-only; alice writes")
            await bob.expect(rb"read-write, watching \(\^Eca to write\); alice writes", stderr=True)

            olga.output.clear()
            await olga.send(b"\x18\x14OLGA_MARK\r")  # ^X, ^T and a command: none may arrive
            await alice.send(b"dbl\r")
            bob.send(b"BOB_EARLY\n")  # bob only watches: not sent
            for client_expect in (alice.expect, olga.expect, bob.expect):
                await client_expect(rb"e2e-ioc:counter")
            await olga.expect(rb"read-only: your input is not sent")
            await bob.expect(rb"watching: your input is not sent", stderr=True)
            bob.send(b"\x05ca")  # ^Eca: ask for write
            await alice.expect(rb"bob asks for write")
            await alice.send(b"ALICE_MARK\r\x05c.")  # a last line, then ^Ec. (detach)
            await alice.expect(rb"detached from e2e-ioc")
            await bob.expect(rb"alice left; you now write", stderr=True)
            await olga.expect(rb"alice left; bob now writes")
            bob.send(b"BOB_MARK\n")
            await witness.expect(rb"BOB_MARK")
            for client_expect in (olga.expect, bob.expect):
                await client_expect(rb"ALICE_MARK")
                await client_expect(rb"BOB_MARK")
            outputs = [bytes(alice.output), bytes(olga.output), bytes(bob.stdout)]
    finally:
        await alice.aclose()
        await olga.aclose()
    seen = witness.read()
    witness.close()
    assert b"OLGA_MARK" not in seen
    assert b"BOB_EARLY" not in seen
    assert b"@@@ Child process is shutting down" not in seen  # ^X never reached procServ
    assert b"Toggled auto restart" not in seen  # nor ^T
    assert b"BOB_MARK\r\n" in seen  # a lone \n from a script is sent as \r (one line end)
    for output in outputs:
        assert IAC not in output
    log = world.log.read_bytes()
    assert b"e2e-ioc:counter" in log
    assert b"ALICE_MARK" in log
    assert b"OLGA_MARK" not in log
    assert IAC not in log
    assert re.search(rb"attach olga ro", log)
    assert re.search(rb"write: bob queued \(#1\) behind alice", log)
    assert re.search(rb"write: alice left; bob writes", log)


async def test_ioc_restart_is_seen_live_with_its_boot_output(world: World) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "console", IOC, pty=True) as alice,
    ):
        await alice.expect(rb"attached to e2e-ioc", stderr=True)
        world.procserv.kill()  # SIGKILL: the socket file stays behind, stale
        await alice.expect(rb"\[consrv: e2e-ioc down\]", stderr=True)
        await trio.sleep(1.5)  # let consrv's backoff grow
        alice.stdout.clear()
        restarted = ProcServ(IOC, world.root)
        old = path_identity(world.procserv.socket)
        restarted.start()
        try:
            what = f"the restarted procServ to bind a new socket at {world.procserv.socket}"
            with deadline(10, what):
                while path_identity(world.procserv.socket) in (old, None):
                    await trio.sleep(0.005)
            appeared = time.monotonic()
            await alice.expect(rb"\[consrv: e2e-ioc up\]", stderr=True)
            assert time.monotonic() - appeared < 1.0
            await alice.expect(rb"iocRun: All initialization complete", timeout=20)
        finally:
            restarted.stop()


async def test_unknown_console_key_and_login_are_refused(world: World) -> None:
    async def ssh(key: Path, login: str, *command: str) -> tuple[int, str]:
        argv = ssh_argv(world.port, key, login, *command, tty=False)
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
        return result.returncode, result.stderr.decode()

    status, err = await ssh(world.alice.private, "console", "e2e-iox")
    assert status == 1
    assert err == "consrv: unknown console 'e2e-iox'; did you mean 'e2e-ioc'?\n"
    status, err = await ssh(world.alice.private, "console", "../../etc/passwd")
    assert status == 1
    assert err.startswith("consrv: invalid console name")
    assert err.count("\n") == 1
    status, err = await ssh(world.stranger.private, "console", IOC)
    assert status == 255
    assert "Permission denied (publickey)" in err
    status, err = await ssh(world.alice.private, "root", IOC)
    assert status == 255
    assert "Permission denied (publickey)" in err
    status, err = await ssh(world.alice.private, "console", "list")
    assert (status, err) == (0, "")


async def test_binary_input_and_window_changes_break_nothing(world: World) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "console", IOC, pty=True) as alice,
    ):
        await alice.expect(rb"attached to e2e-ioc", stderr=True)
        alice.chan.change_terminal_size(132, 50)
        alice.send(b"\xff\xfe\x80\xc3(garbage\x00\r")
        await alice.expect(rb"\xff\xfe\x80\xc3\(garbage")  # the IOC got the bytes, 0xFF intact
        alice.chan.change_terminal_size(40, 10)
        alice.send(b"dbpr e2e-ioc:name\r")
        await alice.expect(rb"NAME: e2e-ioc:name")


class _PacketLog(logging.Handler):
    """The packet types an asyncssh client logs as received (debug level 3)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.received: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if m := re.search(r"Received (MSG_\w+)", record.getMessage()):
            self.received.append(m[1])


async def test_each_console_write_is_one_ssh_packet(world: World) -> None:
    """No empty SSH_MSG_IGNORE before each packet (asyncssh's CBC countermeasure)."""
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "console", IOC, pty=True) as alice,
    ):
        await alice.expect(rb"attached to e2e-ioc", stderr=True)
        packets, asyncssh_log = _PacketLog(), logging.getLogger("asyncssh")
        level = asyncssh_log.level
        asyncssh_log.addHandler(packets)
        asyncssh_log.setLevel(logging.DEBUG)
        asyncssh.set_debug_level(3)
        try:
            alice.send(b"dbpr e2e-ioc:name\r")
            await alice.expect(rb"NAME: e2e-ioc:name")
        finally:
            asyncssh.set_debug_level(1)
            asyncssh_log.setLevel(level)
            asyncssh_log.removeHandler(packets)
    assert packets.received.count("MSG_CHANNEL_DATA") >= 1, packets.received
    assert "MSG_IGNORE" not in packets.received, packets.received


async def test_a_client_offering_only_cbc_is_refused(world: World) -> None:
    connect = trio_asyncio.aio_as_trio(asyncssh.connect)
    async with trio_asyncio.open_loop():
        with pytest.raises(asyncssh.KeyExchangeFailed):
            await connect(
                "127.0.0.1", world.port, username="console", known_hosts=None,
                client_keys=[str(world.alice.private)], agent_path=None,
                encryption_algs=["aes128-cbc", "aes256-cbc"], connect_timeout=5,
            )  # fmt: skip


async def test_a_stalled_viewer_does_not_delay_another(tmp_path: Path) -> None:
    """A flood under procServ; one viewer stops reading; the other keeps up."""
    from tests.harness import Consrv, make_key
    from tests.integration.conftest import consrv_config

    flood = [sys.executable, "-u", "-c",
             "import time\nwhile True: print(f'tick {time.time():.6f} ' + 'x' * 200)"]  # fmt: skip
    keys = [make_key(tmp_path, n) for n in ("alice", "bob")]
    with ProcServ("flood", tmp_path, flood) as procserv:
        consrv = Consrv(consrv_config(tmp_path, keys, {"flood": procserv.socket}), tmp_path)
        consrv.start()
        try:
            async with (
                trio_asyncio.open_loop(),
                scripted_ssh(consrv.port, keys[0].private, "observer", "flood") as slow,
                scripted_ssh(consrv.port, keys[1].private, "observer", "flood") as fast,
            ):
                slow.chan.pause_reading()  # a client that stops reading
                lags = await _lags(fast, seconds=3.0)
                slow.chan.resume_reading()
                await slow.expect(rb"\[consrv: \d+ bytes dropped\]", stderr=True)
        finally:
            consrv.stop()
    assert len(lags) > 20
    assert max(lags) < 1.0, f"the reading viewer fell behind by {max(lags):.3f} s"


async def _lags(client: object, seconds: float) -> list[float]:
    """How far behind the child's clock each 'tick' line arrives, over ``seconds``."""
    from tests.sshclients import ScriptedSSH

    assert isinstance(client, ScriptedSSH)
    lags: list[float] = []
    end = time.time() + seconds
    while time.time() < end:
        await trio.sleep(0.05)
        now = time.time()
        stamps = re.findall(rb"tick (\d+\.\d+)", client.stdout[-20000:])
        if stamps:
            lags.append(now - float(stamps[-1]))
        client.stdout.clear()
    return lags


async def test_sigterm_tells_users_and_exits_promptly(world: World) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "console", IOC) as alice,
    ):
        await alice.expect(rb"attached to e2e-ioc", stderr=True)
        started = time.monotonic()
        status = await trio.to_thread.run_sync(world.consrv.stop)
        assert status == 0
        assert time.monotonic() - started < 5.0
        await alice.expect(rb"\[consrv: shutting down\]", stderr=True)
        assert await alice.wait_closed() == 255
    assert b"detach alice" in world.log.read_bytes()
    assert "INFO consrv.daemon: stopped" in world.consrv.stderr()


async def test_observer_login_with_a_read_write_key_stays_read_only(
    world: World, witness: Witness
) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "observer", IOC, pty=True) as alice_watching,
    ):
        await alice_watching.expect(rb"attached to e2e-ioc: read-only", stderr=True)
        alice_watching.send(b"\x18OBSERVER_MARK\r")
        await alice_watching.expect(rb"read-only: your input is not sent", stderr=True)
        async with scripted_ssh(world.port, world.bob.private, "console", IOC) as bob:
            bob.send(b"BOB_MARK\r")
            await witness.expect(rb"BOB_MARK")
            await alice_watching.expect(rb"BOB_MARK")
    seen = witness.read()
    witness.close()
    assert b"OBSERVER_MARK" not in seen
    assert b"shutting down" not in seen
