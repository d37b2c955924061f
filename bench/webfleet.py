"""The fleet's browser view under load: many browser streams through one gateway (issue 28).

``python -m bench.webfleet [--peers 20] [--streams 50] [--runs 3] [--printing 10]``
from the repository root (docs/performance.md). ``--peers`` real `consrv serve` peers,
each on its own loopback address with a procServ ``cat`` console (tests/fleet/sim.py,
as the fleet suite starts them) and its own web view (TLS), one real gateway with its
web view in front of them. The browser streams are real clients of the endpoint the
console page uses (``wss://…/c/NAME@HOST/stream`` on the gateway, ``/c/NAME/stream`` on
a host): signed in as a browser is (``ssh console@HOST web``, the link opened, its
cookie sent on the WebSocket handshake with the page's Origin), trio-websocket.

``--streams`` streams through the gateway, spread over the peers' consoles and over
the users alice, bob and olga; beside them each console once on its own host's page.
Each run (the fleet stays up; the streams are opened afresh):

- the gateway's RSS before the streams, with them open, and after the printing;
- the gateway's CPU (% of one core) over ``--window`` s: idle without a stream, idle
  with the streams open, then with ``--printing`` consoles printing (a line typed
  every ``--interval`` s into ``cat``: the tty's echo and cat's copy, two lines); the
  peers' CPU (all together) and the bench's own beside it, the lines typed and the
  bytes the streams delivered;
- latency: a marked line typed into procServ's console (the bench's own client on its
  socket, `bench.consoles.DirectClient`) until it arrives in each stream of that
  console, round robin over the consoles every ``--gap`` s; the gateway's streams and
  the host's page see the very same line, so both see the same load. Idle, then while
  printing (all consoles, and the consoles not printing alone). A mark later than
  `LATE` counts as lost.

Prints one Markdown table, each cell the median of the runs (lowest-highest), with the
load average. ``--chromium N``: also one headless chromium (Debian's, tests/web/browser.py)
on ``ioc-00``'s page through the gateway, then on its host: N marked lines each, the time
to their arrival in the page's terminal (a sanity row, after the runs). Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import ssl
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket
import yaml

from bench.consoles import DirectClient
from bench.fleet import rss_mb
from bench.fleetscale import cpu_seconds, pct, pid_of
from bench.procs import MachineCpu
from bench.spread import cell
from tests.fleet.sim import Fleet, Peer, listed, running_fleet
from tests.harness import Consrv
from tests.web.tls import self_signed

GATEWAY = "127.0.0.50"
COOKIE = "__Host-consrv_session"  # consrv/web/auth.py's name (the bench reads, never imports web/)
USERS = ("alice", "bob", "olga")
MARK = re.compile(rb"wfm(\d{8})\.")
MARK_LEN = 12
SETTLE = 2.0  # seconds after the streams open (or the printing starts) before measuring
LATE = 5.0  # seconds a mark may take before it counts as lost


# --- the fleet: peers with their own pages, a gateway that lets one user open many -----


def with_web(peers: list[Peer]) -> dict[str, Any]:
    """running_fleet's peer source: each peer restarted with its own web view (TLS, as
    the gateway's), then listed in the gateway's config as usual."""
    for peer in peers:
        cert, key = self_signed(peer.root)
        tls = {"cert": str(cert), "key": str(key)}
        peer.config["web"] = {"listen": f"{peer.name}:0", "tls": tls}
        peer.write()
        peer.consrv.stop()
    for peer in peers:
        peer.consrv = Consrv(peer.config_path, peer.root).spawn()
        time.sleep(0.05)
    for peer in peers:
        peer.consrv.wait_for_log(rb"web view on https://", timeout=90)
        match = peer.consrv.wait_for_log(rb"ssh listening on [\d.]+:(\d+)", timeout=90)
        peer.consrv.port = int(match.group(1))
    return listed(peers)


def allow_streams(fleet: Fleet, count: int) -> None:
    """The gateway's ``web.limits.streams_per_user`` raised to ``count`` (a reload): the
    bench has three users for all its browsers."""
    gateway = fleet.gateways[0].consrv
    settings = yaml.safe_load(gateway.config.read_text())
    settings["web"].setdefault("limits", {})["streams_per_user"] = count
    gateway.config.write_text(yaml.safe_dump(settings, sort_keys=False))
    assert gateway.process is not None
    gateway.process.send_signal(signal.SIGHUP)
    gateway.wait_for_log(rb"reloaded ", timeout=30)


@dataclass(frozen=True)
class SignedIn:
    """A browser's session on one site: the site's base URL and the session cookie."""

    base: str
    cookie: str


def sign_in(fleet: Fleet, user: str, peer: Peer | None = None) -> SignedIn:
    """``ssh console@HOST web`` (the gateway's, or ``peer``'s), the link opened as a
    browser opens it: the session cookie it sets."""
    where: dict[str, Any] = {"host": peer.name, "port": peer.port} if peer else {}
    result = fleet.ssh(user, "web", timeout=60, **where)
    if result.returncode != 0:
        raise RuntimeError(f"ssh {user}@{peer.name if peer else 'gateway'} web: {result.stderr}")
    link = result.stdout.strip()
    with httpx.Client(verify=False, timeout=60) as client:  # noqa: S501 - the bench's own cert
        answer = client.get(link)
        if answer.status_code != 303 or COOKIE not in client.cookies:
            raise RuntimeError(f"signing in with {link}: {answer.status_code} {answer.text[:200]}")
        return SignedIn(link.split("/login/")[0], client.cookies[COOKIE])


# --- the streams: real WebSocket clients of the console page's endpoint ---------------


@dataclass
class Watch:
    """One browser stream of one console: when each mark arrived, what else came."""

    site: str  # "gateway" or "host"
    console: str
    url: str
    session: SignedIn
    arrived: dict[int, float] = field(default_factory=dict)
    received: int = 0
    closed: str | None = None  # why the server ended it, if it did
    _tail: bytes = b""

    def take(self, data: bytes, now: float) -> None:
        self.received += len(data)
        window = self._tail + data
        for match in MARK.finditer(window):
            self.arrived.setdefault(int(match.group(1)), now)
        self._tail = window[-(MARK_LEN - 1) :]


def insecure() -> ssl.SSLContext:
    """The bench's own self-signed certificates (tests/web/tls.py): not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def follow(watch: Watch, *, task_status: trio.TaskStatus[None]) -> None:
    """Open the stream as the page does (cookie, Origin), then read it until cancelled."""
    headers = [
        (b"cookie", f"{COOKIE}={watch.session.cookie}".encode()),
        (b"origin", watch.session.base.encode()),
    ]
    async with trio_websocket.open_websocket_url(
        watch.url, insecure(), extra_headers=headers, message_queue_size=256,
        connect_timeout=30, disconnect_timeout=5,
    ) as ws:  # fmt: skip
        task_status.started()
        try:
            while True:
                message = await ws.get_message()
                data = message if isinstance(message, bytes) else message.encode()
                watch.take(data, time.perf_counter())
        except trio_websocket.ConnectionClosed as closed:
            watch.closed = f"{closed.reason}"


