"""The results of one run and their Markdown report: the machine, the command, the table.

Owns: what was measured per server (`ServerResults`), the rows of the table
(each figure for consrv, sshd+socat and conserver, and consrv's ratio to each;
with ``--against REV`` also consrv from that revision, and consrv's ratio to it),
and the description of the machine and program versions.

Must not know: how anything was measured.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from bench.cipher import chacha_cpu_s_per_gb
from bench.fanout import Burst
from bench.idle import Idle
from bench.latency import Latency
from bench.logins import Logins

CONSRV, SSHD, CONSERVER, FLOOR = "consrv", "sshd+socat", "conserver", "floor"
LABELS = (CONSRV, SSHD, CONSERVER, FLOOR)  # the floor: keystrokes only (bench/floor.py)
AGAINST = "consrv@"  # consrv from another revision (--against REV): "consrv@" + short hash


def labels(present: Iterable[str]) -> tuple[str, ...]:
    """The table's server columns: consrv, any consrv@REV beside it, then the others."""
    against = sorted({label for label in present if label.startswith(AGAINST)})
    return (CONSRV, *against, SSHD, CONSERVER, FLOOR)


def compared(columns: Sequence[str]) -> tuple[str, ...]:
    """The servers consrv is divided by, one ratio column each: consrv@REV first."""
    return tuple(label for label in columns if label not in (CONSRV, FLOOR))


@dataclass
class ServerResults:
    version: str = ""
    latency_idle: Latency | None = None
    latency_load: Latency | None = None
    bursts: dict[int, Burst] = field(default_factory=dict)
    logins: Logins | None = None
    idle: dict[int, Idle] = field(default_factory=dict)
    down: dict[int, float] = field(default_factory=dict)  # consoles -> CPU % of one core
    log_ingest: float | None = None  # CPU-s per GB, nobody attached, log on


@dataclass
class Results:
    mode: str
    command: str
    load_viewers: int
    flood_rate: int
    burst_bytes: int
    burst_reps: int
    idle_window: float
    keystrokes: int = 0  # per run
    keystroke_runs: int = 1
    machine: list[str] = field(default_factory=list)
    baseline: Burst | None = None
    servers: dict[str, ServerResults] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


Getter = Callable[[ServerResults], float | None]


@dataclass(frozen=True)
class Row:
    label: str
    get: Getter
    digits: int = 2
    ratio: bool = True  # False: a ratio would mean nothing (counts of different things)


def _latency(which: str, pct: str) -> Getter:
    def get(r: ServerResults) -> float | None:
        lat: Latency | None = getattr(r, which)
        return None if lat is None else float(getattr(lat, pct))

    return get


def _burst(n: int, name: str) -> Getter:
    def get(r: ServerResults) -> float | None:
        burst = r.bursts.get(n)
        return None if burst is None else float(getattr(burst, name))

    return get


def _busy(n: int) -> Getter:
    def get(r: ServerResults) -> float | None:
        burst = r.bursts.get(n)
        return None if burst is None else 100 * burst.machine_busy

    return get


def _down(n: int) -> Getter:
    def get(r: ServerResults) -> float | None:
        return r.down.get(n)

    return get


def _idle(n: int, name: str) -> Getter:
    def get(r: ServerResults) -> float | None:
        idle = r.idle.get(n)
        value = None if idle is None else getattr(idle, name)
        return None if value is None else float(value)

    return get


def _login(name: str) -> Getter:
    def get(r: ServerResults) -> float | None:
        return None if r.logins is None else float(getattr(r.logins, name))

    return get


def _vs_baseline(baseline: Burst | None) -> Getter:
    def get(r: ServerResults) -> float | None:
        burst = r.bursts.get(1)
        if burst is None or baseline is None:
            return None
        return 100 * burst.per_viewer_mb_s / baseline.per_viewer_mb_s

    return get


def rows(results: Results) -> list[Row]:
    """Every row of the table, in order (lower is better unless the label says ↑)."""
    load = f"{results.load_viewers} viewers of a {results.flood_rate / 1e6:g} MB/s console"
    table = [
        Row("keystroke p50, idle (ms)", _latency("latency_idle", "p50"), 3),
        Row("keystroke p99, idle (ms)", _latency("latency_idle", "p99"), 3),
        Row(f"keystroke p50, {load} (ms)", _latency("latency_load", "p50"), 3),
        Row(f"keystroke p99, {load} (ms)", _latency("latency_load", "p99"), 3),
        Row("  load actually delivered per viewer meanwhile (MB/s ↑)",
            _latency("latency_load", "load_mb_per_s")),
    ]  # fmt: skip
    mb = results.burst_bytes / 1e6
    sizes = sorted({n for r in results.servers.values() for n in r.bursts})
    for n in sizes:
        table += [
            Row(f"fan-out {mb:g} MB to {n}: completion (s)", _burst(n, "seconds")),
            Row(f"fan-out {mb:g} MB to {n}: MB/s per viewer ↑", _burst(n, "per_viewer_mb_s"), 1),
            Row(f"fan-out {mb:g} MB to {n}: aggregate MB/s ↑", _burst(n, "aggregate_mb_s"), 1),
            Row(f"fan-out {mb:g} MB to {n}: server CPU-s per GB", _burst(n, "cpu_s_per_gb")),
            Row(f"fan-out {mb:g} MB to {n}: machine CPU busy, all cores (%)",
                _busy(n), 0, ratio=False),
            Row(f"fan-out {mb:g} MB to {n}: least delivered to a viewer ↑",
                _burst(n, "delivered"), 3),
            Row(f"fan-out {mb:g} MB to {n}: most delivered to a viewer (1 = exact)",
                _burst(n, "delivered_max"), 3, ratio=False),
        ]  # fmt: skip
    table.append(Row(f"log only, {mb:g} MB, nobody attached: server CPU-s per GB",
                     lambda r: r.log_ingest, 2))  # fmt: skip
    if 1 in sizes:
        table.append(Row("1 viewer's rate, % of the direct baseline ↑",
                         _vs_baseline(results.baseline), 1))  # fmt: skip
    counts = sorted({n for r in results.servers.values() for n in r.idle})
    for n in counts:
        window = f"{results.idle_window:g} s"
        table += [
            Row(
                f"idle {n} consoles: procServ connections held",
                _idle(n, "connections"),
                0,
                ratio=False,
            ),
            Row(f"idle {n}: time to connect all (s)", _idle(n, "connect_seconds"), 1),
            Row(f"idle {n}: server processes", _idle(n, "processes"), 0),
            Row(f"idle {n}: RSS, summed (MB)", _idle(n, "rss_mb"), 1),
            Row(f"idle {n}: PSS, summed (MB)", _idle(n, "pss_mb"), 1),
            Row(f"idle {n}: CPU over {window} (% of one core)", _idle(n, "cpu_percent"), 3),
        ]
    for n in sorted({n for r in results.servers.values() for n in r.down}):
        table.append(
            Row(f"down {n}: CPU over {results.idle_window:g} s (% of one core)", _down(n), 3)
        )
    table += [
        Row("logins per second ↑", _login("per_second"), 1),
        Row("server CPU per login (ms)", _login("cpu_ms_per_login"), 1),
    ]
    return table


