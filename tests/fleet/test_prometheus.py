"""Peers from the facility's Prometheus (Debian's real ``prometheus``): a gateway reads
the targets of one job from ``/api/v1/targets`` and follows them as they change."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from consrv.demo import stop_process
from consrv.fleet.targets import peers_of
from tests.fleet.sim import Fleet, Peer, free_port, running_fleet
from tests.waits import wait_until

pytestmark = pytest.mark.integration

JOB = "consrv"
PEERS = 3


class Prometheus:
    """prometheus on 127.0.0.1 with a static job whose targets are the peers."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port("127.0.0.1")
        self.config = root / "prometheus.yml"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self, peers: list[Peer]) -> None:
        """One target per peer: its (unused) metrics address, its SSH port as a label."""
        targets = [{"targets": [f"{p.name}:9"], "labels": {"ssh_port": str(p.port)}} for p in peers]
        config = {
            "global": {"scrape_interval": "1m"},
            "scrape_configs": [{"job_name": JOB, "static_configs": targets}],
        }
        self.config.write_text(yaml.safe_dump(config))

    def start(self, peers: list[Peer]) -> None:
        self.write(peers)
        argv = [
            "prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with (self.root / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, cwd=self.root)
        wait_until(
            self.ready,
            "prometheus to be ready",
            timeout=30,
            interval=0.2,
            seen=lambda: (self.root / "prometheus.log").read_text()[-500:],
        )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except OSError:
            return False

    def targets(self) -> Any:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as answer:  # noqa: S310
            return yaml.safe_load(answer.read())

    def reload(self, peers: list[Peer]) -> None:
        self.write(peers)
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@pytest.fixture(scope="module")
def prometheus_fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Fleet, Prometheus]]:
    root = tmp_path_factory.mktemp("promfleet")
    prometheus = Prometheus(root)

    def from_prometheus(peers: list[Peer]) -> dict[str, Any]:
        prometheus.start(peers)
        return {"prometheus": {"url": prometheus.url, "job": JOB, "interval": "1s"}}

    try:
        with running_fleet(
            root, peers=PEERS, gateways=("127.0.0.52",), source=from_prometheus
        ) as fleet:
            yield fleet, prometheus
    finally:
        prometheus.stop()


def test_the_gateway_follows_the_jobs_targets(prometheus_fleet: tuple[Fleet, Prometheus]) -> None:
    fleet, prometheus = prometheus_fleet
    assert peers_of(prometheus.targets(), JOB, 22) == [
        (p.name, f"{p.name}:{p.port}") for p in fleet.peers
    ]
    hosts = {row["host"] for row in fleet.listing()["consoles"]}
    assert hosts == {p.name for p in fleet.peers}
    prometheus.reload(fleet.peers[:-1])  # the last host is no longer a target
    gone = fleet.peers[-1].name

    def dropped() -> bool:
        data = fleet.listing()
        return gone not in {row["host"] for row in data["consoles"]} and not data["missing_peers"]

    try:
        wait_until(
            dropped,
            f"{gone} dropped from the gateway after Prometheus dropped it",
            timeout=20,
            interval=0.3,
        )
    finally:
        prometheus.reload(fleet.peers)
    every = {p.name for p in fleet.peers}
    wait_until(
        lambda: {row["host"] for row in fleet.listing()["consoles"]} == every,
        f"{gone} back in the gateway after Prometheus lists it again",
        timeout=20,
    )