# --- the consoles: marks and printing typed into procServ ------------------------------


class Typist:
    """The bench's clients on every console's procServ socket: marks and printing."""

    def __init__(self, fleet: Fleet, first: int) -> None:
        """``first``: the number before this run's first mark (each run its own numbers: a
        host's page begins with the console's scrollback, which holds earlier runs' marks)."""
        self.clients = {
            name: DirectClient(ps.socket)
            for peer in fleet.peers
            for name, ps in peer.procservs.items()
            if name.startswith("ioc-")
        }
        self.locks = {name: trio.StrictFIFOLock() for name in self.clients}  # marks, printing
        self.sent: dict[int, tuple[str, float]] = {}  # mark -> console, when typed
        self.number = first
        self.typed = 0  # lines typed by print_lines, all consoles together

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            for client in self.clients.values():
                await nursery.start(client.run)
            task_status.started()

    async def mark(self, console: str) -> int:
        self.number += 1
        number = self.number
        async with self.locks[console]:
            self.sent[number] = (console, time.perf_counter())
            await self.clients[console].send(b"wfm%08d.\r" % number)
        return number

    async def marks(self, gap: float, until: float) -> list[int]:
        """Marks round robin over the consoles, one every ``gap`` s until ``until``."""
        names, numbers = sorted(self.clients), list[int]()
        while trio.current_time() < until:
            numbers.append(await self.mark(names[len(numbers) % len(names)]))
            await trio.sleep(gap)
        return numbers

    async def print_lines(self, console: str, interval: float) -> None:
        """A line typed every ``interval`` s (on a fixed schedule) until cancelled."""
        pad = b"x" * 40
        number, next_at = 0, trio.current_time()
        while True:
            number += 1
            async with self.locks[console]:
                await self.clients[console].send(
                    b"load %s %08d %s\r" % (console.encode(), number, pad)
                )
            self.typed += 1
            next_at += interval
            await trio.sleep_until(next_at)


