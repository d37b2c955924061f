"""One benchmark run: the plan (full or quick), the order of the phases, progress lines.

Owns: what is run in which order: the direct baseline; per server (consrv,
sshd+socat, conserver) on the active consoles: keystrokes idle and under
load, fan-out to 1/10/50 viewers, logins; then idle scale on 200 and 1,000
consoles; and that every process started is stopped at the end, also on
Ctrl-C, SIGTERM or a failure.

Must not know: how any figure is measured (the measurement modules do) or
printed (``bench.report``).
"""

from __future__ import annotations

import contextlib
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

from bench import report
from bench.consoles import BURST, FLOOD, ActiveConsoles, DirectClient, IdleConsoles
from bench.consoles import write_burst_file as _write_burst_file
from bench.fanout import Burster, direct_baseline, fan_out, log_ingest
from bench.idle import down_scale, idle_scale
from bench.latency import Latency, keystrokes, keystrokes_under_load, median_of
from bench.logins import logins
from bench.procs import Reaper
from bench.servers import Conserver, Consrv, Floor, Server, SshdSocat
from consrv.demo import ensure_client_key

KEYSTROKE_GAP = 0.005


@dataclass(frozen=True)
class Plan:
    mode: str
    keystrokes: int = 1000
    keystroke_runs: int = 3  # each latency figure is the median of this many runs
    load_viewers: int = 20
    flood_rate: int = 1_000_000
    burst_bytes: int = 20_000_000
    fanout: tuple[int, ...] = (1, 10, 50)
    burst_reps: int = 3
    idle_sizes: tuple[int, ...] = (200, 1000)
    idle_window: float = 30.0
    logins: int = 100


FULL = Plan("full")
QUICK = Plan("quick", keystrokes=200, keystroke_runs=1, burst_bytes=5_000_000, fanout=(1, 10),
             burst_reps=1, idle_sizes=(50,), idle_window=5.0, logins=20)  # fmt: skip


class Progress:
    """Short progress lines with the time since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:5.0f}s] {text}", flush=True)


class Interrupted(Exception):
    """SIGTERM or SIGHUP arrived."""


def raise_file_limit(needed: int) -> None:
    """Raise the soft open-files limit (inherited by servers and procServ) towards the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < needed:
        print(f"warning: open files limited to {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")


