"""Gateways as a facility runs them: reloaded by SIGHUP, two behind one name.

The fleet is the package's (tests/fleet/conftest.py); every test puts back what it
changes. Through the real OpenSSH client, checking the gateway's host key as a
user's client does (one known_hosts entry for the shared name).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import yaml

from consrv.contracts import DENIED, OK
from tests.fleet.sim import PEERS, Fleet, Gateway, ssh_argv
from tests.harness import Consrv
from tests.sshclients import PtySSH
from tests.waits import wait_until

pytestmark = pytest.mark.integration

SHARED_NAME = "gw.example.org"  # the DNS name both gateways are published under


def hosts(fleet: Fleet, gateway: int) -> set[str]:
    return {row["host"] for row in fleet.listing(gateway=gateway)["consoles"]}


def reload(gateway: Gateway, change: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the gateway's ``fleet:`` section with ``change`` and SIGHUP it; the old one."""
    config = yaml.safe_load(gateway.consrv.config.read_text())
    old = dict(config["fleet"])
    config["fleet"] = {k: v for k, v in {**old, **change}.items() if v is not None}
    gateway.consrv.config.write_text(yaml.safe_dump(config))
    assert gateway.consrv.process is not None
    gateway.consrv.process.send_signal(signal.SIGHUP)
    return old


def restore(gateway: Gateway, old: dict[str, Any]) -> None:
    config = yaml.safe_load(gateway.consrv.config.read_text())
    config["fleet"] = old
    gateway.consrv.config.write_text(yaml.safe_dump(config))
    assert gateway.consrv.process is not None
    gateway.consrv.process.send_signal(signal.SIGHUP)


def by_shared_name(
    fleet: Fleet, gateway: int, known_hosts: Path, *command: str, tty: bool = False
) -> list[str]:
    """``ssh console@gw.example.org ...`` as a user's client runs it, the name resolving
    to gateway ``gateway``: the host key checked against one known_hosts entry for the
    name (``HostKeyAlias``), never learnt."""
    gw = fleet.gateways[gateway]
    return [
        "ssh", "-tt" if tty else "-T", "-p", str(gw.consrv.port),
        "-i", str(fleet.users["alice"].private),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes", "-o", f"HostKeyAlias={SHARED_NAME}",
        "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
        f"console@{gw.address}", *command,
    ]  # fmt: skip


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


# -- SIGHUP on a gateway ---------------------------------------------------------------


def test_a_reload_removes_and_adds_peers(fleet: Fleet, tmp_path: Path) -> None:
    gateway, last = fleet.gateways[1], fleet.peers[-1]
    peers_file = tmp_path / "peers"
    peers_file.write_text("".join(f"{p.name}:{p.port}\n" for p in fleet.peers[:-1]))
    old = reload(gateway, {"peers": None, "peers_file": str(peers_file)})
    try:
        seen: list[object] = []

        def removed() -> bool:
            data = fleet.listing(gateway=1)
            seen[:] = [data["missing_peers"], sorted({r["host"] for r in data["consoles"]})]
            return not data["missing_peers"] and last.name not in seen[1]  # type: ignore[operator]

        wait_until(removed, f"{last.name} gone from gateway 1 (not missing: gone)", timeout=10,
                   seen=lambda: seen)  # fmt: skip
        assert hosts(fleet, 1) == {p.name for p in fleet.peers[:-1]}
        assert hosts(fleet, 0) == {p.name for p in fleet.peers}  # the other gateway: unchanged
        refused = fleet.ssh("alice", "tail", f"ioc-{PEERS - 1:02d}", gateway=1)
        assert refused.returncode != OK

        peers_file.write_text("".join(f"{p.name}:{p.port}\n" for p in fleet.peers))
        gateway.consrv.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        fleet.wait_complete(gateway=1, timeout=15)
        tail = fleet.ssh("alice", "tail", f"ioc-{PEERS - 1:02d}", "-n", "5", gateway=1)
        assert tail.returncode == OK, tail.stderr
    finally:
        restore(gateway, old)
    fleet.wait_complete(gateway=1, timeout=15)
    log = gateway.consrv.stderr()
    assert f"fleet: peer {last.name} dropped (no longer in the config)" in log
    assert "takes effect when consrv restarts" not in log


def test_a_reload_gives_new_sessions_the_new_ca(fleet: Fleet, tmp_path: Path) -> None:
    """A CA the peers do not trust: new sessions are refused by the peer; back: served."""
    gateway = fleet.gateways[1]
    other = tmp_path / "other_ca"
    other.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    other.chmod(0o600)
    name = "ioc-06"
    old = reload(gateway, {"ca_key": str(other)})
    try:
        seen: list[object] = []

        def refused() -> bool:
            result = fleet.ssh("alice", "tail", name, gateway=1)
            seen[:] = [result.returncode, result.stderr]
            return result.returncode == DENIED

        wait_until(refused, f"{name} refused through gateway 1 under a CA the peer does not "
                   "trust", timeout=10, seen=lambda: seen)  # fmt: skip
        assert "refused this gateway's certificate for alice" in str(seen[1])
        assert fleet.ssh("alice", "tail", name, gateway=0).returncode == OK  # the other: as was
    finally:
        restore(gateway, old)

    def served() -> bool:
        result = fleet.ssh("alice", "tail", name, gateway=1)
        seen[:] = [result.returncode, result.stderr]
        return result.returncode == OK

    wait_until(served, f"{name} served through gateway 1 under its own CA again", timeout=10,
               seen=lambda: seen)  # fmt: skip


