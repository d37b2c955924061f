"""A simulated fleet on one machine, for the fleet suite and the fleet bench: real
`consrv serve` peers, each its own "host" on its own loopback address (127.0.0.0/8 is
all loopback), real procServ consoles, real gateways made with `consrv fleet init`.

Policy: loopback only; one fleet per test module (module scope); started staggered
and concurrently; every wait is bounded and names what it waits for; every process
started here (procServ, consrv, ssh) is stopped here. A test that breaks a peer or a
gateway (kill, stop, config change) puts it back before it ends.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from consrv.demo import ProcServ
from consrv.ssh.keys import write_new_key
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import SSH_OPTIONS
from tests.waits import wait_until
from tests.web.tls import self_signed

PEERS = int(os.environ.get("CONSRV_TEST_FLEET_PEERS", "20"))
FIRST_PEER = 10  # peers on 127.1.0.10, 127.1.0.11, ... (gateways on 127.0.0.50, .51)
GATEWAYS = ("127.0.0.50", "127.0.0.51")
DUPLICATE = "dup-ioc"  # on the first two peers
SOFT_IOC = "vac-ioc"  # a real EPICS soft IOC, on the third peer
SECRET = "secret-ioc"  # on the fourth peer, for alice only
CAT = ["/bin/cat"]  # a cheap child: echoes what it is sent
GATEWAY_HOST_KEY = "gateway_host_key"  # beside fleet init's keys, copied with them


@dataclass
class Peer:
    name: str  # its address, also its name in the fleet
    port: int
    root: Path
    consrv: Consrv
    config: dict[str, Any]
    procservs: dict[str, ProcServ] = field(default_factory=dict)
    metrics_port: int | None = None  # its /metrics, when the fleet was made with metrics

    @property
    def config_path(self) -> Path:
        return self.root / "consrv.yaml"

    def write(self) -> None:
        write_config(self.config_path, self.config)

    def audit(self) -> list[dict[str, Any]]:
        path = self.root / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class Gateway:
    address: str
    root: Path
    consrv: Consrv


@dataclass
class Fleet:
    root: Path
    peers: list[Peer]
    gateways: list[Gateway]
    users: dict[str, UserKey]
    ca: Path  # the gateways' CA (private key)
    host_key: str  # the gateways' shared SSH host key (public, OpenSSH's one-line form)

    def peer(self, index: int) -> Peer:
        return self.peers[index]

    def ssh(
        self,
        user: str,
        *command: str,
        gateway: int = 0,
        login: str = "console",
        host: str | None = None,
        port: int | None = None,
        timeout: float = 20,
    ) -> subprocess.CompletedProcess[str]:
        """The real OpenSSH client, as a user runs it (no pty)."""
        gw = self.gateways[gateway]
        argv = ssh_argv(
            host or gw.address,
            port or gw.consrv.port,
            self.users[user].private,
            login,
            *command,
            tty=False,
        )
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def listing(self, user: str = "alice", gateway: int = 0) -> dict[str, Any]:
        result = self.ssh(user, "list", "--json", gateway=gateway)
        assert result.returncode == 0, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def wait_complete(self, gateway: int = 0, timeout: float = 30) -> None:
        """Until the gateway's directory has every peer: none missing, each one's consoles."""
        seen: list[object] = []
        every = {peer.name for peer in self.peers}

        def complete() -> bool:
            data = self.listing(gateway=gateway)
            hosts = {row["host"] for row in data["consoles"]}
            seen[:] = [data["missing_peers"], every - hosts]
            return not data["missing_peers"] and every <= hosts  # (and any simulated ones)

        wait_until(
            complete,
            f"gateway {gateway} to know all {len(self.peers)} peers",
            timeout=timeout,
            interval=0.3,
            seen=lambda: seen,
        )

    def consoles_down(self) -> list[str]:
        """``console@peer`` of each console whose procServ has exited or has no child."""
        parents = live_parents()
        return [
            f"{name}@{peer.name}"
            + (" (procServ exited)" if not ps.running() else " (no child running)")
            for peer in self.peers
            for name, ps in peer.procservs.items()
            if not ps.running() or ps.pid not in parents
        ]

    def wait_consoles_up(self, timeout: float = 15) -> None:
        """Until every console's procServ runs its child (one a test restarted may be
        between two children for a second); `WaitTimeout` naming the ones that are not."""
        down: list[str] = []

        def up() -> bool:
            down[:] = self.consoles_down()
            return not down

        wait_until(up, "every console of the fleet up", timeout=timeout, interval=0.2,
                   seen=lambda: down)  # fmt: skip


def live_parents() -> set[int]:
    """The pids that have a live (not zombie) child: one pass over /proc."""
    parents = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if fields[0] not in ("Z", "X"):
                parents.add(int(fields[1]))
    return parents


def ssh_argv(host: str, port: int, key: Path, login: str, *command: str, tty: bool) -> list[str]:
    return [
        "ssh",
        "-tt" if tty else "-T",
        "-p",
        str(port),
        "-i",
        str(key),
        *SSH_OPTIONS,
        f"{login}@{host}",
        *command,
    ]


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def fleet_init(directory: Path, name: str = "gw", addresses: tuple[str, ...] = GATEWAYS) -> str:
    """The real `consrv fleet init`; its printed lines."""
    gateways = [f"--gateway-address={address}" for address in addresses]
    argv = [sys.executable, "-m", "consrv", "fleet", "init", "--dir", str(directory)]
    argv += ["--name", name, *gateways]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def peer_section(printed: str) -> dict[str, Any]:
    """The YAML `fleet init` printed for every peer."""
    text = printed.split("# --- every peer's config", 1)[1].split("\n", 1)[1]
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def peer_config(
    peer_root: Path,
    address: str,
    port: int,
    users: dict[str, UserKey],
    section: dict[str, Any],
    consoles: dict[str, Any],
) -> dict[str, Any]:
    return {
        "ssh": {
            "listen": [f"{address}:{port}"],
            "host_key": str(peer_root / "host_key"),
            "trusted_user_ca_keys": section["ssh"]["trusted_user_ca_keys"],
        },
        "log_dir": str(peer_root / "logs"),
        "log": {"record": True},
        "audit_log": str(peer_root / "audit.log"),
        "users": {**{k.name: {"keys": [k.public]} for k in users.values()}, **section["users"]},
        "defaults": {"rw": ["alice", "bob"], "ro": ["*"], "viewer_buffer": "64K"},
        "consoles": consoles,
        "fleet": section["fleet"],
    }


def gateway_config(
    root: Path, address: str, users: dict[str, UserKey], keys: Path
) -> dict[str, Any]:
    """A gateway's config; every gateway has the same host key (docs/fleet.md: one name).
    Its web view is on, over TLS as users open it (a certificate is written in `root`);
    its /metrics too (port 0: `Consrv.metrics_port`)."""
    self_signed(root)
    return {
        "ssh": {"listen": [f"{address}:0"], "host_key": str(keys / GATEWAY_HOST_KEY)},
        "log_dir": str(root / "logs"),
        "web": {
            "listen": f"{address}:0",
            "tls": {"cert": str(root / "web.crt"), "key": str(root / "web.key")},
        },
        "users": {k.name: {"keys": [k.public]} for k in users.values()},
        "metrics": {"listen": f"{address}:0"},
        "fleet": {
            "name": f"gw-{address}",
            "known_hosts": str(keys / "known_hosts"),
            "key": str(keys / "gateway_key"),
            "ca_key": str(keys / "gateway_ca"),
            "bind": address,
        },
    }


def consoles_of(index: int) -> dict[str, list[str] | None]:
    """Console name -> child command (None: the soft IOC) for peer number ``index``."""
    consoles: dict[str, list[str] | None] = {f"ioc-{index:02d}": CAT}
    if index in (0, 1):
        consoles[DUPLICATE] = CAT
    if index == 2:
        consoles[SOFT_IOC] = None
    if index == 3:
        consoles[SECRET] = CAT
    return consoles


def start_peers(
    root: Path,
    users: dict[str, UserKey],
    section: dict[str, Any],
    known_hosts: Path,
    count: int,
    peers: list[Peer],
    metrics: bool = False,
) -> list[Peer]:
    """``count`` peers, appended to ``peers`` as they are made (so a failure stops them);
    each with ``/metrics`` on its own address if ``metrics``."""
    lines = []
    for index in range(count):
        address = f"127.1.{index // 200}.{FIRST_PEER + index % 200}"
        peer_root = root / address
        peer_root.mkdir()
        host_key = write_new_key(peer_root / "host_key", f"host {address}")
        port = free_port(address)
        lines.append(f"[{address}]:{port} {host_key.export_public_key().decode().strip()}")
        consoles: dict[str, Any] = {}
        procservs = {}
        for name, command in consoles_of(index).items():
            ps = ProcServ(name, peer_root, command)
            ps.start()
            procservs[name] = ps
            consoles[name] = {"socket": str(ps.socket), "procserv_keys": "confirm"}
            if name == SECRET:
                consoles[name].update(rw=["alice"], ro=["alice"])
        config = peer_config(peer_root, address, port, users, section, consoles)
        metrics_port = free_port(address) if metrics else None
        if metrics_port is not None:
            config["metrics"] = {"listen": f"{address}:{metrics_port}"}
        peer = Peer(
            address,
            port,
            peer_root,
            Consrv(peer_root / "consrv.yaml", peer_root),
            config,
            procservs,
            metrics_port,
        )
        peer.write()
        peers.append(peer)
    known_hosts.write_text("\n".join(lines) + "\n")
    for peer in peers:  # staggered, all starting at once
        peer.consrv.spawn()
        time.sleep(0.05)
    for peer in peers:
        match = peer.consrv.wait_for_log(rb"ssh listening on [\d.]+:(\d+)", timeout=60)
        assert int(match.group(1)) == peer.port
        for ps in peer.procservs.values():
            ps.wait_ready(timeout=30)
    return peers


PeerSource = Callable[[list[Peer]], dict[str, Any]]


def listed(peers: list[Peer]) -> dict[str, Any]:
    """The gateways' peers as a list in their config."""
    return {"peers": [f"{p.name}:{p.port}" for p in peers]}


