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

``--keys-only`` measures keystrokes alone, the paths of ``--paths`` interleaved in
``--rounds`` rounds (their order turned each round, so all see the same load; the
load average is recorded): ``via`` the gateway, ``direct`` to the peer, and ``jump``
(``ssh -J console@gw console@peer``, as OpenSSH runs it: ``ProxyCommand ssh -W``).
``--profile N`` adds the gateway's cost per keystroke (strace -c -f: syscalls; perf
stat: context switches, CPU), a session of N keystrokes less a session of one and
less the time between idle; ``--spy PREFIX`` records py-spy's samples of the gateway
over a ``via`` run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import trio
import trio_asyncio

from bench.fleet import KEYSTROKE, keystrokes, rss_mb
from tests.fleet.sim import Fleet, Peer, running_fleet, ssh_argv
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


PATHS = ("via", "direct", "jump")


def path_argv(fleet: Fleet, path: str) -> list[str]:
    """``ssh -tt`` to ioc-00: ``via`` the gateway, ``direct`` to its peer, or to its peer
    through the gateway's tunnel (``jump``: ``ssh -J``, spelt as OpenSSH runs it)."""
    gateway, peer, key = fleet.gateways[0], fleet.peers[0], fleet.users["alice"].private
    if path == "via":
        return ssh_argv(gateway.address, gateway.consrv.port, key, "console", "ioc-00", tty=True)
    argv = ssh_argv(peer.name, peer.port, key, "console", "ioc-00", tty=True)
    if path == "direct":
        return argv
    jump = " ".join(ssh_argv(gateway.address, gateway.consrv.port, key, "console", tty=False))
    return [argv[0], "-o", f"ProxyCommand={jump} -W %h:%p", *argv[1:]]


