"""SIGHUP reload of a running consrv: consoles and users change, unchanged sessions stay.

Real procServ (children are `cat`: what is typed comes back), consrv as a process,
asyncssh as the SSH client. Each test edits the config file and sends SIGHUP,
as `systemctl reload consrv` does.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import ScriptedSSH, scripted_ssh, ssh_argv
from tests.waits import deadline

pytestmark = pytest.mark.integration

CAT = ["/bin/cat"]


@dataclass
class Site:
    root: Path
    keys: dict[str, UserKey]
    sockets: dict[str, Path]
    consrv: Consrv

    def config(self, consoles: dict[str, dict[str, Any]], users: tuple[str, ...]) -> None:
        write_config(
            self.root / "consrv.yaml",
            {
                "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(self.root / "host_key")},
                "log_dir": str(self.root / "logs"),
                "users": {name: {"keys": [self.keys[name].public]} for name in users},
                "defaults": {"rw": ["alice"], "ro": ["*"]},
                "consoles": {
                    name: {"socket": str(self.sockets[name]), **extra}
                    for name, extra in consoles.items()
                },
            },
        )

    async def reload(self, expect: bytes) -> None:
        assert self.consrv.process is not None
        before = self.consrv.stderr().count("reload")
        self.consrv.process.send_signal(signal.SIGHUP)
        what = "consrv to log a reload after SIGHUP"
        with deadline(10, what, self.consrv.stderr):
            while self.consrv.stderr().count("reload") == before:
                await trio.sleep(0.02)
        await trio.to_thread.run_sync(self.consrv.wait_for_log, expect)

    @asynccontextmanager
    async def ssh(self, user: str, login: str, command: str) -> AsyncIterator[ScriptedSSH]:
        async with scripted_ssh(self.consrv.port, self.keys[user].private, login, command) as s:
            yield s

    def run(self, user: str, *command: str) -> subprocess.CompletedProcess[str]:
        argv = ssh_argv(self.consrv.port, self.keys[user].private, "console", *command, tty=False)
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    keys = {name: make_key(tmp_path, name) for name in ("alice", "bob", "olga")}
    with ExitStack() as stack:
        sockets = {
            name: stack.enter_context(ProcServ(name, tmp_path, CAT)).socket
            for name in ("keep", "drop", "new")
        }
        site = Site(tmp_path, keys, sockets, Consrv(tmp_path / "consrv.yaml", tmp_path))
        site.config({"keep": {}, "drop": {}}, ("alice", "bob", "olga"))
        site.consrv.start()
        try:
            yield site
        finally:
            site.consrv.stop()


async def test_reload_adds_and_removes_consoles_and_keeps_unchanged_sessions(site: Site) -> None:
    async with (
        trio_asyncio.open_loop(),
        site.ssh("alice", "console", "keep") as alice,
        site.ssh("bob", "console", "drop") as bob,
    ):
        await alice.expect(rb"you write", stderr=True)
        await bob.expect(rb"attached to drop", stderr=True)
        site.config({"keep": {}, "new": {}}, ("alice", "bob", "olga"))
        await site.reload(rb"reloaded .*: added new; removed drop")
        await bob.expect(rb"drop was removed from consrv's config", stderr=True)
        assert await bob.wait_closed() == 0
        alice.send(b"still here\n")  # alice's session and connection were not touched
        await alice.expect(rb"still here")
        listed = await trio.to_thread.run_sync(site.run, "alice", "list")
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["keep", "new"]
        # consrv connects to an added console's procServ after the reload: wait for it
        status = ""
        with deadline(10, "`status new` to say new: up", lambda: status):
            while "new: up" not in status:
                status = (await trio.to_thread.run_sync(site.run, "alice", "status", "new")).stdout


async def test_access_changes_apply_to_attached_users_at_once(site: Site) -> None:
    async with (
        trio_asyncio.open_loop(),
        site.ssh("alice", "console", "keep") as alice,
        site.ssh("olga", "observer", "keep") as olga,
        site.ssh("bob", "console", "keep") as bob,
    ):
        await alice.expect(rb"you write", stderr=True)
        await olga.expect(rb"read-only", stderr=True)
        await bob.expect(rb"read-only", stderr=True)
        # olga loses access to keep; bob's key is removed altogether; alice is unchanged
        site.config({"keep": {"ro": ["alice"]}, "drop": {}}, ("alice", "olga"))
        await site.reload(rb"reloaded .*: changed keep")
        await olga.expect(rb"your access to keep changed \(ro -> none\): attach again", stderr=True)
        await bob.expect(rb"your key was removed from consrv's config", stderr=True)
        assert await olga.wait_closed() == 0
        assert await bob.wait_closed() == 1
        alice.send(b"alice typed\n")
        await alice.expect(rb"alice typed")
        refused = await trio.to_thread.run_sync(site.run, "bob", "list")
        assert refused.returncode == 255  # the key is unknown now


async def test_a_bad_config_keeps_the_running_one(site: Site) -> None:
    async with trio_asyncio.open_loop(), site.ssh("alice", "console", "keep") as alice:
        await alice.expect(rb"you write", stderr=True)
        (site.root / "consrv.yaml").write_text("consoles: {keep: {sokcet: /x}}\n")
        await site.reload(rb"reload failed, the running config stays: .*sokcet: unknown key")
        alice.send(b"unharmed\n")
        await alice.expect(rb"unharmed")
        listed = await trio.to_thread.run_sync(site.run, "alice", "list")
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == ["drop", "keep"]
