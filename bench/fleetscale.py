"""A gateway in front of 200 to 1,000 peers: what it costs, measured (docs/performance.md).

``python -m bench.fleetscale [--peers 200,500,1000] [--real 20] [--keystrokes 300]``
from the repository root. For each size N: ``--real`` real `consrv serve` peers with
procServ ``cat`` consoles (tests/fleet/sim.py, as the fleet suite starts them), which
carry every measured session, and N - real simulated peers in one process
(bench/peersim.py: real SSH servers, the real feed, 5 consoles each), one real gateway
in front of all of them. Then, in this order:

- **RSS**: the gateway's VmRSS once its directory has every peer;
- **idle CPU**: the gateway's CPU over ``--idle`` seconds with nothing happening but
  keep-alives (% of one core);
- **list**: ``list --json`` through the gateway over one open asyncssh connection (the
  gateway's answer alone, no client set-up), median and p99 of 30;
- **keystrokes**: round trips on ``ssh -tt console@gw ioc-00`` against
  ``ssh -tt console@peer ioc-00`` (bench/keystroke.py), idle fleet, then with the
  simulated fleet changing ``--churn`` console states a second;
- **login CPU**: the gateway's CPU per proxied login (``ssh console@gw ioc-00 ...``,
  certificate minting included) against its CPU per local command login;
- **rebuilt**: the gateway restarted, until its directory has every peer again.

Prints one Markdown table, and writes ``--json`` for bench/fleetplot.py. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import trio
import trio_asyncio

from bench.fleet import keystrokes, rss_mb
from tests.fleet.sim import Fleet, Peer, running_fleet
from tests.harness import Consrv

GATEWAY = "127.0.0.50"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(consrv: Consrv) -> int:
    assert consrv.process is not None
    return consrv.process.pid


@contextlib.contextmanager
def simulated(root: Path, keys: Path, count: int, churn: float) -> Iterator[dict[str, Any]]:
    """bench/peersim.py with ``count`` peers, listening; stopped at the end."""
    out = root / "sim"
    out.mkdir()
    argv = [sys.executable, "-m", "bench.peersim", "--dir", str(out), "--keys", str(keys),
            "--peers", str(count), "--churn", str(churn), "--keepalive", "60"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)  # noqa: S603 - argv
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"peersim did not start: {line!r}")
        data: dict[str, Any] = json.loads((out / "peersim.json").read_text())
        data["known_hosts"] = (out / "known_hosts").read_text()
        data["pid"] = process.pid
        yield data
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()


def directory_whole(fleet: Fleet, expected: int, timeout: float) -> float:
    """Seconds until the gateway's ``list`` has consoles of ``expected`` hosts, none missing."""
    start = time.monotonic()
    seen: Any = None
    while time.monotonic() - start < timeout:
        result = fleet.ssh("alice", "list", "--json", timeout=60)
        if result.returncode == 0:
            data = json.loads(result.stdout)
            hosts = {row["host"] for row in data["consoles"]}
            seen = (len(hosts), len(data["missing_peers"]))
            if len(hosts) >= expected and not data["missing_peers"]:
                return time.monotonic() - start
        time.sleep(0.2)
    raise RuntimeError(f"the gateway's directory never had {expected} hosts: {seen}")


def list_answers(fleet: Fleet, count: int = 30) -> list[float]:
    """``list --json`` through the gateway on one open connection: the answer alone."""
    gateway = fleet.gateways[0]
    key = str(fleet.users["alice"].private)

    async def run() -> list[float]:
        times = []
        async with asyncssh.connect(
            GATEWAY, gateway.consrv.port, username="console", client_keys=[key],
            known_hosts=None, config=None,
        ) as conn:  # fmt: skip
            for _ in range(count):
                start = time.perf_counter()
                result = await conn.run("list --json", check=True)
                times.append(time.perf_counter() - start)
                assert result.stdout
        return times

    async def main() -> list[float]:
        async with trio_asyncio.open_loop():
            times: list[float] = await trio_asyncio.aio_as_trio(run)()
        return times

    return trio.run(main)