def key_samples(fleet: Fleet, count: int, path: str) -> list[float]:
    """Round trips (ms) of ``count`` keystrokes on one session over ``path``."""
    argv = [sys.executable, str(KEYSTROKE), "--count", str(count), "--", *path_argv(fleet, path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603 - an argv list
    data = json.loads(result.stdout or "{}")
    if "samples_us" not in data:
        raise RuntimeError(f"keystroke {path}: {data.get('error')} {result.stderr[-300:]}")
    return [sample / 1000 for sample in data["samples_us"]]


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def key_rounds(fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """``--rounds`` rounds, the paths interleaved (their order turned each round) so all
    see the same load: each path's p50 and p99 per run, and the gateway's CPU per
    keystroke on the ``via`` runs (its login's ~12 ms included, over ``--keystrokes``)."""
    gw = pid_of(fleet.gateways[0].consrv)
    paths = [p for p in PATHS if p in args.paths.split(",")]
    runs: dict[str, list[tuple[float, float]]] = {p: [] for p in paths}
    loads, cpu = [load_average()], []
    for index in range(args.rounds):
        for path in paths if index % 2 == 0 else paths[::-1]:
            before = cpu_seconds(gw)
            samples = key_samples(fleet, args.keystrokes, path)
            if path == "via":
                cpu.append((cpu_seconds(gw) - before) / len(samples) * 1e6)
            runs[path].append((statistics.median(samples), pct(samples, 0.99)))
        loads.append(load_average())
    out: dict[str, Any] = {"load": loads, "runs": runs, "gw_cpu_us_per_key": cpu}
    for path, values in runs.items():
        out[f"{path}_p50"] = statistics.median(v[0] for v in values)
        out[f"{path}_p99"] = statistics.median(v[1] for v in values)
    return out


def _traced(pid: int, tool: list[str], fleet: Fleet, count: int, idle: float) -> tuple[str, float]:
    """``tool`` attached to ``pid`` while ``count`` keystrokes go through the gateway (or,
    with ``count`` 0, for ``idle`` seconds): what it printed, and for how long it ran."""
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        argv = [*tool, "-o", out.name, "-p", str(pid)]
        tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)  # noqa: S603 - argv
        time.sleep(0.5)  # attached
        start = time.monotonic()
        if count:
            key_samples(fleet, count, "via")
        else:
            time.sleep(idle)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        return out.read(), time.monotonic() - start + 0.5


def strace_counts(text: str) -> dict[str, float]:
    counts = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 5 and words[0][0].isdigit() and words[-1] not in ("total", "syscall"):
            counts[words[-1]] = float(words[3])
    return counts


def perf_counts(text: str) -> dict[str, float]:
    counts = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0][0].isdigit():
            name = words[2] if words[1] == "msec" else words[1]  # cpu-clock is in ms
            counts[name] = float(words[0].replace(",", ""))
    return counts


def per_key(
    pid: int, tool: list[str], fleet: Fleet, count: int, parse: Callable[[str], dict[str, float]]
) -> dict[str, float]:
    """What ``tool`` counts in the gateway per keystroke: a session of ``count`` keystrokes
    less a session of one (the login, the hop's set-up) and less the time between them
    idle (keep-alives, as a rate)."""
    many, many_s = _traced(pid, tool, fleet, count, 0)
    one, one_s = _traced(pid, tool, fleet, 1, 0)
    idle, idle_s = _traced(pid, tool, fleet, 0, max(1.0, many_s - one_s))
    busy, login, quiet = parse(many), parse(one), parse(idle)
    extra_s = many_s - one_s
    return {
        k: (v - login.get(k, 0.0) - quiet.get(k, 0.0) * extra_s / idle_s) / (count - 1)
        for k, v in busy.items()
    }


def profile(fleet: Fleet, count: int) -> dict[str, Any]:
    """Per keystroke, in the gateway: syscalls by name (strace -c -f), context switches
    and CPU (perf stat)."""
    gw = pid_of(fleet.gateways[0].consrv)
    syscalls = per_key(gw, ["strace", "-c", "-f"], fleet, count, strace_counts)
    perf = ["perf", "stat", "-e", "context-switches,cpu-clock"]
    counted = per_key(gw, perf, fleet, count, perf_counts)
    return {
        "syscalls_per_key": {k: round(v, 2) for k, v in sorted(syscalls.items()) if v >= 0.05},
        "context_switches_per_key": counted["context-switches"],
        "cpu_ms_per_key": counted["cpu-clock"],
    }


def spy(fleet: Fleet, count: int, out: Path) -> None:
    """py-spy's samples of the gateway (collapsed stacks, idle left out, not pausing it)
    while ``count`` keystrokes go through it: ``out``."""
    gw = pid_of(fleet.gateways[0].consrv)
    py_spy = Path(sys.executable).parent / "py-spy"
    argv = [str(py_spy), "record", "--pid", str(gw), "--rate", "1000", "--format", "raw",
            "--nonblocking", "--output", str(out)]  # fmt: skip
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - argv
    time.sleep(1)
    key_samples(fleet, count, "via")
    recorder.send_signal(signal.SIGINT)
    recorder.wait(timeout=30)


# Loaded by every consrv the bench starts (PYTHONPATH): each garbage collection's
# generation and pause, one line each, into $FLEETSCALE_GC_DIR/gc-PID.txt.
GC_PROBE = """\
import gc, os, time
_dir = os.environ.get("FLEETSCALE_GC_DIR")
if _dir:
    _out = open(os.path.join(_dir, f"gc-{os.getpid()}.txt"), "a", buffering=1)
    _began = [0.0]

    def _timed(phase, info):
        if phase == "start":
            _began[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - _began[0]
            _out.write(f"{time.time():.3f} {info['generation']} {pause:.6f}\\n")

    gc.callbacks.append(_timed)
"""


def gc_probe(root: Path) -> Path:
    """Every process started from now on logs its garbage collections in ``root``/gc."""
    probe, logs = root / "gcprobe", root / "gc"
    probe.mkdir()
    logs.mkdir()
    (probe / "sitecustomize.py").write_text(GC_PROBE)
    os.environ["PYTHONPATH"] = str(probe)
    os.environ["FLEETSCALE_GC_DIR"] = str(logs)
    return logs


def gc_pauses(logs: Path, pid: int, since: float) -> dict[str, Any]:
    """``pid``'s collections after ``since`` (time.time()): count and pauses (ms) by generation."""
    path = logs / f"gc-{pid}.txt"
    rows = [line.split() for line in path.read_text().splitlines()] if path.exists() else []
    out: dict[str, Any] = {}
    for gen in ("0", "1", "2"):
        pauses = [float(r[2]) * 1000 for r in rows if r[1] == gen and float(r[0]) >= since]
        out[f"gen{gen}"] = {"count": len(pauses), "max_ms": max(pauses, default=0.0),
                            "total_ms": sum(pauses)}  # fmt: skip
    return out


# The ciphers a keystroke's packet may meet on the two legs through the gateway: the
# OpenSSH client's pick against consrv's defaults (aes128-ctr, umac-64-etm), and the
# gateway's asyncssh client's pick against a peer's (aes256-gcm), with the others.
HOP_CIPHERS = (
    ("aes128-ctr", "umac-64-etm@openssh.com"),
    ("aes256-gcm@openssh.com", ""),
    ("aes128-gcm@openssh.com", ""),
    ("chacha20-poly1305@openssh.com", ""),
)


def crypto_us_per_packet(count: int = 20000) -> dict[str, float]:
    """asyncssh's encryption of one keystroke's packet (a 1-byte channel data message),
    microseconds of CPU each, for `HOP_CIPHERS` (with consrv's keyed UMAC)."""
    from asyncssh.encryption import get_encryption, get_encryption_params

    from consrv.ssh import compat

    compat.install_keyed_umac()
    out = {}
    for cipher, mac in HOP_CIPHERS:
        name, mac_name = cipher.encode(), mac.encode()
        key_size, iv_size, _, mac_size, _, etm = get_encryption_params(name, mac_name)
        enc = get_encryption(name, os.urandom(key_size), os.urandom(iv_size), mac_name,
                             os.urandom(mac_size), etm)  # fmt: skip
        header, packet = os.urandom(4), os.urandom(28)
        start = time.process_time()
        for seq in range(count):
            enc.encrypt_packet(seq, header, packet)
        out[f"{cipher} {mac}".strip()] = (time.process_time() - start) / count * 1e6
    return out


def syscall_us(count: int = 20000) -> dict[str, float]:
    """The syscalls of one pass through the gateway, each alone (microseconds of this
    thread's CPU, Python's call included): a 64-byte send on loopback TCP (the
    receiver's stack runs in it), epoll_wait(0), recv, the one-shot re-arm, 8 random
    bytes of padding."""
    server = socket.create_server(("127.0.0.1", 0))
    with server, socket.create_connection(server.getsockname()) as client:
        peer, _ = server.accept()
        with peer, select.epoll() as epoll:
            epoll.register(peer.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
            calls: dict[str, Callable[[], object]] = {
                "send": lambda: client.send(b"x" * 64),
                "epoll_wait": lambda: epoll.poll(0, 8),
                "recv": lambda: peer.recv(4096),
                "epoll_ctl": lambda: epoll.modify(
                    peer.fileno(), select.EPOLLIN | select.EPOLLONESHOT
                ),
                "getrandom": lambda: os.urandom(8),
            }
            spent = dict.fromkeys(calls, 0.0)
            for _ in range(count):
                for name, call in calls.items():
                    start = time.thread_time()
                    call()
                    spent[name] += time.thread_time() - start
    return {name: total / count * 1e6 for name, total in spent.items()}


def measure_keys(size: int, real: int, args: argparse.Namespace) -> dict[str, Any]:
    """``--keys-only``: the fleet up, then the interleaved keystroke rounds (and the
    per-keystroke profile with ``--profile``), nothing else."""
    row: dict[str, Any] = {"peers": size, "real": real}
    with tempfile.TemporaryDirectory(prefix="consrv-fleetscale-") as tmp:
        root = Path(tmp)
        logs = gc_probe(root) if args.gc else None
        with contextlib.ExitStack() as stack:

            def source(peers: list[Peer]) -> dict[str, Any]:
                keys = root / "gateway-keys"
                sim = stack.enter_context(simulated(root, keys, size - real, args.churn))
                with (keys / "known_hosts").open("a") as known:
                    known.write(sim["known_hosts"])
                listed = [f"{p.name}:{p.port}" for p in peers]
                return {"peers": listed + [p["address"] for p in sim["peers"]]}

            fleet = stack.enter_context(
                running_fleet(root, peers=real, gateways=(GATEWAY,), source=source)
            )
            directory_whole(fleet, size, timeout=120 + size / 5)
            time.sleep(2)
            row["rss_mb"] = rss_mb(fleet.gateways[0].consrv)
            began = time.time()
            row.update(key_rounds(fleet, args))
            if logs is not None:
                row["gc"] = gc_pauses(logs, pid_of(fleet.gateways[0].consrv), began)
            if args.profile:
                row["profile"] = profile(fleet, args.profile)
            row["crypto_us_per_packet"] = crypto_us_per_packet()
            row["syscall_us"] = syscall_us()
            if args.spy:
                spy(fleet, args.keystrokes, args.spy.with_name(f"{args.spy.name}-{size}.txt"))
    return row


def measure(size: int, real: int, args: argparse.Namespace) -> dict[str, Any]:
    if args.keys_only:
        return measure_keys(size, real, args)
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
    parser.add_argument(
        "--keys-only",
        action="store_true",
        help="only keystrokes: --rounds rounds over --paths, interleaved",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--keys-only: rounds")
    parser.add_argument(
        "--paths", default="via,direct,jump", help=f"--keys-only: of {','.join(PATHS)}"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="--keys-only: also strace and perf the gateway over N keystrokes",
    )
    parser.add_argument(
        "--spy",
        type=Path,
        metavar="PREFIX",
        help="--keys-only: py-spy the gateway over a via run: PREFIX-N.txt",
    )
    parser.add_argument(
        "--gc",
        action="store_true",
        help="--keys-only: the gateway's garbage collections during the rounds",
    )
    args = parser.parse_args(argv)
    rows = []
    for size in (int(n) for n in args.peers.split(",")):
        print(f"bench.fleetscale: {size} peers ({args.real} real)...", file=sys.stderr, flush=True)
        rows.append(measure(size, args.real, args))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
    if not args.keys_only:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
