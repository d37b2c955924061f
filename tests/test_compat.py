"""consrv.ssh.compat: every hook installable on the locked versions, active on a live
connection, and a hook that cannot be installed stops (security) or is left out
(performance) when `consrv serve` starts.

The start-up cases need an asyncssh that lacks what a hook patches. That fault cannot
be had for real from the lock, so the test's wrapper removes the one attribute from the
installed asyncssh in the child process before consrv starts (said so here: the only
fault injected in this module). Loopback only, port 0; every process is stopped.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import trio
import trio_asyncio

from consrv.commands import Shell
from consrv.config import load_config
from consrv.host import Host
from consrv.registry import Registry
from consrv.ssh import compat, umac
from consrv.ssh.server import SSHFront
from tests.harness import make_key, write_config
from tests.waits import deadline

REPO = Path(__file__).resolve().parent.parent


def test_every_hook_is_installable_on_the_locked_versions() -> None:
    assert compat.check() == {}


def test_every_hook_says_what_it_patches_why_and_what_retires_it() -> None:
    names = [hook.name for hook in compat.HOOKS]
    assert len(names) == len(set(names))
    drafts = (REPO / "docs" / "upstream.md").read_text(encoding="utf-8")
    for hook in compat.HOOKS:
        assert all((hook.patches, hook.why, hook.retire)), hook.name
        assert f"`{hook.name}`" in drafts, f"docs/upstream.md does not name {hook.name}"
    kinds = {hook.name: hook.kind for hook in compat.HOOKS}
    assert kinds["revoked-keys"] == kinds["env-requests"] == "security"


def _config(tmp_path: Path) -> Path:
    user = make_key(tmp_path, "alice")
    return write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
            "log_dir": str(tmp_path / "logs"),
            "users": {"alice": {"keys": [user.public]}},
            "defaults": {"rw": ["*"]},
            "consoles": {"quiet": {"tcp": "127.0.0.1:9"}},  # down: the menu waits for a pick
        },
    )


async def test_every_hook_is_active_on_a_live_connection(tmp_path: Path) -> None:
    """A real login (asyncssh's client) to a real SSHFront: the connection, its channel,
    the loop and the MAC registry carry consrv's hooks while the user is in."""
    config = load_config(_config(tmp_path))
    seen: dict[str, object] = {}
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        registry = Registry(config)
        await nursery.start(registry.run)
        host = Host(registry)
        front = SSHFront(config, host, Shell(host))
        [(host, port)] = await nursery.start(front.serve)

        async def login() -> None:
            async with asyncssh.connect(
                host, port, username="console", client_keys=[str(tmp_path / "id_alice")],
                known_hosts=None, config=None, mac_algs=["umac-64-etm@openssh.com"],
                encryption_algs=["aes128-ctr"],
            ) as conn:  # fmt: skip
                process = await conn.create_process(term_type="xterm", encoding=None)
                await process.stdout.read(1)  # the menu is up: the channel is open
                [server_conn] = front.connections
                seen["connection"] = compat.hooks_on(server_conn)
                seen["channels"] = [
                    "_process_env_request" in vars(session.chan) for session in front.sessions
                ]
                process.close()

        with deadline(15, "the login and the menu's first byte"):
            await trio_asyncio.aio_as_trio(login)()
        seen["loop"] = getattr(loop._main_loop_one, "__name__", "")
        nursery.cancel_scope.cancel()
    assert seen["connection"] == {
        "auth-failures", "revoked-keys", "no-config-reload", "one-packet-per-write",
        "lazy-keepalive",
    }  # fmt: skip
    assert seen["channels"] == [True]
    assert seen["loop"] == "one_pass"
    assert compat.umac_handler(b"umac-64-etm@openssh.com") is umac.KeyedUMAC


def _argv_without(attribute: str, config: Path) -> list[str]:
    """``consrv serve`` with one attribute removed from the installed asyncssh first."""
    owner, name = attribute.rsplit(".", 1)
    script = (
        "import sys, asyncssh, consrv.cli\n"
        f"delattr({owner}, {name!r})\n"
        "sys.exit(consrv.cli.main(sys.argv[1:]))\n"
    )
    return [sys.executable, "-c", script, "serve", "--config", str(config)]


def test_a_security_hook_that_cannot_be_installed_stops_serve(tmp_path: Path) -> None:
    argv = _argv_without("asyncssh.SSHServerChannel._process_env_request", _config(tmp_path))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 1, done.stderr
    assert "security hook" in done.stderr
    assert "env-requests" in done.stderr
    assert "ssh listening" not in done.stderr


def test_a_performance_hook_that_cannot_be_installed_is_one_warning(tmp_path: Path) -> None:
    """consrv serves without it: it binds, says so once, and stops on SIGTERM."""
    argv = _argv_without("asyncssh.SSHServerConnection.reload_config", _config(tmp_path))
    err_path = tmp_path / "stderr"
    with err_path.open("wb") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 15
        while b"ssh listening" not in err_path.read_bytes() and process.poll() is None:
            assert time.monotonic() < deadline, "consrv's 'ssh listening' line (15 s)"
            time.sleep(0.05)
        text = err_path.read_text()
        assert "ssh listening" in text, f"consrv did not bind: {text}"
    finally:
        process.terminate()
        process.wait(timeout=10)
    warnings = [line for line in text.splitlines() if "no-config-reload" in line]
    assert len(warnings) == 1, text
    assert warnings[0].startswith("WARNING"), warnings


async def test_a_client_connection_sends_one_packet_per_write(tmp_path: Path) -> None:
    """A fleet gateway's connection to a peer (a client) carries the hook too: a keystroke
    written on it is one SSH packet, where asyncssh alone sends two (an empty ignore
    first). Counted by the connection's packet sequence number."""
    config = load_config(_config(tmp_path))
    sent: dict[bool, int] = {}
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        registry = Registry(config)
        await nursery.start(registry.run)
        host = Host(registry)
        front = SSHFront(config, host, Shell(host))
        [(host, port)] = await nursery.start(front.serve)

        async def keystrokes(hooked: bool) -> None:
            async with asyncssh.connect(
                host, port, username="console", client_keys=[str(tmp_path / "id_alice")],
                known_hosts=None, config=None,
            ) as conn:  # fmt: skip
                if hooked:
                    compat.one_packet_per_write(conn)
                process = await conn.create_process(term_type="xterm", encoding=None)
                await process.stdout.read(1)  # the menu is up: the channel is open
                before = conn._send_seq  # asyncssh's packet count (private)
                for _ in range(10):
                    process.stdin.write(b" ")
                sent[hooked] = conn._send_seq - before
                assert "one-packet-per-write" in compat.hooks_on(conn) or not hooked
                process.close()

        with deadline(20, "two logins and their menus' first bytes"):
            for hooked in (False, True):
                await trio_asyncio.aio_as_trio(keystrokes)(hooked)
        nursery.cancel_scope.cancel()
    assert sent == {False: 20, True: 10}


PROMPT = b"quit): "  # the menu's (on stderr)


async def test_reads_re_arm_no_keepalive_timer(tmp_path: Path) -> None:
    """With keep-alives on both ends, keystrokes and their echo add no asyncio timer to
    the loop (asyncssh alone schedules a new one for every chunk read); the keep-alive
    still goes out when the link is quiet, and is answered."""
    config = load_config(_config(tmp_path))
    grown: dict[bool, int] = {}
    async with trio_asyncio.open_loop() as loop, trio.open_nursery() as nursery:
        registry = Registry(config)
        await nursery.start(registry.run)
        host = Host(registry)
        front = SSHFront(config, host, Shell(host))
        [(host, port)] = await nursery.start(front.serve)

        async def keystrokes(hooked: bool) -> None:
            async with asyncssh.connect(
                host, port, username="console", client_keys=[str(tmp_path / "id_alice")],
                known_hosts=None, config=None, keepalive_interval=0.3,
            ) as conn:  # fmt: skip
                if hooked:
                    compat.tune_client(conn)
                process = await conn.create_process(term_type="xterm", encoding=None)
                await process.stderr.readuntil(PROMPT)
                before = len(loop._timers)
                for _ in range(20):
                    process.stdin.write(b"nope\r")  # the menu answers each, and asks again
                    await process.stderr.readuntil(PROMPT)
                await asyncio.sleep(0.05)  # every timer asked for is in the heap
                grown[hooked] = len(loop._timers) - before
                await asyncio.sleep(1.0)  # quiet: keep-alives go and are answered
                assert not conn.is_closed()
                process.close()

        with deadline(20, "two logins, 20 echoed keystrokes each, a quiet second"):
            for hooked in (False, True):
                await trio_asyncio.aio_as_trio(keystrokes)(hooked)
        nursery.cancel_scope.cancel()
    assert grown[False] >= 20, grown  # asyncssh's own way: one per chunk read, at least
    assert grown[True] <= 2, grown