def login_cpu(fleet: Fleet, proxied: bool, count: int = 20) -> float:
    """The gateway's CPU-ms per login: a proxied command (``tail ioc-00``) or a local one."""
    pid = pid_of(fleet.gateways[0].consrv)
    command = ("tail", "ioc-00", "-n", "1") if proxied else ("version",)
    before = cpu_seconds(pid)
    for _ in range(count):
        result = fleet.ssh("alice", *command, timeout=30)
        assert result.returncode == 0, result.stderr
    return (cpu_seconds(pid) - before) / count * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(size: int, real: int, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"peers": size, "real": real}
    with tempfile.TemporaryDirectory(prefix="consrv-fleetscale-") as tmp:
        root = Path(tmp)
        with contextlib.ExitStack() as stack:
            sim: dict[str, Any] = {}

            def source(peers: list[Peer]) -> dict[str, Any]:
                keys = root / "gateway-keys"
                sim.update(stack.enter_context(simulated(root, keys, size - real, args.churn)))
                with (keys / "known_hosts").open("a") as known:
                    known.write(sim["known_hosts"])
                listed = [f"{p.name}:{p.port}" for p in peers]
                return {"peers": listed + [p["address"] for p in sim["peers"]]}

            start = time.monotonic()
            fleet = stack.enter_context(
                running_fleet(root, peers=real, gateways=(GATEWAY,), source=source)
            )
            directory_whole(fleet, size, timeout=120 + size / 5)
            row["up_s"] = time.monotonic() - start
            gateway = fleet.gateways[0]
            time.sleep(2)
            row["rss_mb"] = rss_mb(gateway.consrv)
            before = cpu_seconds(pid_of(gateway.consrv))
            time.sleep(args.idle)
            row["idle_cpu_pct"] = (cpu_seconds(pid_of(gateway.consrv)) - before) / args.idle * 100
            lists = list_answers(fleet)
            row["list_p50_ms"], row["list_p99_ms"] = (
                statistics.median(lists) * 1000, pct(lists, 0.99) * 1000,
            )  # fmt: skip
            via = keystrokes(fleet, args.keystrokes, direct=False)
            direct = keystrokes(fleet, args.keystrokes, direct=True)
            row["key_via_p50"], row["key_via_p99"] = statistics.median(via), pct(via, 0.99)
            row["key_direct_p50"], row["key_direct_p99"] = (
                statistics.median(direct), pct(direct, 0.99),
            )  # fmt: skip
            os.kill(sim["pid"], signal.SIGUSR1)  # churn on
            churned = keystrokes(fleet, args.keystrokes, direct=False)
            os.kill(sim["pid"], signal.SIGUSR1)  # churn off
            row["key_churn_p50"], row["key_churn_p99"] = (
                statistics.median(churned), pct(churned, 0.99),
            )  # fmt: skip
            row["login_proxied_ms"] = login_cpu(fleet, proxied=True)
            row["login_local_ms"] = login_cpu(fleet, proxied=False)
            gateway.consrv.stop()
            start = time.monotonic()
            gateway.consrv = Consrv(gateway.consrv.config, gateway.root).start(timeout=60)
            directory_whole(fleet, size, timeout=120)
            row["rebuilt_s"] = time.monotonic() - start  # from the new process' start
    return row


COLUMNS = [
    ("peers", "peers", "{}"),
    ("rss_mb", "gateway RSS (MB)", "{:.0f}"),
    ("idle_cpu_pct", "idle CPU (% core)", "{:.2f}"),
    ("rebuilt_s", "restart → whole (s)", "{:.1f}"),
    ("list_p50_ms", "list p50 / p99 (ms)", "{:.0f}"),
    ("key_via_p50", "keystroke p50 via / direct (ms)", "{:.2f}"),
    ("key_via_p99", "keystroke p99 via / direct (ms)", "{:.2f}"),
    ("key_churn_p99", "p99 via, churn (ms)", "{:.2f}"),
    ("login_proxied_ms", "CPU per login proxied / local (ms)", "{:.1f}"),
]


def table(rows: list[dict[str, Any]]) -> str:
    head = [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in rows:
        cells = [
            str(row["peers"]),
            f"{row['rss_mb']:.0f}",
            f"{row['idle_cpu_pct']:.2f}",
            f"{row['rebuilt_s']:.1f}",
            f"{row['list_p50_ms']:.0f} / {row['list_p99_ms']:.0f}",
            f"{row['key_via_p50']:.2f} / {row['key_direct_p50']:.2f}",
            f"{row['key_via_p99']:.2f} / {row['key_direct_p99']:.2f}",
            f"{row['key_churn_p99']:.2f}",
            f"{row['login_proxied_ms']:.1f} / {row['login_local_ms']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="200,500,1000", help="comma-separated fleet sizes")
    parser.add_argument("--real", type=int, default=20, help="real consrv peers in each")
    parser.add_argument("--keystrokes", type=int, default=300)
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU")
    parser.add_argument("--churn", type=float, default=100.0, help="changes a second")
    parser.add_argument("--json", type=Path, help="write the rows here (bench/fleetplot.py)")
    args = parser.parse_args(argv)
    rows = []
    for size in (int(n) for n in args.peers.split(",")):
        print(f"bench.fleetscale: {size} peers ({args.real} real)...", file=sys.stderr, flush=True)
        rows.append(measure(size, args.real, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
