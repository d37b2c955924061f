"""``python -m bench.pva``: what the PV server costs (docs/pva.md, docs/performance.md).

With N idle procServ consoles (children that never print) and one echo console:

- idle: consrv's CPU (% of one core over a window) and memory (RSS, PSS), without
  and with a ``pva:`` section, nobody reading the PVs;
- reload: with the PV server on, 100 consoles removed, then added again, by SIGHUP:
  the time from the signal until a pvAccess client sees the host's ``Consoles`` PV
  with the new count (every console's PVs removed or made);
- client storm: keystroke round trips (bench/keystroke.py through ``ssh -tt``, on the
  echo console) with the PV server on and nobody reading, then during a storm: a
  client process holding 200 monitors (each console's ``SilentFor``: the PVs posted
  once a second while watched) and connecting, reading one PV and disconnecting
  again as fast as it can; p50 and p99 of each, and the storm's connections/s. Two
  consrv run side by side on the same consoles, one with the PV server in its own
  process (``pva.own_process``, the default) and one with it in consrv's; their
  quiet and storm runs are interleaved (the order swapped each run), so the shared
  machine's load falls on both alike; the load average is printed with each run.

    python -m bench.pva [--consoles 1000] [--window 30] [--keystrokes 1000] [--runs 3]
                        [--storm-only]

Run as root from the repository, after ``bench/run`` installed the Debian packages once.
Owns: the ``pva:`` config of the benchmarked consrv and the storm client.
Must not know: the other servers (consrv only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio
from p4p.client.thread import Context

from bench.consoles import ECHO, ECHO_COMMAND, IdleConsoles
from bench.idle import SETTLE, Idle, idle_scale, wait_connections
from bench.latency import Latency, keystrokes, median_of
from bench.procs import CLOCK_TICK, Reaper, read_stat, tree_cpu_seconds
from bench.runner import cleanup, raise_file_limit
from bench.servers import Consrv
from bench.servers.base import wait_log
from consrv.demo import ProcServ, ensure_client_key

HOST = "benchhost"
STORM_MONITORS = 200
RELOAD_CHANGE = 100
KEYSTROKE_GAP = 0.005
STORM_SETTLE = 10.0  # seconds for the storm's monitors to connect before keystrokes


class PvaConsrv(Consrv):
    """consrv with (or without) a ``pva:`` section on loopback, ports chosen by the kernel."""

    def __init__(self, *args: Any, pva: bool, own_process: bool = True) -> None:
        super().__init__(*args)
        self.pva, self.own_process = pva, own_process
        self.udp_port = 0

    def config(self, consoles: Mapping[str, Path]) -> dict[str, object]:
        config = super().config(consoles)
        if self.pva:
            config["pva"] = {"host": HOST, "server_port": 0, "broadcast_port": 0,
                             "own_process": self.own_process}  # fmt: skip
        return config

    def start(self, consoles: Mapping[str, Path]) -> None:
        super().start(consoles)
        if self.pva:
            assert self._proc is not None
            match = wait_log(self.log, rb"pva on \S+ tcp port \d+ udp port (\d+)", self._proc, 60)
            self.udp_port = int(match.group(1))

    def rewrite(self, consoles: Mapping[str, Path]) -> None:
        """A new config file with ``consoles`` (then SIGHUP applies it)."""
        self._write_config(consoles)

    def hangup(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)


def client_conf(udp_port: int) -> dict[str, str]:
    return {"EPICS_PVA_ADDR_LIST": "127.0.0.1", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_BROADCAST_PORT": str(udp_port)}  # fmt: skip


# ---------------------------------------------------------------- the storm (its own process)


def storm(udp_port: int, names: Sequence[str], seconds: float) -> dict[str, float]:
    """200 monitors held, and connect/get/close in a loop, for ``seconds``."""
    conf = client_conf(udp_port)
    updates = 0

    def count(_value: object) -> None:
        nonlocal updates
        updates += 1

    with Context("pva", conf=conf, useenv=False) as held:
        subs = [held.monitor(f"CONSRV:{HOST}:{n}:SilentFor", count) for n in names]
        end, cycles = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            with Context("pva", conf=conf, useenv=False) as brief:
                brief.get(f"CONSRV:{HOST}:{names[cycles % len(names)]}:State", timeout=5)
            cycles += 1
        for sub in subs:
            sub.close()
    return {"connects_per_s": cycles / seconds, "monitor_updates": updates}


# ---------------------------------------------------------------- the measurements


async def _consoles_pv(udp_port: int, want: int, limit: float = 120.0) -> float:
    """Seconds until the host's Consoles PV reads ``want`` (read in a worker thread)."""
    start = time.monotonic()
    with Context("pva", conf=client_conf(udp_port), useenv=False) as ctx:
        while time.monotonic() - start < limit:
            value = await trio.to_thread.run_sync(
                lambda: ctx.get(f"CONSRV:{HOST}:Consoles", timeout=5)
            )
            if int(value) == want:
                return time.monotonic() - start
            await trio.sleep(0.01)
    raise RuntimeError(f"the Consoles PV never read {want}")