def test_a_reload_with_an_unreadable_key_keeps_the_running_one(
    fleet: Fleet, tmp_path: Path
) -> None:
    gateway = fleet.gateways[1]
    broken = tmp_path / "broken_key"
    broken.write_text("not a key\n")
    broken.chmod(0o600)
    old = reload(gateway, {"key": str(broken)})
    try:
        gateway.consrv.wait_for_log(rb"reload failed, the running config stays: [^\n]*key")
        fleet.wait_complete(gateway=1, timeout=10)  # every peer kept
    finally:
        restore(gateway, old)
    fleet.wait_complete(gateway=1, timeout=15)


# -- two gateways behind one name ----------------------------------------------------------


async def test_two_gateways_behind_one_name(fleet: Fleet, tmp_path: Path) -> None:
    """One known_hosts line for the name; either gateway serves; one SIGKILLed, the other
    still does (a session on it too); the killed one restarted is whole within seconds."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"{SHARED_NAME} {fleet.host_key}\n")
    for gateway in (0, 1):
        tail = run(by_shared_name(fleet, gateway, known_hosts, "tail", "ioc-09", "-n", "5"))
        assert tail.returncode == OK, (gateway, tail.stderr)
    stranger = tmp_path / "stranger_known_hosts"  # another key for the name: refused
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    stranger.write_text(f"{SHARED_NAME} {other}\n")
    refused = run(by_shared_name(fleet, 1, stranger, "list"))
    assert refused.returncode == 255
    assert "host key" in refused.stderr.lower()

    client = await PtySSH(by_shared_name(fleet, 1, known_hosts, "ioc-08", tty=True)).start()
    killed = fleet.gateways[0]
    try:
        await client.expect(rb"you write")
        assert killed.consrv.process is not None
        killed.consrv.process.kill()  # SIGKILL: no goodbye to anyone
        killed.consrv.process.wait(timeout=10)
        await client.send(b"still-here-after-the-other-died\r")
        await client.expect(rb"still-here-after-the-other-died")  # cat's echo via gateway 1
        down = await trio.to_thread.run_sync(run, by_shared_name(fleet, 0, known_hosts, "list"))
        assert down.returncode == 255  # the killed one: connection refused
        served = await trio.to_thread.run_sync(
            run, by_shared_name(fleet, 1, known_hosts, "list", "--json")
        )
        assert served.returncode == OK, served.stderr
        data = json.loads(served.stdout)
        assert data["missing_peers"] == []
        assert {row["host"] for row in data["consoles"]} == {p.name for p in fleet.peers}
        await client.send(b"\x05c.")
        assert await client.wait() == 0
    finally:
        await client.aclose()
        start = time.monotonic()
        if killed.consrv.process is not None and killed.consrv.process.poll() is not None:
            killed.consrv = Consrv(killed.consrv.config, killed.root).start(timeout=30)
    await trio.to_thread.run_sync(lambda: fleet.wait_complete(gateway=0, timeout=10))
    whole = time.monotonic() - start
    assert whole < 10, f"directory whole {whole:.1f} s after the restart"
    tail = run(by_shared_name(fleet, 0, known_hosts, "tail", "ioc-09", "-n", "5"))
    assert tail.returncode == OK, tail.stderr  # same key: the one known_hosts line still fits


# -- who through a gateway -------------------------------------------------------------


async def test_who_through_a_gateway_has_idle_times(fleet: Fleet) -> None:
    """A remote row's idle time is the peer's own (to the second), as a local row's is."""
    peer, name = fleet.peers[10], "ioc-10"
    client = await PtySSH(
        ssh_argv(peer.name, peer.port, fleet.users["bob"].private, "console", name, tty=True)
    ).start()
    try:
        await client.expect(rb"you write")
        await client.send(b"typed\r")
        await client.expect(rb"typed")
        seen: list[object] = []

        def idle_of(gateway: bool) -> float | None:
            """bob's ``idle_seconds`` on the console, through the gateway or on the peer."""
            where = {} if gateway else {"host": peer.name, "port": peer.port}
            result = fleet.ssh("olga", "who", "--json", **where)  # type: ignore[arg-type]
            assert result.returncode == OK, result.stderr
            users = json.loads(result.stdout)["users"]
            seen[:] = [users]
            bob = [u for u in users if u["console"] == name and u["user"] == "bob"]
            return bob[0]["idle_seconds"] if bob else None

        await trio.to_thread.run_sync(
            lambda: wait_until(
                lambda: idle_of(True) is not None,
                f"bob's idle time on {name} through the gateway",
                timeout=10,
                seen=lambda: seen,
            )
        )
        through = await trio.to_thread.run_sync(idle_of, True)
        direct = await trio.to_thread.run_sync(idle_of, False)
        assert through is not None
        assert direct is not None
        assert 0 <= through < 30
        assert abs(through - direct) < 2.5  # last_input is to the second; two requests apart
        table = await trio.to_thread.run_sync(lambda: fleet.ssh("olga", "who"))
        row = next(line for line in table.stdout.splitlines() if line.startswith(name))
        assert re.search(r"\bbob\s+writer\s+\d+s\b", row), row
    finally:
        await client.aclose()
