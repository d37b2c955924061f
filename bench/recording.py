"""``python -m bench.recording``: what recording costs beside the log-only row.

    python -m bench.recording [--mb 100] [--reps 5]

Two consrv servers on the same procServ consoles, one with the log only (the
log-only ingest row), one with the log and the recording (``log.record: true``).
Each burst reaches both at once, so they ingest the same bytes side by side;
each server's CPU time is measured on its own process tree (what other load on a
shared machine changes least). Then the bytes on disk: the burst console's
recording against its plain log (same server, same bytes), and the same two
files for a slow IOC (one ~60-byte line per read, the worst case for the
per-event overhead) written in-process through `ConsoleLog` and `Recording`.

Owns: the pair of servers and the side-by-side repetitions; the size figures.
Must not know: how a console is recorded (consrv.recording).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import trio

from bench.consoles import BURST, ActiveConsoles, DirectClient, write_burst_file
from bench.fanout import BURST_TIMEOUT, SETTLE, Burster
from bench.procs import Reaper, tree_cpu_seconds
from bench.runner import cleanup, raise_file_limit
from bench.servers import Consrv
from consrv.consolelog import ConsoleLog
from consrv.demo import ensure_client_key
from consrv.recording import Recording

# Big enough that nothing is rotated away during a run: the sizes compare whole files.
MAX_SIZE = "8G"
SLOW_LINE = b"2026-12-06 03:40:00.123 rec-ioc: scan 0.1 s done, 42 records\r\n"
SLOW_LINES = 100_000


class LogOnly(Consrv):
    label = "log only"

    def config(self, consoles: Mapping[str, Path]) -> dict[str, object]:
        return {**super().config(consoles), "log": {"max_size": MAX_SIZE}}


class Recorded(Consrv):
    label = "log + recording"

    def config(self, consoles: Mapping[str, Path]) -> dict[str, object]:
        return {**super().config(consoles), "log": {"max_size": MAX_SIZE, "record": True}}


async def side_by_side(servers: Sequence[Consrv], burster: Burster) -> list[float]:
    """One burst into every server at once; each server's CPU-seconds per GB."""
    burster.arm()
    before = [tree_cpu_seconds(s.pid) for s in servers]
    await burster.fire()
    with trio.fail_after(BURST_TIMEOUT):
        await burster.direct.wait_seen()
        last = [tree_cpu_seconds(s.pid) for s in servers]
        while True:  # until every server has read all (less than 1 ms of CPU in SETTLE s)
            await trio.sleep(SETTLE)
            now = [tree_cpu_seconds(s.pid) for s in servers]
            if all(b - a < 0.001 for a, b in zip(last, now, strict=True)):
                break
            last = now
    return [(b - a) / (burster.expected / 1e9) for a, b in zip(before, last, strict=True)]


def disk_bytes(logs: Path, stem: str) -> tuple[int, int]:
    """(log bytes, recording bytes) of one console, over its current and rotated files."""
    log = sum(p.stat().st_size for p in logs.glob(f"{stem}.log*"))
    cast = sum(p.stat().st_size for p in logs.glob(f"{stem}.cast*"))
    return log, cast


def slow_ioc_bytes(directory: Path) -> tuple[int, int]:
    """(log, recording) bytes for SLOW_LINES lines written one line per read."""
    log = ConsoleLog(directory / "slow.log", max_size=1 << 40)
    rec = Recording(directory / "slow.cast", max_size=1 << 40)
    for _ in range(SLOW_LINES):
        log.write_output(SLOW_LINE)
        rec.write_output(SLOW_LINE)
    log.close()
    rec.close()
    return disk_bytes(directory, "slow")


async def run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    key = workdir / "id_bench"
    public = ensure_client_key(key, "bench")
    servers = [LogOnly(workdir / "plain", reaper, key, public),
               Recorded(workdir / "rec", reaper, key, public)]  # fmt: skip
    burst_file = workdir / "burst.txt"
    size = write_burst_file(burst_file, int(args.mb * 1e6))
    consoles = ActiveConsoles(workdir / "active", burst_file, 1_000_000)
    rows: list[list[float]] = []
    with consoles.running(reaper):
        burst = DirectClient(consoles.sockets()[BURST])
        async with trio.open_nursery() as nursery:
            await nursery.start(burst.run)
            for server in servers:
                server.start(consoles.sockets())
            burster = Burster(burst, size)  # one for the run: the child numbers the bursts
            try:
                await trio.sleep(1.0)
                for n in range(args.reps):
                    rows.append(await side_by_side(servers, burster))
                    plain, recorded = rows[-1]
                    print(f"  {n + 1}/{args.reps}: log only {plain:.2f}, log + recording "
                          f"{recorded:.2f} CPU-s/GB ({recorded / plain:.2f}x)",
                          flush=True)  # fmt: skip
                    await trio.sleep(SETTLE)
            finally:
                for server in servers:
                    server.stop()
            nursery.cancel_scope.cancel()
    report(rows, disk_bytes(workdir / "rec" / "logs", BURST), slow_ioc_bytes(workdir))


def report(rows: list[list[float]], burst: tuple[int, int], slow: tuple[int, int]) -> None:
    plain = statistics.median(r[0] for r in rows)
    recorded = statistics.median(r[1] for r in rows)
    ratios = [r[1] / r[0] for r in rows]
    print(f"CPU-s per GB ingested: log only {plain:.2f}, log + recording {recorded:.2f}; "
          f"ratio median {statistics.median(ratios):.2f} (range {min(ratios):.2f}-"
          f"{max(ratios):.2f}) over {len(rows)} bursts")  # fmt: skip
    for what, (log, cast) in (("burst (100-byte lines, big reads)", burst),
                              ("slow IOC (one line per read)", slow)):  # fmt: skip
        print(f"bytes on disk, {what}: log {log}, recording {cast} ({cast / log:.3f}x)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recording", description=__doc__)
    parser.add_argument("--mb", type=float, default=100.0, help="burst size in MB")
    parser.add_argument("--reps", type=int, default=5, help="bursts (default: %(default)s)")
    args = parser.parse_args(argv)
    raise_file_limit(4096)
    reaper = Reaper()
    with tempfile.TemporaryDirectory(prefix="consrv-bench-rec-") as tmp, cleanup(reaper):
        trio.run(run, args, Path(tmp), reaper)


if __name__ == "__main__":
    main()
