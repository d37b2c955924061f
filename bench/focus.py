"""``python -m bench.focus``: one figure of the bench on one server, repeated, with its spread.

For before/after comparisons of one change, on a machine others share: it
measures server CPU time (what contention changes least), not wall-clock time.

    python -m bench.focus logins  [--count 200]          # CPU ms per login
    python -m bench.focus ingest  [--mb 50]              # log only: CPU-s per GB
    python -m bench.focus fanout  [--mb 20] [--viewers 1]  # CPU-s per GB delivered
    python -m bench.focus keys    [--count 200]          # keystroke round trip p50, ms
    ... [--reps 5] [--server consrv|conserver] [--pythonpath DIR] [--callgrind]
        [--py-spy FILE | --perf FILE]

``--pythonpath DIR`` runs consrv from another checkout's source tree (for
example ``git worktree add /tmp/base main``; ``DIR`` = ``/tmp/base``) with this
venv's libraries: both sides of a change measured on the same machine, minutes
apart. ``--callgrind`` runs consrv under valgrind's callgrind and reports
instructions instead of CPU time (millions per login, per MB of console
output, per MB delivered): the same figure whatever else runs on the machine
(valgrind makes consrv ~50 times slower; use a few repetitions, and keep the
dumps with ``--keep DIR`` for ``callgrind_annotate``). ``--py-spy FILE``
records a raw profile (``py-spy record -f raw``) of the server over all the
repetitions (py-spy goes into the venv by hand; it is not a
dependency). Run as root from the repository, after ``bench/run`` installed the
Debian packages once.

Owns: the order of one focused run (consoles, the server, the repetitions)
and printing each repetition, the median and the range.

Must not know: how a figure is measured (``bench.logins``, ``bench.fanout``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio

from bench.consoles import BURST, ActiveConsoles, DirectClient, write_burst_file
from bench.fanout import Burster, fan_out, log_ingest
from bench.latency import keystrokes
from bench.logins import login_once, logins
from bench.procs import Reaper
from bench.runner import cleanup, raise_file_limit
from bench.servers import Conserver, Consrv, Floor, Server
from consrv.demo import ensure_client_key

SETTLE = 1.0  # after the server starts: connected to its consoles
KEY_GAP = 0.005  # between keystrokes, as the bench types them


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.focus", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("figure", choices=("logins", "ingest", "fanout", "keys"))
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default: %(default)s)")
    parser.add_argument("--count", type=int, default=200, help="logins per repetition")
    parser.add_argument("--mb", type=float, default=20.0, help="burst size in MB")
    parser.add_argument("--viewers", type=int, default=1, help="fan-out viewers")
    parser.add_argument("--server", choices=("consrv", "conserver", "floor"), default="consrv")
    parser.add_argument("--pythonpath", type=Path, help="run consrv from this source tree")
    parser.add_argument("--py-spy", dest="py_spy", type=Path, help="write a raw py-spy profile")
    parser.add_argument("--perf", type=Path, help="write a perf.data (cpu-clock, call graphs)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--keep", type=Path, help="copy the callgrind dumps to this directory")
    args = parser.parse_args(argv)
    for name in ("pythonpath", "py_spy", "perf", "keep"):  # the run changes directory
        if getattr(args, name) is not None:
            setattr(args, name, getattr(args, name).resolve())
    return args


class Focus:
    """One focused run: the consoles, one server, the repetitions of one figure."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args, self.workdir = args, workdir
        self.reaper = Reaper()
        key = workdir / "id_bench"
        public = ensure_client_key(key, "bench")
        self.callgrind = Callgrind(workdir / "callgrind") if args.callgrind else None
        wrapper = self.callgrind.wrapper() if self.callgrind else []
        self.server: Server
        if args.server == "consrv":
            self.server = Consrv(workdir / "consrv", self.reaper, key, public, wrapper)
        elif args.server == "floor":  # keystrokes only
            self.server = Floor(workdir / "floor", self.reaper, key, public, wrapper)
        else:
            self.server = Conserver(workdir / "conserver", self.reaper)

    async def run(self) -> list[float]:
        burst_file = self.workdir / "burst.txt"
        size = write_burst_file(burst_file, int(self.args.mb * 1e6))
        consoles = ActiveConsoles(self.workdir / "active", burst_file, 1_000_000)
        with consoles.running(self.reaper):
            burst = DirectClient(consoles.sockets()[BURST])
            async with trio.open_nursery() as nursery:
                await nursery.start(burst.run)
                self.server.start(consoles.sockets())
                try:
                    await trio.sleep(SETTLE)
                    with self._profiled():
                        figures = await self._repeat(Burster(burst, size))
                finally:
                    self.server.stop()
                nursery.cancel_scope.cancel()
        return figures

    async def _repeat(self, burster: Burster) -> list[float]:
        args = self.args
        measure: Callable[[], Awaitable[float]]
        if args.figure == "logins":
            measure = self._logins
        elif args.figure == "ingest":

            async def measure() -> float:
                return await log_ingest(self.server, burster, 1)

        elif args.figure == "keys":

            async def measure() -> float:
                latency = await keystrokes(self.server, self.reaper, args.count, KEY_GAP)
                return latency.p50

        else:

            async def measure() -> float:
                burst = await fan_out(self.server, self.reaper, burster, args.viewers, 1)
                print(f"  {burst.per_viewer_mb_s:.1f} MB/s per viewer", flush=True)
                return burst.cpu_s_per_gb

        if self.callgrind is not None:
            measure = self._counted(measure, burster)
        figures = []
        for n in range(args.reps):
            figures.append(await measure())
            print(f"  {n + 1}/{args.reps}: {figures[-1]:.3f}", flush=True)
        return figures

    def _counted(
        self, measure: Callable[[], Awaitable[float]], burster: Burster
    ) -> Callable[[], Awaitable[float]]:
        """``measure``, but its figure is callgrind's instruction count (millions) per unit."""
        callgrind, args, pid = self.callgrind, self.args, self.server.pid
        assert callgrind is not None
        units = {"logins": args.count, "keys": args.count, "ingest": burster.size / 1e6,
                 "fanout": args.viewers * burster.size / 1e6}  # fmt: skip

        async def logins_only() -> float:  # the warm-up login and settling stay outside
            for _ in range(args.count):
                await login_once(self.server.login_argv(), self.server.label)
            return 0.0

        window = logins_only if args.figure == "logins" else measure

        async def counted() -> float:
            if args.figure == "logins":
                await login_once(self.server.login_argv(), self.server.label)
            await callgrind.zero(pid)
            await window()
            count = await callgrind.dump(pid)
            return count / 1e6 / float(units[args.figure])

        return counted

    async def _logins(self) -> float:
        return (await logins(self.server, self.args.count)).cpu_ms_per_login

    def _profiled(self) -> _Profile:
        pid, argv = str(self.server.pid), []
        if self.args.py_spy is not None:
            py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            argv = [py_spy, "record", "-r", "1000", "-f", "raw", "-o", str(self.args.py_spy),
                    "-p", pid]  # fmt: skip
        elif self.args.perf is not None:
            # cpu-clock: a software event, so it works where a VM hides the hardware counters.
            argv = ["perf", "record", "-e", "cpu-clock", "-F", "2000", "-g",
                    "-o", str(self.args.perf), "-p", pid]  # fmt: skip
        return _Profile(argv)