def _cell(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _ratio(mine: float | None, other: float | None) -> str:
    if mine is None or other is None:
        return "—"
    if other == 0:
        return "—" if mine == 0 else "∞"
    return f"{mine / other:.2f}"


def header(columns: Sequence[str] = LABELS) -> list[str]:
    """The table's first two lines: figure, each server, consrv ÷ each other server."""
    head = ["figure", *columns, *(f"{CONSRV} ÷ {other}" for other in compared(columns))]
    return ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]


def table(results: Results) -> str:
    """The Markdown table: figure, each server, consrv ÷ each other server."""
    columns = labels(results.servers)
    lines = header(columns)
    for row in rows(results):
        values = {label: row.get(r) for label, r in results.servers.items()}
        mine = values.get(CONSRV)
        cells = [_cell(values.get(label), row.digits) for label in columns]
        others = compared(columns)
        ratios = [_ratio(mine, values.get(other)) if row.ratio else "—" for other in others]
        lines.append("| " + " | ".join([row.label, *cells, *ratios]) + " |")
    return "\n".join(lines)


def markdown(results: Results) -> str:
    """The whole report: what ran where, the direct baseline, the table, notes."""
    out = [f"Command: `{results.command}` ({results.mode} mode)", "", "Machine:", ""]
    out += [f"- {line}" for line in results.machine]
    out.append("")
    if results.baseline is not None:
        b = results.baseline
        out.append(
            f"Direct baseline (the bench's own socket client on procServ, no server):"
            f" {results.burst_bytes / 1e6:g} MB in {b.seconds:.3f} s = {b.per_viewer_mb_s:.1f} MB/s"
            f" (median of {results.burst_reps}); all cores"
            f" {100 * b.machine_busy:.0f}% busy meanwhile."
        )
        out.append("")
    out += [table(results), ""]
    out.append("Ratios are consrv's figure divided by the other's: below 1 is better for consrv,")
    out.append("except on rows marked ↑ (higher is better). — = not applicable or not measured.")
    runs, keys = results.keystroke_runs, results.keystrokes
    out.append(f"Keystroke rows: the median over {runs} run(s) of {keys:,} keystrokes each.")
    for label in labels(results.servers):
        if label.startswith(AGAINST):
            out.append(f"{label}: consrv's package from revision {label[len(AGAINST) :]} on the")
            out.append("same venv and configuration, run right after consrv (bench/run --against).")
    if FLOOR in results.servers:
        out.append("floor: a bare asyncssh bridge on consrv's stack (bench/floor.py), keystrokes")
        out.append("only: what Python, trio and asyncssh cost here before consrv's own code.")
    if results.notes:
        out += ["", "Notes from this run:", ""]
        out += [f"- {note}" for note in results.notes]
    return "\n".join(out) + "\n"


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, check=False, timeout=10)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).decode(errors="replace").strip()


def _cpu_model() -> str:
    for line in _run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def _package(name: str) -> str:
    return _run(["dpkg-query", "-W", "-f", "${Version}", name])


def _python_package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(versions: dict[str, str]) -> list[str]:
    """Lines describing the machine, its load and the programs' versions."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores; {memory:.0f} GiB RAM",
        f"OS: {_os_name()}, kernel {platform.release()}",
        f"load average at the start (1, 5, 15 min): {load_average()}",
        f"Python {platform.python_version()}; asyncssh {_python_package('asyncssh')},"
        f" trio {_python_package('trio')}, trio-asyncio {_python_package('trio-asyncio')},"
        f" cryptography {_python_package('cryptography')}",
        f"procServ {_package('procserv')}; OpenSSH {_package('openssh-server')};"
        f" socat {_package('socat')}; conserver {_package('conserver-server')}",
    ]
    lines += [f"{label}: {version}" for label, version in versions.items()]
    lines.append(
        f"asyncssh's chacha20-poly1305 alone (what each byte to each consrv viewer costs to"
        f" encrypt, 32 KiB packets): {chacha_cpu_s_per_gb():.2f} CPU-s per GB"
    )
    return lines