class Cpu:
    """CPU (% of one core) of consrv's own process and of its children (the PV server's)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.start = pid, time.monotonic()
        self.own, self.tree = _own_ticks(pid), tree_cpu_seconds(pid)

    def percent(self) -> tuple[float, float]:
        elapsed = time.monotonic() - self.start
        own = _own_ticks(self.pid) - self.own
        children = max(0.0, tree_cpu_seconds(self.pid) - self.tree - own)  # ticks: not < 0
        return 100 * own / elapsed, 100 * children / elapsed


def _own_ticks(pid: int) -> float:
    stat = read_stat(pid)
    return stat.cpu_ticks / CLOCK_TICK if stat is not None else 0.0


async def _storm_keystrokes(
    server: PvaConsrv, reaper: Reaper, names: Sequence[str], count: int
) -> tuple[Latency, dict[str, float], tuple[float, float]]:
    """Keystrokes during a storm; the storm's figures; consrv's CPU (`Cpu.percent`) meanwhile.

    The storm client runs at nice 19: on this 2-core machine it stands for clients on
    other machines, so what it takes from consrv is the server side's work, not its own.
    """
    seconds = count * (KEYSTROKE_GAP + 0.003) + 15
    argv = ["nice", "-n", "19", sys.executable, "-m", "bench.pva", "storm", "--udp-port",
            str(server.udp_port), "--seconds", str(seconds), *names]  # fmt: skip
    process = await trio.lowlevel.open_process(
        argv, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": _repo()}
    )
    reaper.add(process.pid)
    assert process.stdout is not None
    await trio.sleep(STORM_SETTLE)  # the monitors connected, the loop going
    cpu = Cpu(server.pid)
    latency = await keystrokes(server, reaper, count, KEYSTROKE_GAP)
    used = cpu.percent()
    output = bytearray()
    while chunk := await process.stdout.receive_some(65536):
        output += chunk
    await process.wait()
    return latency, json.loads(output), used


def _repo() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _row(label: str, idle: Idle) -> str:
    return (f"| {label} | {idle.consoles} | {idle.cpu_percent:.3f} % | {idle.rss_mb:.0f} MB"
            f" | {idle.pss_mb:.0f} MB |")  # fmt: skip


async def _run(args: argparse.Namespace, workdir: Path, reaper: Reaper) -> None:
    root = workdir / "idle"
    consoles = IdleConsoles(root, args.consoles)
    consoles.start(reaper)
    echo = ProcServ(ECHO, root, ECHO_COMMAND)
    echo.directory.mkdir(parents=True, exist_ok=True)
    reaper.popen(echo.argv(), cwd=echo.directory)
    await consoles.wait_ready()
    sockets = {**consoles.sockets(args.consoles), ECHO: echo.socket}
    key = workdir / "id_bench"
    public = ensure_client_key(key, "bench")
    if not args.storm_only:
        await _idle_and_reload(args, workdir, reaper, root, sockets, key, public)
    if args.runs:
        await _storm(args, workdir, reaper, consoles.names[:STORM_MONITORS], sockets, key, public)


async def _idle_and_reload(
    args: argparse.Namespace, workdir: Path, reaper: Reaper, root: Path,
    sockets: Mapping[str, Path], key: Path, public: str,
) -> None:  # fmt: skip
    for label, pva, own in (("pva off", False, True), ("pva on, own process", True, True),
                            ("pva on, in consrv's process", True, False)):  # fmt: skip
        server = PvaConsrv(workdir / f"consrv-{label}", reaper, key, public, pva=pva,
                           own_process=own)  # fmt: skip
        idle = await idle_scale(server, sockets, root, args.window)
        print(_row(label, idle), flush=True)
    server = PvaConsrv(workdir / "consrv-reload", reaper, key, public, pva=True)
    server.start(sockets)
    try:
        await wait_connections(root, len(sockets))
        await trio.sleep(SETTLE)
        fewer = dict(list(sockets.items())[RELOAD_CHANGE:])
        for label, wanted in (("remove", fewer), ("add", sockets)):
            server.rewrite(wanted)
            start = time.monotonic()
            server.hangup()
            seen = await _consoles_pv(server.udp_port, len(wanted))
            print(f"reload: {label} {RELOAD_CHANGE} consoles' PVs: the Consoles PV shows"
                  f" {len(wanted)} {1000 * (time.monotonic() - start):.0f} ms after SIGHUP"
                  f" (client side {1000 * seen:.0f} ms)", flush=True)  # fmt: skip
    finally:
        server.stop()


VARIANTS = {"its own process": True, "consrv's process": False}


async def _storm(
    args: argparse.Namespace, workdir: Path, reaper: Reaper, names: Sequence[str],
    sockets: Mapping[str, Path], key: Path, public: str,
) -> None:  # fmt: skip
    """Both variants side by side; quiet and storm runs interleaved, the order swapped each run."""
    servers = {label: PvaConsrv(workdir / f"consrv-storm-{own}", reaper, key, public, pva=True,
                                own_process=own) for label, own in VARIANTS.items()}  # fmt: skip
    quiet: dict[str, list[Latency]] = {label: [] for label in servers}
    loud: dict[str, list[Latency]] = {label: [] for label in servers}
    print(f"load average at the start: {_load()}", flush=True)
    try:
        for server in servers.values():
            server.start(sockets)
        await wait_connections(workdir / "idle", len(sockets) * len(servers))
        await trio.sleep(SETTLE)
        for run in range(args.runs):
            order = list(servers) if run % 2 == 0 else list(reversed(servers))
            for label in order:
                server = servers[label]
                cpu = Cpu(server.pid)
                calm = await keystrokes(server, reaper, args.keystrokes, KEYSTROKE_GAP)
                calm_cpu = cpu.percent()
                storm_latency, load, storm_cpu = await _storm_keystrokes(
                    server, reaper, names, args.keystrokes
                )
                quiet[label].append(calm)
                loud[label].append(storm_latency)
                print(f"run {run + 1}, PV server in {label}: no PV client: p50 {calm.p50:.2f}"
                      f" p99 {calm.p99:.2f} ms (consrv {_cpu(calm_cpu)}); storm"
                      f" ({STORM_MONITORS} monitors, {load['connects_per_s']:.0f} connect/get/"
                      f"close per s, {load['monitor_updates']:.0f} updates): p50"
                      f" {storm_latency.p50:.2f} p99 {storm_latency.p99:.2f} ms"
                      f" (consrv {_cpu(storm_cpu)}); load average {_load()}",
                      flush=True)  # fmt: skip
        for label in servers:
            calm, storm_latency = median_of(quiet[label]), median_of(loud[label])
            print(f"PV server in {label}, {args.keystrokes} keystrokes a run, median of"
                  f" {args.runs} runs (spread): no PV client p50 {calm.p50:.2f}"
                  f" ({_spread(quiet[label], 'p50')}) p99 {calm.p99:.2f}"
                  f" ({_spread(quiet[label], 'p99')}) ms; storm p50 {storm_latency.p50:.2f}"
                  f" ({_spread(loud[label], 'p50')}) p99 {storm_latency.p99:.2f}"
                  f" ({_spread(loud[label], 'p99')}) ms: p50"
                  f" {100 * (storm_latency.p50 / calm.p50 - 1):+.0f} %, p99"
                  f" {100 * (storm_latency.p99 / calm.p99 - 1):+.0f} %; run by run (each storm"
                  f" against the quiet run just before it), median p99"
                  f" {_paired(quiet[label], loud[label])}", flush=True)  # fmt: skip
        print(f"load average at the end: {_load()}", flush=True)
    finally:
        for server in servers.values():
            server.stop()


def _cpu(percent: tuple[float, float]) -> str:
    return f"{percent[0]:.1f} % CPU, its PV server process {percent[1]:.1f} %"


def _paired(quiet: list[Latency], loud: list[Latency]) -> str:
    ratios = [b.p99 / a.p99 for a, b in zip(quiet, loud, strict=True)]
    spread = f"{100 * (min(ratios) - 1):+.0f} to {100 * (max(ratios) - 1):+.0f} %"
    return f"{100 * (statistics.median(ratios) - 1):+.0f} % ({spread})"


def _spread(runs: list[Latency], field: str) -> str:
    values = [getattr(run, field) for run in runs]
    return f"{min(values):.2f}-{max(values):.2f}"


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pva",
                                     description=(__doc__ or "").split("\n")[0])  # fmt: skip
    parser.add_argument("--consoles", type=int, default=1000, help="(default: %(default)s)")
    parser.add_argument("--window", type=float, default=30.0, help="idle CPU window, s")
    parser.add_argument("--keystrokes", type=int, default=1000, help="a run (default: %(default)s)")
    parser.add_argument(
        "--runs", type=int, default=3, help="quiet/storm pairs, 0: none (default: %(default)s)"
    )
    parser.add_argument("--storm-only", action="store_true", help="skip idle and reload")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["storm"]:
        parser = argparse.ArgumentParser(prog="python -m bench.pva storm")
        parser.add_argument("--udp-port", type=int, required=True)
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("names", nargs="+")
        args = parser.parse_args(argv[1:])
        print(json.dumps(storm(args.udp_port, args.names, args.seconds)))
        return 0
    args = _parse(argv)
    raise_file_limit(8192)
    workdir = Path(tempfile.mkdtemp(prefix="consrv-pva-bench-"))
    (workdir / "cwd").mkdir()
    os.chdir(workdir / "cwd")  # not the repository: see bench.focus
    reaper = Reaper()
    try:
        with cleanup(reaper):
            trio.run(_run, args, workdir, reaper)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
