"""Keystroke round trips through a server, idle and while viewers watch a flooding console.

Owns: running ``keystroke.py`` (a process of its own) against a server's
interactive client on the echo console, and the load around it: ``load_viewers``
read-only viewers on the flood console while its child prints ~1 MB/s.

Must not know: how a server is configured (it uses the `Server` protocol).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from bench.clients import ViewerGroup
from bench.consoles import ECHO, FLOOD, DirectClient
from bench.procs import Reaper
from bench.servers import Server

KEYSTROKE = Path(__file__).with_name("keystroke.py")
SETTLE = 1.0  # seconds of flood before the keystrokes start


@dataclass(frozen=True)
class Latency:
    """Round-trip times of single keystrokes, in milliseconds."""

    count: int  # keystrokes in each run
    p50: float  # the median over the runs of each run's p50
    p99: float  # the median over the runs of each run's p99
    load_mb_per_s: float = 0.0  # what each load viewer received meanwhile (median)
    runs: tuple[tuple[float, float], ...] = ()  # (p50, p99) of every run


def median_of(runs: list[Latency]) -> Latency:
    """One figure from repeated runs: the median of their p50s and of their p99s."""
    return Latency(
        runs[0].count,
        statistics.median(r.p50 for r in runs),
        statistics.median(r.p99 for r in runs),
        statistics.median(r.load_mb_per_s for r in runs),
        tuple((r.p50, r.p99) for r in runs),
    )


def _percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


async def keystrokes(server: Server, reaper: Reaper, count: int, gap: float) -> Latency:
    """``count`` keystrokes on the echo console through ``server``'s interactive client."""
    argv = [sys.executable, str(KEYSTROKE), "--count", str(count), "--gap", str(gap),
            "--", *server.interactive_argv(ECHO)]  # fmt: skip
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, start_new_session=True
    )
    reaper.add(process.pid)
    assert process.stdout is not None
    output = bytearray()
    try:
        while chunk := await process.stdout.receive_some(65536):
            output += chunk
    except BaseException:
        process.terminate()  # it stops its client on SIGTERM; the reaper has the rest
        raise
    finally:
        with trio.CancelScope(shield=True):
            await process.wait()
    result = json.loads(output or b'{"error": "no output"}')
    if "error" in result:
        raise RuntimeError(f"{server.label} keystrokes: {result['error']}")
    samples = sorted(us / 1000 for us in result["samples_us"])
    return Latency(len(samples), _percentile(samples, 0.5), _percentile(samples, 0.99))


async def keystrokes_under_load(
    server: Server,
    reaper: Reaper,
    flood: DirectClient,
    *,
    viewers: int,
    count: int,
    gap: float,
    runs: int = 1,
) -> Latency:
    """As `keystrokes` (``runs`` times, the median), while ``viewers`` read-only
    clients watch the flood console."""
    group = ViewerGroup(server, FLOOD, viewers)
    async with trio.open_nursery() as nursery:
        try:
            await group.connect(nursery, reaper)
            await flood.send(b"g")
            await trio.sleep(SETTLE)
            measured = []
            for _ in range(runs):
                for viewer in group.viewers:
                    viewer.expect(b"")
                start = time.perf_counter()
                latency = await keystrokes(server, reaper, count, gap)
                elapsed = time.perf_counter() - start
                rate = statistics.median(v.received for v in group.viewers) / elapsed / 1e6
                measured.append(Latency(latency.count, latency.p50, latency.p99, rate))
        finally:
            with trio.CancelScope(shield=True):
                await flood.send(b"s")
            group.close(reaper)
    return median_of(measured)