@contextlib.contextmanager
def running_fleet(
    root: Path,
    peers: int = PEERS,
    gateways: tuple[str, ...] = GATEWAYS,
    source: PeerSource = listed,
    metrics: bool = False,
) -> Iterator[Fleet]:
    """``peers`` real peers and a real gateway on each of ``gateways``, all stopped at the end.

    ``source(peers)``: how the gateways learn their peers (keys of their ``fleet:``
    section), called once the peers are up. ``metrics``: every peer serves /metrics."""
    users = {name: make_key(root, name) for name in ("alice", "bob", "olga")}
    keys = root / "gateway-keys"
    section = peer_section(fleet_init(keys, addresses=gateways))
    started: list[Peer] = []
    fronts: list[Gateway] = []
    try:
        started = start_peers(
            root, users, section, keys / "known_hosts", peers, started, metrics=metrics
        )
        host_key = write_new_key(keys / GATEWAY_HOST_KEY, "gateways of the fleet")
        for address in gateways:
            gw_root = root / f"gw-{address}"
            gw_root.mkdir()
            settings = gateway_config(gw_root, address, users, keys)
            settings["fleet"].update(source(started))
            config = write_config(gw_root / "consrv.yaml", settings)
            fronts.append(Gateway(address, gw_root, Consrv(config, gw_root)))
        for gateway in fronts:
            gateway.consrv.start(timeout=60)
        public = host_key.export_public_key().decode().strip()
        fleet = Fleet(root, started, fronts, users, keys / "gateway_ca", public)
        for index in range(len(fronts)):
            fleet.wait_complete(index, timeout=60 + peers)
        yield fleet
    finally:
        # Every process is stopped even when one of them does not stop in time (it is
        # killed; the first such failure is raised once all are gone).
        failures: list[BaseException] = []
        stops: list[Callable[[], object]] = [
            functools.partial(_stop, gateway.consrv) for gateway in fronts
        ]
        for peer in started:
            stops.append(functools.partial(_stop, peer.consrv))
            stops += [ps.stop for ps in peer.procservs.values()]
        for stop in stops:
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest, then raise it
                failures.append(exc)
        if failures:
            raise failures[0]


def _stop(consrv: Consrv) -> None:
    process = consrv.process
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGCONT)  # a test may have stopped it
    consrv.stop()
