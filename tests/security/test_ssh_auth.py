"""Authentication under abuse (issue 13, items 9 and 10): key guessing, unprotected keys.

Item 9: one connection offering 30 unknown keys and then a valid one logged in,
and nothing was counted or recorded. Now a connection is cut at the 6th refused
key (sshd's MaxAuthTries), and every refusal is counted
(``consrv_ssh_auth_attempt_failures_total``) and written to the audit log
(``auth_failed``, with the key's fingerprint). The clients are the real OpenSSH
client (``ssh -i`` given many keys, as a key-guessing script would run it) and
asyncssh.

Item 10: a host key that other users may read is refused, as sshd refuses an
"UNPROTECTED PRIVATE KEY FILE".

Policy: loopback only, port 0, every wait bounded; consrv and procServ are
stopped by the ``site`` fixture.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import trio_asyncio

from tests.harness import Consrv, make_key
from tests.integration.test_metrics_live import key, scrape, wait_for
from tests.reliability.conftest import Site
from tests.reliability.probes import CAT, openssh, run_command, run_openssh
from tests.waits import deadline

pytestmark = pytest.mark.integration

IOC = "auth-ioc"
GUESSES = 30
ATTEMPTS = key("consrv_ssh_auth_attempt_failures_total", reason="unknown_key")


def start(site: Site, **ssh: Any) -> int:
    """consrv with an audit log and metrics; the metrics port."""
    site.procserv(IOC, CAT)
    site.start(
        {IOC: site.socket_of(IOC)},
        ssh={"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"), **ssh},
        metrics={"listen": "127.0.0.1:0"},
        audit_log=str(site.root / "audit.jsonl"),
    )
    return site.consrv.metrics_port()


def audit(site: Site, event: str) -> list[dict[str, Any]]:
    path = site.root / "audit.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [record for line in lines if (record := json.loads(line))["event"] == event]


def guesses(site: Site, count: int) -> list[Path]:
    directory = site.root / "guesses"
    directory.mkdir(exist_ok=True)
    return [make_key(directory, f"guess{i}").private for i in range(count)]


async def test_thirty_unknown_keys_then_a_valid_one_is_cut_at_six_and_all_recorded(
    site: Site,
) -> None:
    metrics = start(site)
    wrong = guesses(site, GUESSES)
    identities = [arg for path in [*wrong[1:], site.key("alice")] for arg in ("-i", str(path))]
    argv = openssh(site.port, wrong[0], "console", *identities, command=("list",), log_level="INFO")
    result = await trio.to_thread.run_sync(lambda: run_openssh(argv, timeout=20))
    assert result.returncode == 255, result
    assert "Too many authentication failures" in result.stderr, result.stderr
    assert IOC not in result.stdout  # never logged in
    # The connection's end is counted when consrv has closed it, maybe after ssh exits.
    got = await wait_for(metrics, {key("consrv_ssh_auth_failures_total", reason="unknown_key"): 1})
    assert got[ATTEMPTS] == 6, got.consrv_lines()
    assert got[key("consrv_ssh_logins_total", login="console")] == 0
    refused = audit(site, "auth_failed")
    assert [r["attempt"] for r in refused] == [1, 2, 3, 4, 5, 6], refused
    assert {r["reason"] for r in refused} == {"unknown_key"}, refused
    assert all(r["key"].startswith("SHA256:") and r["from"] for r in refused), refused
    assert len({r["key"] for r in refused}) == 6  # six different keys offered
    [failed] = audit(site, "login_failed")
    assert failed["attempts"] == 6, failed
    assert audit(site, "login") == []


async def test_a_few_wrong_keys_before_the_right_one_still_log_in_and_are_counted(
    site: Site,
) -> None:
    metrics = start(site)
    keys = [*guesses(site, 5), site.key("alice")]
    async with trio_asyncio.open_loop():
        conn = await trio_asyncio.aio_as_trio(asyncssh.connect)(
            "127.0.0.1", site.port, username="console", client_keys=[str(k) for k in keys],
            known_hosts=None, agent_path=None, connect_timeout=5,
        )  # fmt: skip
        try:
            result = await trio_asyncio.aio_as_trio(conn.run)("list", timeout=10)
        finally:
            conn.close()
            await trio_asyncio.aio_as_trio(conn.wait_closed)()
    assert result.exit_status == 0, result
    got = await scrape(metrics)
    assert got[ATTEMPTS] == 5, got.consrv_lines()
    assert got[key("consrv_ssh_logins_total", login="console")] == 1
    assert [r["attempt"] for r in audit(site, "auth_failed")] == [1, 2, 3, 4, 5]
    [login] = audit(site, "login")
    assert login["user"] == "alice", login


async def test_max_auth_tries_is_configurable_and_a_wrong_login_name_counts(site: Site) -> None:
    metrics = start(site, max_auth_tries=2)
    async with trio_asyncio.open_loop():
        with pytest.raises(asyncssh.DisconnectError, match="Too many authentication failures"):
            await trio_asyncio.aio_as_trio(asyncssh.connect)(
                "127.0.0.1", site.port, username="root",
                client_keys=[str(site.key("alice")), str(site.key("bob"))],
                known_hosts=None, agent_path=None, connect_timeout=5,
            )  # fmt: skip
        reply = await run_command(site.port, site.key("bob"), "console", "list")
    assert reply.status == 0, reply
    got = await scrape(metrics)
    sample = key("consrv_ssh_auth_attempt_failures_total", reason="unknown_login")
    assert got[sample] == 2, got.consrv_lines()


def serve_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "consrv", "serve", "--config", str(config)]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_host_key_others_may_read_is_refused(site: Site, mode: int) -> None:
    host_key = site.root / "host_key"
    make_key(site.root, "host")  # write_new_key: 0600
    (site.root / "id_host").rename(host_key)
    host_key.chmod(mode)
    config = site.config({}, ssh={"listen": ["127.0.0.1:0"], "host_key": str(host_key)})
    served = subprocess.run(serve_argv(config), capture_output=True, text=True, timeout=20)
    assert served.returncode == 1, served
    assert "UNPROTECTED PRIVATE KEY FILE" in served.stderr, served.stderr
    assert str(host_key) in served.stderr
    assert "ssh listening" not in served.stderr
    checked = subprocess.run(
        [sys.executable, "-m", "consrv", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert "UNPROTECTED PRIVATE KEY FILE" in checked.stderr, checked
    host_key.chmod(0o600)
    consrv = Consrv(config, site.root).start()  # the same key, protected: served
    assert consrv.stop() == 0


async def test_every_connection_closed_at_the_login_timeout_is_counted(site: Site) -> None:
    """The red team's 400 connections closed at the login timeout were counted 0 times."""
    metrics = start(site, login_timeout="1s")
    idle: list[trio.SocketStream] = []
    try:
        for source in ("127.0.0.2", "127.0.0.3"):
            for _ in range(20):  # max_startups_per_source
                with deadline(5, f"an idle connection from {source}"):
                    idle.append(await trio.open_tcp_stream("127.0.0.1", site.port,
                                                           local_address=source))  # fmt: skip
        timeouts = key("consrv_ssh_handshake_failures_total", reason="timeout")
        until = trio.current_time() + 10
        while (got := await scrape(metrics)).get(timeouts) != len(idle):
            assert trio.current_time() < until, f"40 timeouts not counted:\n{got.consrv_lines()}"
            await trio.sleep(0.2)
    finally:
        for stream in idle:
            await stream.aclose()
    assert got[key("consrv_ssh_unauthenticated_connections")] == 0
