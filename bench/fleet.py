"""The fleet bench: a gateway in front of N real peers, measured (docs/performance.md).

``python -m bench.fleet [--peers 20,100,200] [--keystrokes 200]`` from the repository
root. For each N: N real `consrv serve` peers on their own loopback addresses with a
procServ ``cat`` console each, one gateway (tests/fleet/sim.py starts them, as the
fleet suite does); then

- ``list``: the OpenSSH client's ``list --json`` through the gateway (the whole fleet,
  from the directory) against ``list --json`` on one peer (one host), median of 10
  (both include ssh's own connection set-up, which dominates);
- the gateway's memory (VmRSS) with N peers linked;
- convergence: a peer SIGKILLed and started again until the gateway lists it again; the
  gateway restarted until its directory is whole again;
- keystroke round trips (bench/keystroke.py: a letter typed, the same letter seen) on
  ``ssh -tt console@gw ioc-00`` against ``ssh -tt console@peer ioc-00``.

Prints one Markdown table. Not a test: nothing is asserted beyond "it ran".
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.fleet.sim import Fleet, running_fleet, ssh_argv
from tests.harness import Consrv
from tests.waits import wait_until

KEYSTROKE = Path(__file__).resolve().parent / "keystroke.py"


def timed(run: Callable[[], object]) -> float:
    start = time.monotonic()
    run()
    return time.monotonic() - start


def list_times(fleet: Fleet, direct: bool) -> list[float]:
    peer = fleet.peers[0]
    where = {"host": peer.name, "port": peer.port} if direct else {}

    def once() -> None:
        result = fleet.ssh("alice", "list", "--json", **where)  # type: ignore[arg-type]
        assert result.returncode == 0, result.stderr

    return [timed(once) for _ in range(10)]


def rss_mb(consrv: Consrv) -> float:
    assert consrv.process is not None
    for line in Path(f"/proc/{consrv.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def keystrokes(fleet: Fleet, count: int, direct: bool) -> list[float]:
    gateway, peer, key = fleet.gateways[0], fleet.peers[0], fleet.users["alice"].private
    host, port = (peer.name, peer.port) if direct else (gateway.address, gateway.consrv.port)
    client = ssh_argv(host, port, key, "console", "ioc-00", tty=True)
    argv = [sys.executable, str(KEYSTROKE), "--count", str(count), "--", *client]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - an argv list
    data = json.loads(result.stdout or "{}")
    if "samples_us" not in data:
        raise RuntimeError(f"keystroke: {data.get('error')} {result.stderr[-300:]}")
    return [sample / 1000 for sample in data["samples_us"]]


def peer_restart(fleet: Fleet) -> float:
    peer = fleet.peers[-1]
    assert peer.consrv.process is not None
    peer.consrv.process.kill()
    peer.consrv.process.wait()
    wait_until(lambda: peer.name in [m["host"] for m in fleet.listing()["missing_peers"]],
               f"{peer.name} (killed) missing", timeout=30)  # fmt: skip
    start = time.monotonic()
    peer.consrv = Consrv(peer.config_path, peer.root).start(timeout=60)
    fleet.wait_complete(timeout=120)
    return time.monotonic() - start


def gateway_restart(fleet: Fleet, peers: int) -> float:
    gateway = fleet.gateways[0]
    gateway.consrv.stop()
    start = time.monotonic()
    gateway.consrv = Consrv(gateway.consrv.config, gateway.root).start(timeout=60)
    fleet.wait_complete(timeout=60 + peers)
    return time.monotonic() - start


def p50(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def measure(peers: int, count: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="consrv-fleet-bench-") as root:
        start = time.monotonic()
        with running_fleet(Path(root), peers=peers, gateways=("127.0.0.50",)) as fleet:
            started = time.monotonic() - start
            via, direct = list_times(fleet, direct=False), list_times(fleet, direct=True)
            memory = rss_mb(fleet.gateways[0].consrv)
            peer_back = peer_restart(fleet)
            rebuilt = gateway_restart(fleet, peers)
            keys_via = keystrokes(fleet, count, direct=False)
            keys_direct = keystrokes(fleet, count, direct=True)
    ms = statistics.median
    return [
        str(peers), f"{started:.0f} s", p50(via), p50(direct), f"{memory:.0f} MB",
        f"{peer_back:.1f} s", f"{rebuilt:.1f} s",
        f"{ms(keys_via):.2f} / {ms(keys_direct):.2f} ms",
    ]  # fmt: skip


HEADER = ["peers", "fleet up in", "list via gateway (p50)", "list on one peer (p50)",
          "gateway RSS", "peer restart → listed", "gateway restart → whole",
          "keystroke p50 via gateway / direct"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="20,100", help="comma-separated fleet sizes")
    parser.add_argument("--keystrokes", type=int, default=200)
    args = parser.parse_args(argv)
    rows = [HEADER, ["---"] * len(HEADER)]
    for size in (int(n) for n in args.peers.split(",")):
        print(f"bench.fleet: {size} peers...", file=sys.stderr, flush=True)
        rows.append(measure(size, args.keystrokes))
        print("| " + " | ".join(rows[-1]) + " |", file=sys.stderr, flush=True)
    print("\n".join("| " + " | ".join(row) + " |" for row in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
