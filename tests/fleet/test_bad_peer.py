"""A bad peer costs a gateway a bounded amount and no other peer's freshness (issue 29).

A real gateway (`consrv serve`) in front of simulated peers (bench/peersim.py: real SSH
servers speaking the real feed): the first announces 10,000 consoles, the second
changes a console as fast as it can, the others are quiet. The gateway keeps at most
`MAX_CONSOLES_PER_PEER` of the first's consoles, stays under a memory bound, and a
change on a quiet peer still reaches its ``list`` within a second or two.

Policy: loopback only (127.2.0.x for the simulated peers, 127.0.0.52 for the gateway),
port 0; every wait bounded and named; the gateway and the simulator are stopped here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consrv.fleet.directory import MAX_CONSOLES_PER_PEER
from tests.fleet.sim import fleet_init, gateway_config, ssh_argv
from tests.harness import Consrv, make_key, write_config
from tests.waits import wait_until

pytestmark = pytest.mark.integration

GATEWAY = "127.0.0.52"
PEERS = 6
FLOOD_CONSOLES = 10_000
RSS_BOUND_MB = 250  # a 5-peer gateway is about 70 MB; 10,000 kept entries would be more


class World:
    def __init__(self, root: Path, gateway: Consrv, sim: subprocess.Popen[str], key: Path):
        self.root, self.gateway, self.sim, self.key = root, gateway, sim, key

    def listing(self) -> dict[str, Any]:
        argv = ssh_argv(GATEWAY, self.gateway.port, self.key, "console", "list", "--json",
                        tty=False)  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def rss_mb(self) -> float:
        assert self.gateway.process is not None
        status = Path(f"/proc/{self.gateway.process.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
        return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("badpeer")
    keys = root / "gateway-keys"
    fleet_init(keys, addresses=(GATEWAY,))
    sim_dir = root / "sim"
    sim_dir.mkdir()
    argv = [sys.executable, "-m", "bench.peersim", "--dir", str(sim_dir), "--keys", str(keys),
            "--peers", str(PEERS), "--flood-consoles", str(FLOOD_CONSOLES),
            "--flood-interval", "0.001", "--keepalive", "60"]  # fmt: skip
    sim = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    gateway: Consrv | None = None
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert "listening" in line, f"peersim did not start: {line!r}"
        peers = json.loads((sim_dir / "peersim.json").read_text())["peers"]
        (keys / "known_hosts").write_text((sim_dir / "known_hosts").read_text())
        alice = make_key(root, "alice")
        gw_root = root / "gw"
        gw_root.mkdir()
        settings = gateway_config(gw_root, GATEWAY, {"alice": alice}, keys)
        settings["fleet"]["peers"] = [peer["address"] for peer in peers]
        gateway = Consrv(write_config(gw_root / "consrv.yaml", settings), gw_root).start(60)
        yield World(root, gateway, sim, alice.private)
    finally:
        if gateway is not None:
            gateway.stop()
        sim.terminate()
        sim.wait(timeout=10)
        if sim.stdout is not None:
            sim.stdout.close()


def test_a_peer_announcing_10000_consoles_costs_a_bounded_directory(world: World) -> None:
    counts: dict[str, int] = {}

    def every_peer_listed() -> bool:
        data = world.listing()
        counts.clear()
        for row in data["consoles"]:
            counts[row["host"]] = counts.get(row["host"], 0) + 1
        return len(counts) == PEERS and not data["missing_peers"]

    wait_until(every_peer_listed, f"all {PEERS} simulated peers listed", timeout=60,
               interval=0.5, seen=lambda: counts)  # fmt: skip
    assert counts["127.2.0.10"] == MAX_CONSOLES_PER_PEER  # the first: 10,000 announced
    assert sorted(counts.values())[:-1] == [5] * (PEERS - 1)
    assert world.rss_mb() < RSS_BOUND_MB


def test_a_flooding_peer_does_not_delay_another_peers_change(world: World) -> None:
    """While the second peer floods, the last one's console stops: listed within 2 s."""
    last = f"sim-{PEERS - 1:04d}-0"

    def state() -> str:
        rows = [row for row in world.listing()["consoles"] if row["name"] == last]
        return str(rows[0]["state"]) if rows else "absent"

    wait_until(lambda: state() == "up", f"{last} listed up", timeout=60, interval=0.5)
    time.sleep(2)  # the flood well under way (2,000 changes a second)
    world.sim.send_signal(signal.SIGUSR2)
    start = time.monotonic()
    wait_until(lambda: state() == "child-down", f"{last} listed child-down", timeout=10,
               interval=0.1)  # fmt: skip
    assert time.monotonic() - start < 2.0 + 1.0  # 2 s, and one `ssh list` round trip
    assert world.rss_mb() < RSS_BOUND_MB
