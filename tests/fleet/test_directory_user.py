"""A user only the directory knows, through a real gateway to a real peer.

Both hosts take users and groups from NSS (``identity: {nss: true}``), given by
``libnss-wrapper`` from one passwd and one group file (as one facility directory
reaches every host); neither lists the users in its YAML. kate logs in to the
gateway with a certificate from the site's CA naming her; the gateway mints its
per-hop certificate for her, the peer finds her in NSS and gives her the role her
Unix group ``ops`` has on ``ops-ioc``: she writes, and cat (procServ's child) echoes
what she typed. The peer's audit says kate, via the gateway. leo, in no such group,
does not see the console through the gateway.

Policy: loopback only (a peer address of its own, 127.3.0.10, and gateway
127.0.0.54, apart from the package's fleet), every wait bounded and named; procServ,
the peer and the gateway are stopped at the end of the module.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from consrv.demo import ProcServ
from consrv.ssh.keys import write_new_key
from tests.fleet.sim import CAT, fleet_init, free_port, gateway_config, peer_config, peer_section
from tests.fleet.sim import ssh_argv as fleet_ssh_argv
from tests.harness import Consrv, write_config
from tests.sshclients import PtySSH
from tests.waits import wait_until

pytestmark = pytest.mark.integration

NAME = "ops-ioc"
PEER, GATEWAY = "127.3.0.10", "127.0.0.54"
NSS_WRAPPER = "libnss_wrapper.so"


@dataclass
class DirectoryFleet:
    root: Path
    peer: Consrv
    gateway: Consrv
    audit: Path  # the peer's

    def key(self, user: str) -> Path:
        return self.root / f"id_{user}"  # its certificate beside it: id_USER-cert.pub

    def ssh(self, user: str, *command: str) -> subprocess.CompletedProcess[str]:
        argv = fleet_ssh_argv(GATEWAY, self.gateway.port, self.key(user), "console", *command,
                              tty=False)  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)  # fmt: skip
    return path


def certify(ca: Path, key: Path, principal: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", f"{principal}@site", "-n", principal,
                    "-V", "-5m:+1h", f"{key}.pub"], check=True)  # fmt: skip


def nss_env(root: Path) -> dict[str, str]:
    """The facility's directory, as NSS gives it to both hosts: kate is in ops, leo not."""
    passwd, group = root / "passwd", root / "group"
    passwd.write_text(  # no entry for root, whom consrv runs as here: it needs none
        "kate:x:2101:65534:kate:/home/kate:/bin/sh\n"
        "leo:x:2102:65534:leo:/home/leo:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    group.write_text("root:x:0:\nnogroup:x:65534:\nops:x:3100:kate\n")
    names = ("LOGNAME", "USER", "LNAME", "USERNAME")  # so nothing names consrv's user
    env = {key: value for key, value in os.environ.items() if key not in names}
    return dict(env, LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_PASSWD=str(passwd),
                NSS_WRAPPER_GROUP=str(group))  # fmt: skip


@pytest.fixture(scope="module")
def directory_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DirectoryFleet]:
    root = tmp_path_factory.mktemp("fleet-directory")
    site_ca = keygen(root / "site_ca")
    for user in ("kate", "leo"):
        certify(site_ca, keygen(root / f"id_{user}"), user)
    env = nss_env(root)
    keys = root / "gateway-keys"
    section = peer_section(fleet_init(keys, addresses=(GATEWAY,)))
    peer_root, gw_root = root / "peer", root / "gateway"
    peer_root.mkdir()
    gw_root.mkdir()
    with ProcServ(NAME, peer_root, CAT) as procserv:
        procserv.wait_ready(timeout=30)
        host_key = write_new_key(peer_root / "host_key", f"host {PEER}")
        port = free_port(PEER)
        (keys / "known_hosts").write_text(
            f"[{PEER}]:{port} {host_key.export_public_key().decode()}"
        )
        console = {"socket": str(procserv.socket), "rw": ["@ops"], "ro": []}
        config = peer_config(peer_root, PEER, port, {}, section, {NAME: console})
        config["identity"] = {"nss": True}
        write_config(peer_root / "consrv.yaml", config)
        write_new_key(keys / "gateway_host_key", "gateway")
        settings = gateway_config(gw_root, GATEWAY, {}, keys)
        settings["fleet"]["peers"] = [f"{PEER}:{port}"]
        settings["ssh"]["trusted_user_ca_keys"] = [(root / "site_ca.pub").read_text().strip()]
        settings["identity"] = {"nss": True}
        peer = Consrv(peer_root / "consrv.yaml", peer_root, env)
        gateway = Consrv(write_config(gw_root / "consrv.yaml", settings), gw_root, env)
        try:
            peer.start(timeout=30)
            gateway.start(timeout=30)
            fleet = DirectoryFleet(root, peer, gateway, peer_root / "audit.log")
            listed: list[str] = []

            def known() -> bool:
                result = fleet.ssh("kate", "list")
                listed[:] = [result.stdout + result.stderr]
                return NAME in result.stdout

            wait_until(known, f"{NAME} in kate's list through the gateway", timeout=20,
                       seen=lambda: listed)  # fmt: skip
            yield fleet
        finally:
            for process in (gateway, peer):
                if process.process is not None:
                    process.stop()


def test_a_directory_user_writes_to_a_peers_console_by_her_unix_group(
    directory_fleet: DirectoryFleet,
) -> None:
    fleet = directory_fleet

    async def main() -> None:
        argv = fleet_ssh_argv(GATEWAY, fleet.gateway.port, fleet.key("kate"), "console", NAME,
                              tty=True)  # fmt: skip
        client = await PtySSH(argv).start()
        try:
            await client.expect(rb"attached to ops-ioc: you write")
            await client.send(b"typed-by-kate\r")
            await client.expect(rb"typed-by-kate\r\n(.|\r|\n)*typed-by-kate")  # echo, then cat
            await client.send(b"\x05c.")
            await client.expect(rb"detached from ops-ioc")
        finally:
            await client.aclose()

    trio.run(main)
    records = [json.loads(line) for line in fleet.audit.read_text().splitlines() if line]
    logins = [r for r in records if r["event"] == "login" and r.get("user") == "kate"]
    assert logins, records
    assert logins[-1]["login"] == "console"
    assert logins[-1]["via"].startswith(f"gw-{GATEWAY}:")  # the peer judged kate herself
    attaches = [r for r in records if r["event"] == "attach" and r.get("user") == "kate"]
    assert attaches[-1]["console"] == NAME
    assert attaches[-1]["role"] == "rw"  # from her Unix group ops, on the peer
    assert "kate" not in (fleet.peer.config.read_text() + fleet.gateway.config.read_text())


def test_a_directory_user_without_the_group_sees_nothing(directory_fleet: DirectoryFleet) -> None:
    fleet = directory_fleet
    listed = fleet.ssh("leo", "list")
    assert listed.returncode == 0, listed.stderr
    assert NAME not in listed.stdout
    refused = fleet.ssh("leo", "tail", NAME)
    assert refused.returncode == 1
    assert "unknown console" in refused.stderr