class Bench:
    """The state of one run: work directory, keys, processes, results."""

    def __init__(
        self, plan: Plan, workdir: Path, only: tuple[str, ...], command: str,
        against: tuple[str, Path] | None = None, against_first: bool = False,
    ) -> None:  # fmt: skip
        self.plan, self.workdir, self.only, self.against = plan, workdir, only, against
        self.against_first = against_first
        self.reaper = Reaper()
        self.say = Progress()
        self.key = workdir / "id_bench"
        self.public_key = ensure_client_key(self.key, "bench")
        self.results = report.Results(
            mode=plan.mode, command=command, load_viewers=plan.load_viewers,
            flood_rate=plan.flood_rate, burst_bytes=plan.burst_bytes,
            burst_reps=plan.burst_reps, idle_window=plan.idle_window,
            keystrokes=plan.keystrokes, keystroke_runs=plan.keystroke_runs,
        )  # fmt: skip

    def servers(self) -> list[Server]:
        made: dict[str, Callable[[], Server]] = {
            report.CONSRV: lambda: Consrv(self.workdir / "consrv", self.reaper, self.key,
                                          self.public_key),
            report.SSHD: lambda: SshdSocat(self.workdir / "sshd", self.reaper, self.key,
                                           self.public_key),
            report.CONSERVER: lambda: Conserver(self.workdir / "conserver", self.reaper),
            report.FLOOR: lambda: Floor(self.workdir / "floor", self.reaper, self.key,
                                        self.public_key),
        }  # fmt: skip
        servers = [make() for label, make in made.items() if label in self.only]
        if self.against is not None:  # beside consrv: the two meet the same moment
            label, source = self.against
            other = Consrv(self.workdir / label, self.reaper, self.key, self.public_key,
                           source=(label, source))  # fmt: skip
            # The first server of a step meets freshly started procServs and follows
            # the burst baseline: alternate runs swap the two (bench/__main__.py).
            servers.insert(0 if self.against_first else int(report.CONSRV in self.only), other)
        return servers

    def server_results(self, label: str) -> report.ServerResults:
        return self.results.servers.setdefault(label, report.ServerResults())

    async def run(self) -> report.Results:
        versions = {s.label: s.version() for s in self.servers()}
        self.results.machine = report.machine(versions)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals)
            await self.active_phase()
            await self.idle_phase()
            nursery.cancel_scope.cancel()
        self.results.machine.append(f"load average at the end: {report.load_average()}")
        return self.results

    # -- keystrokes, fan-out, logins on three busy consoles ------------------
    async def active_phase(self) -> None:
        plan = self.plan
        burst_file = self.workdir / "burst.txt"
        size = _write_burst_file(burst_file, plan.burst_bytes)
        self.results.burst_bytes = size
        consoles = ActiveConsoles(self.workdir / "active", burst_file, plan.flood_rate)
        with consoles.running(self.reaper):
            flood, burst = (
                DirectClient(consoles.sockets()[FLOOD]),
                DirectClient(consoles.sockets()[BURST]),
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(flood.run)
                await nursery.start(burst.run)
                burster = Burster(burst, size)
                self.say(f"direct baseline: {plan.burst_reps} x {size / 1e6:g} MB")
                base = await direct_baseline(burster, plan.burst_reps)
                self.results.baseline = base
                self.say(f"  direct: {base.per_viewer_mb_s:.0f} MB/s ({base.seconds:.3f} s)")
                for server in self.servers():
                    await self.active_server(server, consoles, flood, burster)
                nursery.cancel_scope.cancel()

    async def active_server(
        self, server: Server, consoles: ActiveConsoles, flood: DirectClient, burster: Burster
    ) -> None:
        mine = self.server_results(server.label)
        mine.version = server.version()
        self.say(f"{server.label}: starting")
        try:
            if not await self._attempt(f"{server.label} start", self._start(server, consoles)):
                return
            label = server.label
            await self._attempt(f"{label} keystrokes idle", self._keys_idle(server, mine))
            await self._attempt(f"{label} keystrokes under load",
                                self._keys_load(server, mine, flood))  # fmt: skip
            if label == report.FLOOR:
                return  # a reference for latency only
            await self._attempt(f"{label} log only", self._log_only(server, mine, burster))
            for n in self.plan.fanout:
                await self._attempt(f"{label} fan-out to {n}",
                                    self._fan_out(server, mine, burster, n))  # fmt: skip
            await self._attempt(f"{label} logins", self._logins(server, mine))
        finally:
            server.stop()

    async def _attempt(self, what: str, step: Awaitable[str]) -> bool:
        """Run one measurement; on failure say so, note it in the report, and go on."""
        try:
            line = await step
        except Exception as exc:  # noqa: BLE001 - one failed figure must not lose the others
            reason = exception_summary(exc).replace("\n", "; ")[:300]
            self.say(f"  {what}: FAILED: {reason}")
            self.results.notes.append(f"{what} failed: {reason}")
            return False
        if line:
            self.say(f"  {line}")
        return True

    async def _start(self, server: Server, consoles: ActiveConsoles) -> str:
        server.start(consoles.sockets())
        await trio.sleep(1.0)  # connected to the consoles
        return ""

    async def _keys_idle(self, server: Server, mine: report.ServerResults) -> str:
        runs = [await keystrokes(server, self.reaper, self.plan.keystrokes, KEYSTROKE_GAP)
                for _ in range(self.plan.keystroke_runs)]  # fmt: skip
        lat = median_of(runs)
        mine.latency_idle = lat
        return f"{server.label} keystrokes idle: {_runs(lat)}"

    async def _keys_load(
        self, server: Server, mine: report.ServerResults, flood: DirectClient
    ) -> str:
        lat = await keystrokes_under_load(
            server, self.reaper, flood, viewers=self.plan.load_viewers,
            count=self.plan.keystrokes, gap=KEYSTROKE_GAP, runs=self.plan.keystroke_runs,
        )  # fmt: skip
        mine.latency_load = lat
        return (
            f"{server.label} keystrokes under load: {_runs(lat)}"
            f" (viewers got {lat.load_mb_per_s:.2f} MB/s)"
        )

    async def _fan_out(
        self, server: Server, mine: report.ServerResults, burster: Burster, n: int
    ) -> str:
        b = await fan_out(server, self.reaper, burster, n, self.plan.burst_reps)
        mine.bursts[n] = b
        return (
            f"{server.label} fan-out to {n}: {b.seconds:.2f} s, {b.per_viewer_mb_s:.1f} MB/s"
            f" per viewer, {b.cpu_s_per_gb:.2f} CPU-s/GB,"
            f" delivered {b.delivered:.1%}..{b.delivered_max:.1%}"
        )

    async def _log_only(self, server: Server, mine: report.ServerResults, burster: Burster) -> str:
        if server.label == report.SSHD:
            return ""  # holds no connection while nobody is attached: nothing to measure
        mine.log_ingest = await log_ingest(server, burster, self.plan.burst_reps)
        return f"{server.label} log only: {mine.log_ingest:.2f} CPU-s/GB"

    async def _logins(self, server: Server, mine: report.ServerResults) -> str:
        got = await logins(server, self.plan.logins)
        mine.logins = got
        return (
            f"{server.label} logins: {got.per_second:.1f}/s, {got.cpu_ms_per_login:.1f} ms CPU each"
        )

    # -- many consoles, nothing printing ---------------------------------------
    async def idle_phase(self) -> None:
        plan = self.plan
        largest = max(plan.idle_sizes)
        idle = IdleConsoles(self.workdir / "idle", largest)
        for n in plan.idle_sizes:
            for server in self.servers():
                if server.label != report.FLOOR:
                    await self._attempt(f"{server.label} down {n}", self._down(server, idle, n))
        self.say(f"idle scale: starting {largest} procServ instances")
        try:
            idle.start(self.reaper)
            with trio.fail_after(60.0 + largest / 5):
                await idle.wait_ready()
            for n in plan.idle_sizes:
                for server in self.servers():
                    if server.label == report.FLOOR:
                        continue  # a reference for keystrokes only
                    await self._attempt(f"{server.label} idle {n}", self._idle(server, idle, n))
        finally:
            idle.stop(self.reaper)

    async def _down(self, server: Server, idle: IdleConsoles, n: int) -> str:
        """``n`` consoles whose procServ is not running (before the idle ones start)."""
        cpu = await down_scale(server, idle.sockets(n), self.plan.idle_window)
        self.server_results(server.label).down[n] = cpu
        return f"{server.label} down {n}: CPU {cpu:.3f}%"

    async def _idle(self, server: Server, idle: IdleConsoles, n: int) -> str:
        got = await idle_scale(server, idle.sockets(n), idle.root, self.plan.idle_window)
        self.server_results(server.label).idle[n] = got
        return (
            f"{server.label} idle {n}: {got.connections} connections,"
            f" RSS {got.rss_mb:.1f} MB, CPU {got.cpu_percent:.3f}%"
        )


def _runs(lat: Latency) -> str:
    """p50 and p99 (medians), and each run's when there were several."""
    line = f"p50 {lat.p50:.3f} ms, p99 {lat.p99:.3f} ms"
    if len(lat.runs) > 1:
        line += " (runs: " + ", ".join(f"{p50:.3f}/{p99:.3f}" for p50, p99 in lat.runs) + ")"
    return line


async def _watch_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def cleanup(reaper: Reaper) -> Iterator[None]:
    """Whatever happens inside, every process the bench started is gone afterwards."""
    try:
        yield
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            reaper.kill_all()
        finally:
            signal.signal(signal.SIGINT, previous)


def run(
    plan: Plan, workdir: Path, only: tuple[str, ...], command: str,
    against: tuple[str, Path] | None = None, against_first: bool = False,
) -> report.Results:  # fmt: skip
    """Run the whole bench (blocking); every process is stopped before it returns.
    ``against``: (label, directory) of another revision's consrv package to run too,
    before this tree's consrv in each step if ``against_first``, else right after it."""
    raise_file_limit(4 * max(plan.idle_sizes) + 1024)
    bench = Bench(plan, workdir, only, command, against, against_first)
    with cleanup(bench.reaper):
        results = trio.run(bench.run)
    bench.say("done")
    return results


def exception_summary(exc: BaseException) -> str:
    """One line per leaf exception of a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(exception_summary(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