async def wait_marked(watches: list[Watch], numbers: list[int], typist: Typist) -> None:
    """Until every stream has every mark typed into its console, or `LATE` s (then the
    missing ones count as lost)."""

    def missing() -> int:
        return sum(
            1
            for w in watches
            for n in numbers
            if typist.sent[n][0] == w.console and n not in w.arrived and w.closed is None
        )

    with trio.move_on_after(LATE):
        while missing():  # noqa: ASYNC110 - arrivals are many small facts, polled
            await trio.sleep(0.05)


@dataclass(frozen=True)
class Latency:
    times: list[float]
    lost: int

    @property
    def p50(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")

    @property
    def p99(self) -> float:
        return pct(self.times, 0.99) if self.times else float("nan")


def latencies(watches: list[Watch], numbers: list[int], typist: Typist, site: str) -> Latency:
    """Milliseconds from typing each mark to its arrival, over the streams of ``site``."""
    times, lost = [], 0
    for watch in (w for w in watches if w.site == site):
        for number in numbers:
            console, sent = typist.sent[number]
            if console != watch.console:
                continue
            if number in watch.arrived:
                times.append((watch.arrived[number] - sent) * 1000)
            else:
                lost += 1
    return Latency(times, lost)


# --- one run ----------------------------------------------------------------------------


class Meter:
    """CPU of the gateway, of the peers, of this bench, over a window."""

    def __init__(self, fleet: Fleet) -> None:
        self.gateway = pid_of(fleet.gateways[0].consrv)
        self.peers = [pid_of(peer.consrv) for peer in fleet.peers]

    def read(self) -> tuple[float, float, float, float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        return (
            time.monotonic(),
            cpu_seconds(self.gateway),
            sum(cpu_seconds(pid) for pid in self.peers),
            me.ru_utime + me.ru_stime,
        )

    @staticmethod
    def percent(start: tuple[float, ...], end: tuple[float, ...]) -> list[float]:
        """% of one core for each CPU figure between two readings."""
        elapsed = end[0] - start[0]
        return [(b - a) / elapsed * 100 for a, b in zip(start[1:], end[1:], strict=True)]


def received(watches: list[Watch], site: str = "gateway") -> int:
    """Bytes the streams of ``site`` have delivered so far."""
    return sum(w.received for w in watches if w.site == site)


def plan_watches(
    fleet: Fleet, streams: int, gateway: list[SignedIn], hosts: dict[str, SignedIn]
) -> list[Watch]:
    """``streams`` gateway streams over the consoles (and users) in turn; each console
    once on its host's own page."""
    consoles = [(peer, f"ioc-{index:02d}") for index, peer in enumerate(fleet.peers)]
    watches = []
    for number in range(streams):
        peer, name = consoles[number % len(consoles)]
        session = gateway[number % len(gateway)]
        url = session.base.replace("https://", "wss://") + f"/c/{name}%40{peer.name}/stream"
        watches.append(Watch("gateway", name, url, session))
    for peer, name in consoles:
        session = hosts[peer.name]
        url = session.base.replace("https://", "wss://") + f"/c/{name}/stream"
        watches.append(Watch("host", name, url, session))
    return watches


async def one_run(
    fleet: Fleet,
    args: argparse.Namespace,
    sessions: tuple[list[SignedIn], dict[str, SignedIn]],
    first: int,
) -> dict[str, float]:
    row: dict[str, float] = {"load1": os.getloadavg()[0]}
    machine = MachineCpu()
    gateway = fleet.gateways[0].consrv
    meter = Meter(fleet)
    row["rss_before"] = rss_mb(gateway)
    start = meter.read()
    await trio.sleep(args.window)
    row["cpu_none"], row["peers_none"], _ = meter.percent(start, meter.read())
    typist = Typist(fleet, first)
    watches = plan_watches(fleet, args.streams, *sessions)
    async with trio.open_nursery() as nursery:
        await nursery.start(typist.run)
        with trio.fail_after(120):  # opening 70 streams on a loaded machine
            for watch in watches:
                await nursery.start(follow, watch)
        # Every stream live: one mark on every console, seen by every stream.
        ready = [await typist.mark(name) for name in sorted(typist.clients)]
        await wait_marked(watches, ready, typist)
        late = [
            f"{w.site}:{w.console}"
            for w in watches
            if not any(typist.sent[n][0] == w.console and n in w.arrived for n in ready)
        ]
        if late:
            raise RuntimeError(f"streams not live after {LATE} s (no mark): {late}")
        await trio.sleep(SETTLE)
        row["rss_open"] = rss_mb(gateway)
        start = meter.read()
        await trio.sleep(args.window)
        row["cpu_idle"], row["peers_idle"], _ = meter.percent(start, meter.read())
        idle = await typist.marks(args.gap, trio.current_time() + args.window)
        await wait_marked(watches, idle, typist)
        printing = sorted(typist.clients)[: args.printing]
        async with trio.open_nursery() as printers:
            for name in printing:
                printers.start_soon(typist.print_lines, name, args.interval)
            await trio.sleep(SETTLE)
            start, sent, typed = meter.read(), received(watches), typist.typed
            host = received(watches, "host")
            busy = await typist.marks(args.gap, trio.current_time() + args.window)
            row["kb_s"] = (received(watches) - sent) / args.window / 1000
            row["host_kb_s"] = (received(watches, "host") - host) / args.window / 1000
            row["typed_s"] = (typist.typed - typed) / args.window
            row["cpu_busy"], row["peers_busy"], row["bench_busy"] = meter.percent(
                start, meter.read()
            )
            await wait_marked(watches, busy, typist)
            printers.cancel_scope.cancel()
        row["rss_after"] = rss_mb(gateway)
        quiet = [n for n in busy if typist.sent[n][0] not in printing]
        for name, numbers in (("idle", idle), ("busy", busy), ("quiet", quiet)):
            for site in ("gateway", "host"):
                found = latencies(watches, numbers, typist, site)
                row[f"{name}_{site}_p50"], row[f"{name}_{site}_p99"] = found.p50, found.p99
                row[f"{name}_{site}_lost"] = found.lost
        row["closed"] = sum(1 for w in watches if w.closed is not None)
        row["machine_busy"] = machine.busy() * 100
        nursery.cancel_scope.cancel()
    return row


# --- a real browser, for a sanity row ----------------------------------------------------

WATCH_SCRIPT = """
const term = window.consrvTerminal; window.wfSeen = {};
term.onWriteParsed(function () {
  const b = term.buffer.active;
  for (let i = Math.max(0, b.length - 8); i < b.length; i++) {
    const line = b.getLine(i); if (!line) continue;
    for (const m of line.translateToString(true).matchAll(/wfm(\\d{8})\\./g)) {
      if (!(m[1] in window.wfSeen)) {
        window.wfSeen[m[1]] = performance.timeOrigin + performance.now();
      }
    }
  }
});
"""


def chromium_latency(fleet: Fleet, profile: Path, samples: int) -> dict[str, float]:
    """One headless chromium on ``ioc-00``'s page, through the gateway then on its host:
    ms from a marked line typed into procServ to the line in the page's terminal (the
    page's own clock, `performance.timeOrigin`, against the bench's: the same machine)."""
    from tests.web.browser import chromium, wait_for_screen  # selenium: only with --chromium
    from tests.witness import Witness

    peer = fleet.peers[0]
    pages = {
        "gateway": (sign_in(fleet, "alice"), f"/c/ioc-00@{peer.name}"),
        "host": (sign_in(fleet, "alice", peer), "/c/ioc-00"),
    }
    row: dict[str, float] = {}
    number = 90_000_000
    with chromium(profile) as driver, Witness(peer.procservs["ioc-00"].socket) as witness:
        for site, (session, path) in pages.items():
            driver.get(session.base + "/static/app.css")  # the origin, to set the cookie on
            driver.add_cookie(
                {"name": COOKIE, "value": session.cookie, "path": "/", "secure": True}
            )
            driver.get(session.base + path)
            wait_for_screen(driver, "ioc-00", timeout=30)
            driver.execute_script(WATCH_SCRIPT)
            times = []
            for _ in range(samples):
                number += 1
                sent = time.time() * 1000
                witness.send(b"wfm%08d.\r" % number)
                deadline = time.monotonic() + LATE
                seen = None
                while seen is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                    seen = driver.execute_script(f"return window.wfSeen['{number:08d}'] || null")
                    witness.read()  # drain procServ's copy
                if seen is not None:
                    times.append(float(seen) - sent)
            row[f"chromium_{site}_p50"] = statistics.median(times) if times else float("nan")
            row[f"chromium_{site}_lost"] = samples - len(times)
    return row


# --- the report ---------------------------------------------------------------------------


ROWS: list[tuple[str, str, int]] = [
    ("gateway RSS before the streams (MB)", "rss_before", 0),
    ("gateway RSS, streams open (MB)", "rss_open", 0),
    ("gateway RSS after the printing (MB)", "rss_after", 0),
    ("gateway CPU, no stream, idle (% core)", "cpu_none", 2),
    ("gateway CPU, streams open, idle (% core)", "cpu_idle", 2),
    ("gateway CPU, consoles printing (% core)", "cpu_busy", 1),
    ("lines typed into the printing consoles (per second, all)", "typed_s", 0),
    ("the streams through the gateway, printing (kB/s in all)", "kb_s", 0),
    ("the host pages' streams, printing (kB/s in all)", "host_kb_s", 0),
    ("peers' CPU, all together, no stream (% core)", "peers_none", 2),
    ("peers' CPU, all together, idle (% core)", "peers_idle", 2),
    ("peers' CPU, all together, printing (% core)", "peers_busy", 1),
    ("the bench's own CPU, printing (% core)", "bench_busy", 1),
    ("latency idle p50: gateway / host page (ms)", "idle_*_p50", 1),
    ("latency idle p99: gateway / host page (ms)", "idle_*_p99", 1),
    ("latency printing p50: gateway / host page (ms)", "busy_*_p50", 1),
    ("latency printing p99: gateway / host page (ms)", "busy_*_p99", 1),
    ("… of the consoles not printing, p50 (ms)", "quiet_*_p50", 1),
    ("… of the consoles not printing, p99 (ms)", "quiet_*_p99", 1),
    ("marks lost: gateway / host page", "*_lost", 0),
    ("streams the server closed", "closed", 0),
    ("load average (1 min) at the start", "load1", 2),
    ("all cores busy during the run (%)", "machine_busy", 0),
]


def _values(runs: list[dict[str, float]], key: str) -> list[float | None]:
    return [run.get(key) for run in runs]


def table(runs: list[dict[str, float]]) -> str:
    lines = ["| figure | median (lowest-highest) |", "|---|---:|"]
    for title, key, digits in ROWS:
        if key == "*_lost":
            sides = [
                cell([run["idle_" + s + "_lost"] + run["busy_" + s + "_lost"] for run in runs], 0)
                for s in ("gateway", "host")
            ]
            text = " / ".join(sides)
        elif "*" in key:
            text = " / ".join(
                cell(_values(runs, key.replace("*", s)), digits) for s in ("gateway", "host")
            )
        else:
            text = cell(_values(runs, key), digits)
        lines.append(f"| {title} | {text} |")
    chromium = [run for run in runs if "chromium_gateway_p50" in run]
    for site in ("gateway", "host") if chromium else ():
        text = cell(_values(chromium, f"chromium_{site}_p50"), 1)
        lost = int(sum(run[f"chromium_{site}_lost"] for run in chromium))
        lines.append(
            f"| chromium: mark on the {site} page's terminal, p50 (ms) | {text} (lost {lost}) |"
        )
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> list[dict[str, float]]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="consrv-webfleet-") as tmp:
        root = Path(tmp)
        with running_fleet(root, peers=args.peers, gateways=(GATEWAY,), source=with_web) as fleet:
            allow_streams(fleet, args.streams + 8)
            gateway = [sign_in(fleet, user) for user in USERS]
            hosts = {peer.name: sign_in(fleet, "olga", peer) for peer in fleet.peers}
            for number in range(1, args.runs + 1):
                print(f"bench.webfleet: run {number}/{args.runs}...", file=sys.stderr, flush=True)
                row = trio.run(one_run, fleet, args, (gateway, hosts), number * 1_000_000)
                print(f"bench.webfleet: {row}", file=sys.stderr, flush=True)
                runs.append(row)
            if args.chromium:
                print("bench.webfleet: chromium...", file=sys.stderr, flush=True)
                try:
                    runs[-1].update(chromium_latency(fleet, root / "chromium", args.chromium))
                except Exception as exc:  # noqa: BLE001 - a sanity row: the runs' table stands
                    print(f"bench.webfleet: chromium failed: {exc!r}", file=sys.stderr)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=20, help="real consrv peers")
    parser.add_argument(
        "--streams", type=int, default=50, help="browser streams through the gateway"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds of each measurement")
    parser.add_argument("--printing", type=int, default=10, help="consoles printing")
    parser.add_argument(
        "--interval", type=float, default=0.01, help="seconds between printed lines"
    )
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between two marks")
    parser.add_argument("--chromium", type=int, default=0, metavar="N", help="N marks in chromium")
    args = parser.parse_args(argv)
    if args.peers < 1 or args.streams < 1 or args.runs < 1:
        parser.error("--peers, --streams and --runs must be at least 1")
    runs = measure(args)
    command = " ".join(["python -m bench.webfleet", *(argv if argv is not None else sys.argv[1:])])
    print(f"Command: `{command}` ({args.runs} runs; {os.cpu_count()} cores)\n")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
