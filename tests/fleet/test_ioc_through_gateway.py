"""IOC units through a gateway: one peer in front of real ``ioc@`` units.

The peer is a real ``consrv serve`` with ``ioc: {scope: user}`` against a private
systemd user manager (tests/systemd_user.py); ``ioc@fu-ioc`` is procServ running a
real EPICS soft IOC. A real gateway made with ``consrv fleet init`` has that one
peer. Through the gateway, with the OpenSSH client: ``restart NAME`` restarts the
unit (checked on the peer's side: the manager's MainPID and the IOC's pid), refusals
are the peer's own (the same words and exit status as a direct login), and the
restart escape's confirmation is the peer's.

Policy: loopback only (a peer address of its own, 127.2.0.10, and gateway 127.0.0.52,
apart from the package's fleet), every wait bounded and named; the manager and
everything under it, the peer and the gateway are stopped at the end of the module.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consrv.contracts import DENIED, OK
from consrv.ssh.keys import write_new_key
from tests.fleet.sim import (
    fleet_init,
    free_port,
    gateway_config,
    peer_config,
    peer_section,
    ssh_argv,
)
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import PtySSH
from tests.systemd_user import REPO, SystemdUser, softioc_cmd
from tests.waits import wait_until

pytestmark = pytest.mark.integration

NAME = "fu-ioc"
PEER, GATEWAY = "127.2.0.10", "127.0.0.52"
BOOTED = b"iocRun: All initialization complete"


@dataclass
class UnitFleet:
    systemd: SystemdUser
    peer: Consrv
    peer_port: int
    gateway: Consrv
    users: dict[str, UserKey]

    def ssh(self, user: str, *command: str, login: str = "console", direct: bool = False
            ) -> tuple[int, str, str]:  # fmt: skip
        """``ssh LOGIN@gw COMMAND`` (or on the peer itself): status, stdout, stderr."""
        host, port = (PEER, self.peer_port) if direct else (GATEWAY, self.gateway.port)
        argv = ssh_argv(host, port, self.users[user].private, login, *command, tty=False)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return result.returncode, result.stdout, result.stderr

    def main_pid(self) -> int:
        """procServ's pid, as the peer's systemd manager says."""
        return int(self.systemd.show(f"ioc@{NAME}.service", "MainPID")["MainPID"])

    def ioc_pid(self) -> int | None:
        """The IOC's pid, as the peer itself reports it (a direct login)."""
        status, out, err = self.ssh("alice", "status", NAME, "--json", direct=True)
        assert status == OK, err
        pid: int | None = json.loads(out)["consoles"][0]["child_pid"]
        return pid


def _peer(root: Path, users: dict[str, UserKey], section: dict[str, Any], keys: Path) -> int:
    host_key = write_new_key(root / "host_key", f"host {PEER}")
    port = free_port(PEER)
    (keys / "known_hosts").write_text(f"[{PEER}]:{port} {host_key.export_public_key().decode()}")
    config = peer_config(root, PEER, port, users, section, {NAME: {}})
    config["defaults"]["operate"] = ["alice"]  # bob may write, not operate
    config["ioc"] = {"scope": "user"}
    config["consoles"][NAME] = {"autostart": True}
    write_config(root / "consrv.yaml", config)
    return port


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UnitFleet]:
    root = tmp_path_factory.mktemp("fleet-units")
    users = {name: make_key(root, name) for name in ("alice", "bob")}
    keys = root / "gateway-keys"
    section = peer_section(fleet_init(keys, addresses=(GATEWAY,)))
    with SystemdUser.running() as systemd:
        systemd.write_ioc_env(NAME, REPO, softioc_cmd(NAME))
        (root / "peer").mkdir()
        port = _peer(root / "peer", users, section, keys)
        peer = Consrv(root / "peer" / "consrv.yaml", root / "peer", systemd.env)
        gw_root = root / "gateway"
        gw_root.mkdir()
        write_new_key(keys / "gateway_host_key", "gateway")
        settings = gateway_config(gw_root, GATEWAY, users, keys)
        settings["fleet"]["peers"] = [f"{PEER}:{port}"]
        gateway = Consrv(write_config(gw_root / "consrv.yaml", settings), gw_root)
        try:
            peer.start(timeout=30)
            peer.wait_for_log(rb"autostart: started", timeout=30)
            gateway.start(timeout=30)
            fleet = UnitFleet(systemd, peer, port, gateway, users)
            log = systemd.ioc_log_path(NAME)
            wait_until(
                lambda: log.exists() and BOOTED in log.read_bytes(),
                f"{NAME} booted (in {log})",
                timeout=30,
            )
            wait_until(
                lambda: fleet.ssh("alice", "status", NAME)[0] == OK,
                f"{NAME} known to the gateway",
                timeout=15,
            )
            yield fleet
        finally:
            for process in (gateway, peer):
                if process.process is not None:
                    process.stop()
            systemd.stop_iocs()


def test_restart_through_the_gateway_restarts_the_unit_on_the_peer(units: UnitFleet) -> None:
    wait_until(lambda: units.ioc_pid(), f"{NAME}'s IOC running, says the peer", timeout=15)
    procserv, ioc = units.main_pid(), units.ioc_pid()
    assert units.ssh("alice", "restart", NAME) == (OK, f"restarted {NAME}\n", "")
    assert units.main_pid() not in (0, procserv)  # systemctl restart is done when it answers
    wait_until(
        lambda: units.ioc_pid() not in (None, ioc),
        f"{NAME}'s IOC running with a new pid (was {ioc}), says the peer",
        timeout=20,
    )
    assert f"{NAME}: restart by alice" in units.peer.stderr()  # the peer acted, for alice


def test_refusals_through_the_gateway_are_the_peers_own(units: UnitFleet) -> None:
    before = units.main_pid()
    not_operator = units.ssh("bob", "restart", NAME)
    assert not_operator == units.ssh("bob", "restart", NAME, direct=True)
    assert not_operator == (
        DENIED, "", f"consrv: you may not restart {NAME} (not in its operate list)\n"
    )  # fmt: skip
    observer = units.ssh("alice", "restart", NAME, login="observer")
    assert observer == units.ssh("alice", "restart", NAME, login="observer", direct=True)
    assert observer == (
        DENIED, "", f"consrv: you may not restart {NAME} (the observer login is read-only)\n"
    )  # fmt: skip
    assert units.main_pid() == before  # nothing was restarted


async def test_the_restart_escape_asks_on_the_peer(units: UnitFleet) -> None:
    """``^Ec!restart`` through the gateway: the peer's question; "n" changes nothing."""
    before = units.main_pid()
    argv = ssh_argv(GATEWAY, units.gateway.port, units.users["alice"].private, "console",
                    NAME, tty=True)  # fmt: skip
    client = await PtySSH(argv).start()
    try:
        await client.expect(rb"attached to fu-ioc: you write")
        await client.send(b"\x05c!")
        await client.expect(rb"IOC action \(restart, start, stop\): ")
        await client.send(b"restart\r")
        await client.expect(rb"Restart IOC fu-ioc\? \[y/N\] ")
        await client.send(b"n")  # alone: a key typed with more is typeahead, not an answer
        await client.expect(rb"\[y/N\] n\r\n")
        await client.send(b"\x05c.")
        await client.expect(rb"detached from fu-ioc")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    assert units.main_pid() == before
