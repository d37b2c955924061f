"""Fan-out: one console bursting a file to N read-only viewers, and the direct baseline.

Owns: the burst protocol (the bench's direct client sends the trigger byte to
procServ; the burst child cats the file and a numbered end marker), the timing
(trigger -> each viewer's end marker), the server CPU over the burst, and what
counts as done: every viewer saw the marker, or, for a viewer that lost data
(a server may drop for a slow viewer), the burst is over and it has been quiet
for `QUIET` s.

Must not know: how a server is configured (it uses the `Server` protocol).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import trio

from bench.clients import Viewer, ViewerGroup
from bench.consoles import BURST, DirectClient, burst_marker
from bench.procs import MachineCpu, Reaper, tree_cpu_seconds
from bench.servers import Server

QUIET = 2.0
RUNAWAY = 2
BURST_TIMEOUT = 300.0
POLL = 0.02
SETTLE = 0.5


@dataclass(frozen=True)
class Burst:
    """One burst (or the median of several) as N viewers saw it."""

    viewers: int
    seconds: float  # trigger -> the last viewer done
    per_viewer_mb_s: float  # median over viewers of bytes / own completion time
    aggregate_mb_s: float  # all bytes delivered / seconds
    cpu_s_per_gb: float  # server CPU-seconds per GB delivered (0 for the direct baseline)
    delivered: float  # the smallest fraction of the burst a viewer received
    delivered_max: float  # the largest (above 1: a server sent some data twice)
    machine_busy: float  # all cores, every process (0..1): 1 means CPU-bound


class Burster:
    """Triggers bursts on the burst console and numbers them (the child counts too)."""

    def __init__(self, direct: DirectClient, size: int) -> None:
        self.direct, self.size = direct, size
        self.count = 0

    def arm(self) -> bytes:
        """The marker that will end the next burst; the direct client watches for it."""
        self.count += 1
        marker = burst_marker(self.count)
        self.direct.expect(marker)
        return marker

    async def fire(self) -> float:
        """Send the trigger; the time it was sent (``time.perf_counter``)."""
        start = time.perf_counter()
        await self.direct.send(b"x")
        return start

    @property
    def expected(self) -> int:
        return self.size + len(burst_marker(self.count))


async def direct_baseline(burster: Burster, reps: int) -> Burst:
    """The burst read by the bench's plain socket client alone: the pipeline's limit."""
    runs = []
    for _ in range(reps):
        burster.arm()
        machine = MachineCpu()
        start = await burster.fire()
        with trio.fail_after(120):
            seen = await burster.direct.wait_seen()
        seconds = seen - start
        rate = burster.expected / seconds / 1e6
        runs.append(Burst(1, seconds, rate, rate, 0.0, 1.0, 1.0, machine.busy()))
        await trio.sleep(SETTLE)
    return median_burst(runs)


async def fan_out(server: Server, reaper: Reaper, burster: Burster, viewers: int,
                  reps: int) -> Burst:  # fmt: skip
    """``reps`` bursts to ``viewers`` read-only clients of ``server``; the median."""
    group = ViewerGroup(server, BURST, viewers)
    runs = []
    async with trio.open_nursery() as nursery:
        try:
            await group.connect(nursery, reaper)
            await trio.sleep(SETTLE)
            for _ in range(reps):
                runs.append(await _one_burst(server, burster, group.viewers))
                await trio.sleep(SETTLE)
        finally:
            group.close(reaper)
    return median_burst(runs)


async def _one_burst(server: Server, burster: Burster, viewers: list[Viewer]) -> Burst:
    marker = burster.arm()
    for viewer in viewers:
        viewer.expect(marker)
    cpu_before, machine = tree_cpu_seconds(server.pid), MachineCpu()
    start = await burster.fire()
    with trio.fail_after(BURST_TIMEOUT):
        await _wait_done(burster.direct, viewers, burster.expected)
    cpu, busy = tree_cpu_seconds(server.pid) - cpu_before, machine.busy()
    ends = [(v.seen_at or v.last_data_at) - start for v in viewers]
    # Bytes beyond the burst's size are data sent twice: not counted as delivered.
    useful = [min(v.received, burster.expected) for v in viewers]
    total = sum(useful)
    return Burst(
        viewers=len(viewers),
        seconds=max(ends),
        per_viewer_mb_s=statistics.median(
            n / end / 1e6 for n, end in zip(useful, ends, strict=True)
        ),
        aggregate_mb_s=total / max(ends) / 1e6,
        cpu_s_per_gb=cpu / (total / 1e9) if total else 0.0,
        delivered=min(v.received for v in viewers) / burster.expected,
        delivered_max=max(v.received for v in viewers) / burster.expected,
        machine_busy=busy,
    )


async def _wait_done(direct: DirectClient, viewers: list[Viewer], expected: int) -> None:
    """Until every viewer saw the marker, or the burst is over and the rest are quiet.

    A viewer that has received `RUNAWAY` times the burst is done too: a server that
    sends data more than once (conserver did, once, under load) must not hang the run.
    """
    while True:
        waiting = [v for v in viewers if v.seen_at is None and v.received < RUNAWAY * expected]
        if not waiting:
            return
        now = time.perf_counter()
        if direct.seen_at and all(now - max(v.last_data_at, direct.seen_at) > QUIET
                                  for v in waiting):  # fmt: skip
            return
        await trio.sleep(POLL)


async def log_ingest(server: Server, burster: Burster, reps: int) -> float:
    """Server CPU-seconds per GB for a burst with nobody attached (the median of ``reps``):
    what an IOC printing as fast as it can costs at 3 a.m., with only the log on.

    Done when the direct client saw the end marker and the server has used less
    than 1 ms of CPU in the last `SETTLE` s (nothing else tells when it has read all).
    """
    runs = []
    for _ in range(reps):
        burster.arm()
        cpu_before = tree_cpu_seconds(server.pid)
        await burster.fire()
        with trio.fail_after(BURST_TIMEOUT):
            await burster.direct.wait_seen()
            last = tree_cpu_seconds(server.pid)
            while True:
                await trio.sleep(SETTLE)
                now = tree_cpu_seconds(server.pid)
                if now - last < 0.001:
                    break
                last = now
        runs.append((last - cpu_before) / (burster.expected / 1e9))
        await trio.sleep(SETTLE)
    return statistics.median(runs)


def median_burst(runs: list[Burst]) -> Burst:
    """Each figure's median over the runs."""

    def med(values: list[float]) -> float:
        return statistics.median(values)

    return Burst(
        viewers=runs[0].viewers,
        seconds=med([r.seconds for r in runs]),
        per_viewer_mb_s=med([r.per_viewer_mb_s for r in runs]),
        aggregate_mb_s=med([r.aggregate_mb_s for r in runs]),
        cpu_s_per_gb=med([r.cpu_s_per_gb for r in runs]),
        delivered=min(r.delivered for r in runs),
        delivered_max=max(r.delivered_max for r in runs),
        machine_busy=med([r.machine_busy for r in runs]),
    )