class Callgrind:
    """consrv under ``valgrind --tool=callgrind``: instructions counted between two calls."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.dumps: list[Path] = []

    def wrapper(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--dump-instr=no",
                f"--callgrind-out-file={self.directory}/callgrind.out.%p"]  # fmt: skip

    async def zero(self, pid: int) -> None:
        await trio.run_process(["callgrind_control", "-z", str(pid)], capture_stdout=True)

    async def dump(self, pid: int) -> int:
        """Dump the counts since `zero`: the instructions executed (``summary:``)."""
        before = set(self.directory.iterdir())
        await trio.run_process(["callgrind_control", "-d", str(pid)], capture_stdout=True)
        new = sorted(set(self.directory.iterdir()) - before)
        self.dumps.extend(new)
        for line in new[-1].read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no instruction count in {new[-1]}")


class _Profile:
    """A profiler attached to the server while the block runs (nothing without an argv)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> None:
        if self.argv:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL)  # noqa: S603

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


UNITS = {
    "logins": "CPU ms per login",
    "ingest": "CPU-s per GB",
    "fanout": "CPU-s per GB",
    "keys": "round trip p50 (ms)",
}
COUNTED = {
    "logins": "M instructions per login",
    "ingest": "M instructions per MB",
    "fanout": "M instructions per MB delivered",
    "keys": "M instructions per keystroke (round trip)",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.pythonpath is not None:
        os.environ["PYTHONPATH"] = str(args.pythonpath)
    raise_file_limit(4096)
    workdir = Path(tempfile.mkdtemp(prefix="consrv-focus-"))
    # ``python -m consrv`` puts its working directory first on sys.path, before
    # PYTHONPATH: from the repository it would run this checkout whatever --pythonpath says.
    # An empty one: the server's own directory (workdir/consrv) would be a package "consrv".
    (workdir / "cwd").mkdir()
    os.chdir(workdir / "cwd")
    focus = Focus(args, workdir)
    try:
        with cleanup(focus.reaper):
            figures = trio.run(focus.run)
        if args.keep is not None and focus.callgrind is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            for dump in focus.callgrind.dumps:
                shutil.copy(dump, args.keep / dump.name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    what = args.figure + (f" to {args.viewers}" if args.figure == "fanout" else "")
    unit = COUNTED[args.figure] if args.callgrind else UNITS[args.figure]
    print(
        f"{args.server} {what}: {unit} median {statistics.median(figures):.3f}"
        f" (range {min(figures):.3f}..{max(figures):.3f}, {len(figures)} reps)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
