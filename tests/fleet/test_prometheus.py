"""The facility's Prometheus (Debian's real ``prometheus``), scraping every peer's
/metrics: a gateway reads the targets of one job from ``/api/v1/targets`` and follows
them as they change; the PromQL of docs/fleet.md answers "where does IOC X run and
who is on it" for the whole fleet."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from consrv.demo import stop_process
from consrv.fleet.targets import peers_of
from tests.fleet.sim import DUPLICATE, Fleet, Peer, free_port, running_fleet, ssh_argv
from tests.sshclients import PtySSH
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
        """One target per peer: its metrics address, its SSH port as a label."""
        targets = [
            {"targets": [f"{p.name}:{p.metrics_port}"], "labels": {"ssh_port": str(p.port)}}
            for p in peers
        ]
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
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

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result: one ``{"metric": labels, "value": [t, "v"]}`` a series."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
            data = json.loads(answer.read())
        assert data["status"] == "success", data
        result: list[dict[str, Any]] = data["data"]["result"]
        return result

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
            root, peers=PEERS, gateways=("127.0.0.52",), source=from_prometheus, metrics=True
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


def promql(console: str) -> dict[str, str]:
    """The queries of docs/fleet.md (checked there word for word) for one console."""
    queries = {
        "where": 'consrv_console_info{console="NAME"}',
        "who": 'sum by (instance, role) (consrv_console_clients{console="NAME"})',
        "writer": 'consrv_console_writer{console="NAME"} == 1',
        "twice": "count by (console) (consrv_console_info) > 1",
    }
    docs = (Path(__file__).parents[2] / "docs" / "fleet.md").read_text()
    for query in queries.values():
        assert query.replace("NAME", "vac-ioc") in docs, query
    return {what: q.replace("NAME", console) for what, q in queries.items()}


def host(series: dict[str, Any]) -> str:
    instance: str = series["metric"]["instance"]
    return instance.rpartition(":")[0]


async def test_promql_says_where_an_ioc_runs_and_who_is_on_it(
    prometheus_fleet: tuple[Fleet, Prometheus],
) -> None:
    fleet, prometheus = prometheus_fleet
    peer, name = fleet.peers[1], "ioc-01"
    queries = promql(name)
    argv = ssh_argv(fleet.gateways[0].address, fleet.gateways[0].consrv.port,
                    fleet.users["bob"].private, "console", name, tty=True)  # fmt: skip
    client = await PtySSH(argv).start()
    try:
        await client.expect(rb"you write")  # bob, through the gateway, holds the lock
        seen: dict[str, list[dict[str, Any]]] = {}

        def answered() -> bool:
            for what in ("who", "writer"):
                seen[what] = prometheus.query(queries[what])
            who = {(host(s), s["metric"]["role"], s["value"][1]) for s in seen["who"]}
            return (peer.name, "rw", "1") in who and len(seen["writer"]) == 1

        await trio.to_thread.run_sync(
            lambda: wait_until(
                answered,
                f"Prometheus to see bob on {name} (it scrapes every 1 s)",
                timeout=20,
                interval=0.5,
                seen=lambda: seen,
            )
        )
        where = prometheus.query(queries["where"])
        assert [host(s) for s in where] == [peer.name]  # one host runs it: its own
        (writer,) = prometheus.query(queries["writer"])
        assert host(writer) == peer.name
        twice = prometheus.query(promql(DUPLICATE)["where"])
        assert sorted(host(s) for s in twice) == sorted(p.name for p in fleet.peers[:2])
        dups = prometheus.query(queries["twice"])
        assert [(s["metric"]["console"], s["value"][1]) for s in dups] == [(DUPLICATE, "2")]
    finally:
        await client.aclose()
