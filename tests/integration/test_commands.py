"""conserver's everyday commands over real SSH: menu, escapes, procServ keys, list/who/status/tail.

Real procServ with a real EPICS IOC, consrv as a process, the OpenSSH client on
a pty and asyncssh as a scripted client. What procServ receives is checked by a
witness connected straight to procServ's socket.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
import trio_asyncio

from consrv.demo import ProcServ
from tests.harness import Consrv, make_key, write_config
from tests.integration.conftest import IOC, World
from tests.sshclients import PtySSH, scripted_ssh, ssh_argv
from tests.waits import deadline
from tests.witness import Witness

pytestmark = pytest.mark.integration


async def ssh(world: World, login: str, *command: str, key: str = "alice") -> tuple[int, str, str]:
    private = getattr(world, key).private
    argv = ssh_argv(world.port, private, login, *command, tty=False)
    result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_menu_through_openssh_then_detach_with_the_escape(world: World) -> None:
    client = await PtySSH(ssh_argv(world.port, world.alice.private, "console")).start()
    try:
        await client.expect(rb"1\s+e2e-ioc\s+up\s+-\s+0")
        await client.expect(rb"console \(number or name, empty to quit\): ")
        await client.send(b"e2e\r")  # a unique prefix
        await client.expect(rb"attached to e2e-ioc: you write")
        await client.send(b"dbl\r")
        await client.expect(rb"e2e-ioc:counter")
        await client.send(b"\x05c?")
        await client.expect(rb"\^Ec\.  detach")
        await client.send(b"\x05c.")
        await client.expect(rb"detached from e2e-ioc")
        assert await client.wait() == 0
    finally:
        await client.aclose()


async def test_kill_key_asks_first_and_procserv_gets_it_only_on_yes(
    world: World, witness: Witness
) -> None:
    client = await PtySSH(ssh_argv(world.port, world.alice.private, "console", IOC)).start()
    try:
        await client.expect(rb"you write")
        await client.send(b"\x18")
        await client.expect(rb"Send \^X \(kill/restart\) to IOC e2e-ioc\? \[y/N\]")
        await client.send(b"n")
        await client.expect(rb"not sent")
        await client.send(b"dbl\r")
        await witness.expect(rb"e2e-ioc:counter")
        assert b"shutting down" not in witness.read()
        client.output.clear()
        await client.send(b"\x18")  # the answer only after the question is shown
        await client.expect(rb"Send \^X \(kill/restart\) to IOC e2e-ioc\? \[y/N\]")
        await client.send(b"y")
        await witness.expect(rb"@@@ Child process is shutting down")
        await client.expect(rb"@@@ Restarting child", timeout=20)
        await client.expect(rb"iocRun: All initialization complete", timeout=20)
    finally:
        await client.aclose()
    witness.close()
    log = world.log.read_text(errors="replace")
    assert log.count("alice sent ^X (kill/restart)") == 1


@pytest.mark.console(procserv_keys="block")
async def test_blocked_keys_never_reach_procserv(world: World, witness: Witness) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.alice.private, "console", IOC, pty=True) as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        alice.send(b"\x18\x14\x05c\\030")  # ^X, ^T and ^X as an octal escape
        alice.send(b"dbl\r")
        await witness.expect(rb"e2e-ioc:counter")
        await alice.expect(rb"(?s)(is not sent: blocked on e2e-ioc.*){3}", stderr=True)
    seen = witness.read()
    witness.close()
    assert b"shutting down" not in seen
    assert b"Toggled auto restart" not in seen


async def test_commands_list_who_status_tail(world: World) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(world.port, world.bob.private, "console", IOC) as bob,
    ):
        await bob.expect(rb"you write", stderr=True)
        bob.send(b"dbl\r")
        await bob.expect(rb"e2e-ioc:counter")

        status, out, err = await ssh(world, "console", "list", "--json")
        assert (status, err) == (0, "")
        (console,) = json.loads(out)["consoles"]
        assert (console["name"], console["state"], console["writer"]) == (IOC, "up", "bob")

        status, out, _ = await ssh(world, "observer", "who", IOC, key="olga")
        assert status == 0
        assert out.splitlines()[1].split()[:3] == [IOC, "bob", "writer"]

        status, out, _ = await ssh(world, "console", "status", IOC)
        assert status == 0
        assert f"console   {IOC}: up" in out
        assert "write     bob for" in out

        status, out, _ = await ssh(world, "observer", "tail", IOC, "-n", "3", key="olga")
        assert status == 0
        assert "e2e-ioc:" in out
        assert out.count("\n") <= 3

        status, _, err = await ssh(world, "console", "tail")
        assert (status, err) == (2, "consrv: usage: tail NAME [-n N] [-f] [--raw]; try: help\n")

        async with (
            scripted_ssh(world.port, world.olga.private, "observer", "follow 'e2e-*'") as follow,
            scripted_ssh(world.port, world.olga.private, "observer", f"tail {IOC} -n 1 -f") as tail,
        ):
            # Nothing says when both are attached: type the line again until both see it.
            followed = re.compile(rb"(?m)^e2e-ioc: .*NAME: e2e-ioc:name")
            with deadline(10, "dbpr's output in follow and in tail -f", lambda: follow.stdout):
                while not (followed.search(follow.stdout) and b"NAME: e2e-ioc:name" in tail.stdout):
                    bob.send(b"dbpr e2e-ioc:name\r")
                    await trio.sleep(0.5)
            assert b"\ne2e-ioc: " not in tail.stdout  # only follow prefixes lines
            follow.chan.write_eof()
            assert await follow.wait_closed() == 0


async def test_force_idle_release_no_silent_promotion_and_replay_without_a_log(
    tmp_path: Path,
) -> None:
    alice, bob, olga = keys = [make_key(tmp_path, name) for name in ("alice", "bob", "olga")]
    with ProcServ(IOC, tmp_path) as procserv:
        config = write_config(
            tmp_path / "consrv.yaml",
            {
                "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
                "users": {k.name: {"keys": [k.public]} for k in keys},
                "defaults": {"rw": ["alice", "bob"], "ro": ["*"], "writer_idle_timeout": "1s"},
                "consoles": {IOC: {"socket": str(procserv.socket)}},
            },  # no log_dir: replay works from memory
        )
        procserv.wait_ioc()
        consrv = Consrv(config, tmp_path).start()
        witness = Witness(procserv.socket)
        try:
            async with (
                trio_asyncio.open_loop(),
                scripted_ssh(consrv.port, alice.private, "console", IOC, pty=True) as a,
            ):
                await a.expect(rb"you write", stderr=True)
                a.send(b"dbgf e2e-ioc:name\r")  # a line the replay must hold
                await a.expect(rb'DBF_STRING:\s+"e2e-ioc"')
                async with (
                    scripted_ssh(consrv.port, bob.private, "console", IOC, pty=True) as b,
                    scripted_ssh(consrv.port, olga.private, "observer", IOC, pty=True) as o,
                ):
                    await b.expect(rb"read-write, watching", stderr=True)
                    await o.expect(
                        rb"attached to e2e-ioc: read-only", stderr=True
                    )  # before the force
                    b.send(b"\x05cf")  # ^Ecf: force
                    await a.expect(rb"bob forced write; you now watch", stderr=True)
                    await b.expect(rb"you now write \(forced from alice\)", stderr=True)
                    await o.expect(rb"bob forced write from alice", stderr=True)
                    # bob idles 1 s: released; alice did not ask, so she stays a watcher
                    await a.expect(rb"bob idle for 1 s: write released; nobody writes", stderr=True)
                    a.send(b"ALICE_SILENT\r")
                    await a.expect(rb"watching: your input is not sent", stderr=True)
                    o.stdout.clear()
                    o.send(b"\x05cr")  # ^Ecr: replay, with no log configured
                    await o.expect(rb"last 20 lines of e2e-ioc", stderr=True)
                    await o.expect(rb'DBF_STRING:\s+"e2e-ioc"')
            seen = witness.read()
        finally:
            witness.close()
            consrv.stop()
    assert b"ALICE_SILENT" not in seen
    assert not (tmp_path / "logs").exists()
