"""``python -m bench.metrics_scrape``: what one ``/metrics`` scrape costs with N consoles.

Runs consrv's own `Registry` with ``--consoles`` consoles (UNIX sockets that do
not exist yet: each console waits on inotify, and its series are there all the
same), serves the collectors consrv serves with ``serve_metrics`` on 127.0.0.1
port 0, and scrapes it ``--scrapes`` times, one after another, over a raw
loopback socket (``Connection: close`` after each). Prints the median and 90th
percentile wall time of a scrape and the process CPU time per scrape (server and
client are this one process). Measures whatever consrv is on the path: run it from
an older checkout's directory (``PYTHONPATH=that/checkout``) to compare.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.registry import Collector

from consrv.config import Endpoint, parse_config
from consrv.metrics import ConsoleCollector, ReloadStats, metrics_registry
from consrv.registry import Registry
from consrv.ssh.stats import SshStats

try:  # served by the web stack (since issue 23)
    from consrv.metrics import MetricsApp
    from consrv.web.metrics import serve_metrics
except ImportError:  # an older checkout: metrics/http.py's own server took the registry
    from consrv.metrics import serve_metrics  # type: ignore[attr-defined,no-redef]

    def MetricsApp(registry: CollectorRegistry) -> CollectorRegistry:  # type: ignore[no-redef]
        return registry


REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def scrape(port: int) -> int:
    """One scrape; the size of the answer in bytes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(REQUEST)
        data = bytearray()
        while chunk := await stream.receive_some(65536):
            data += chunk
    if not data.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"not a 200: {bytes(data[:80])!r}")
    return len(data)


async def measure(consoles: int, scrapes: int, directory: Path) -> None:
    sockets = {f"ioc-{i:04d}": {"socket": str(directory / f"ioc-{i:04d}")} for i in range(consoles)}
    config = parse_config({"consoles": sockets}, directory)
    registry = Registry(config)
    collectors: list[Collector] = [
        ConsoleCollector(registry),
        SshStats(("console", "observer")),
        ReloadStats(),
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        _, port = await nursery.start(
            serve_metrics, Endpoint("127.0.0.1", 0), MetricsApp(metrics_registry(*collectors))
        )
        size = await scrape(port)  # warm
        walls = []
        cpu = time.process_time()
        for _ in range(scrapes):
            started = time.perf_counter()
            await scrape(port)
            walls.append(time.perf_counter() - started)
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    deciles = statistics.quantiles(walls, n=10)
    print(
        f"{consoles} consoles, {scrapes} scrapes of {size} bytes: "
        f"median {statistics.median(walls) * 1000:.1f} ms, p90 {deciles[-1] * 1000:.1f} ms, "
        f"CPU {cpu / scrapes * 1000:.1f} ms a scrape"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_scrape", description=__doc__)
    parser.add_argument("--consoles", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args(argv)
    logging.getLogger("consrv").setLevel(logging.ERROR)  # not 1,000 "cannot connect"
    with tempfile.TemporaryDirectory(prefix="consrv-scrape-") as directory:
        trio.run(measure, args.consoles, args.scrapes, Path(directory))


if __name__ == "__main__":
    main()
