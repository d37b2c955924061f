"""A browser that stops reading a peer's stream in the gateway's page stalls nobody.

The shared fleet (tests/fleet/sim.py). Alice opens a peer's console in the gateway's
page (a real WebSocket client with a small receive buffer) and stops reading while
that console prints tens of MB (a console added to the peer for the test, whose
child prints as many bytes as it is asked for). Meanwhile another user's stream of
another peer's console keeps its latency, the gateway's list still hears of a change
on the stalled stream's own host, and the gateway's memory stays bounded: the bounds
are the stream's queue (the bridge pauses the peer's channel above it), the SSH
window, and the peer's own per-viewer bound (it drops for the slow viewer and says
so once she reads again).
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import websocket

from consrv.demo import ProcServ
from tests.fleet.sim import DUPLICATE, Fleet, Peer
from tests.waits import wait_until
from tests.witness import Witness

pytestmark = pytest.mark.integration

FLOOD = 32 << 20  # bytes the stalled stream's console prints
# Growth of the gateway's resident memory allowed while one stream is stalled under the
# flood: its queue (256 KiB), the hop's SSH window (2 MiB), socket buffers and the
# allocator's slack; an unbounded queue would hold most of FLOOD.
RSS_BOUND = 20 << 20
# A marker typed on another console reaching another user's page through the gateway,
# at most (a loaded 2-core machine shared with the flood: generous, named).
LATENCY_BOUND = 2.0
FRESH_BOUND = 5.0  # s: a change on the stalled stream's own host in the gateway's list
RCVBUF = 32 << 10  # the stalled client's socket receive buffer
SEND_TIMEOUT = 10.0  # web.limits.send_timeout as the gateways have it (its default)
# Seconds from the flood to the stalled stream's drop, at most: the buffers on the way
# fill within seconds at this rate, then SEND_TIMEOUT (a loaded 2-core machine: generous).
DROP_BOUND = SEND_TIMEOUT + 15


def tail(path: Path, size: int = 4096) -> bytes:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - size))
        return file.read()


def resident(pid: int) -> int:
    """A process's resident memory (VmRSS), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def stream(base: str, cookie: str, target: str, rcvbuf: int | None = None
           ) -> Iterator[websocket.WebSocket]:  # fmt: skip
    """The page's WebSocket for `target` (``NAME@HOST``), closed (and its socket) at the end."""
    url = base.replace("https://", "wss://") + f"/c/{quote(target)}/stream"
    options = ((socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf),) if rcvbuf else ()
    ws = websocket.create_connection(
        url, header=[f"Cookie: {cookie}"], origin=base, timeout=15,
        sslopt={"cert_reqs": ssl.CERT_NONE}, sockopt=options,
    )  # fmt: skip
    try:
        yield ws
    finally:
        ws.close(timeout=1)
        ws.shutdown()  # type: ignore[no-untyped-call]


def sign_in(fleet: Fleet, user: str, client: httpx.Client) -> tuple[str, str]:
    """(base URL, cookie header) for `user` signed in with ``ssh console@gw web``."""
    link = fleet.ssh(user, "web")
    assert link.returncode == 0, link.stderr
    assert client.get(link.stdout.strip()).status_code == 303
    return link.stdout.split("/login/")[0], "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def read_until(ws: websocket.WebSocket, text: bytes, seconds: float) -> bytes:
    received, end = b"", time.monotonic() + seconds
    while text not in received:
        assert time.monotonic() < end, f"{text!r} in the stream: {received[-300:]!r}"
        received += ws.recv_data()[1]
    return received


class Reader(threading.Thread):
    """Reads a stream as fast as it comes; when each marker was first seen."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        super().__init__(daemon=True)
        self.ws, self.data, self.seen = ws, bytearray(), dict[bytes, float]()
        self.markers: list[bytes] = []

    def run(self) -> None:
        with contextlib.suppress(websocket.WebSocketException, OSError):
            while True:
                self.data += self.ws.recv_data()[1]
                for marker in self.markers:
                    if marker not in self.seen and marker in self.data:
                        self.seen[marker] = time.monotonic()
                del self.data[: max(0, len(self.data) - 4096)]


# A console that prints what it is asked for: a line N, then N bytes in lines of 999,
# then "printed-N".
GENERATOR = [
    "/bin/sh",
    "-c",
    "while read n; do head -c \"$n\" /dev/zero | tr '\\000' f | fold -w 999; echo; "
    "echo printed-$n; done",
]
FLOOD_CONSOLE = "flood-ioc"


@contextlib.contextmanager
def flood_console(fleet: Fleet, peer: Peer) -> Iterator[ProcServ]:
    """`FLOOD_CONSOLE` on `peer` (its config reloaded) while the test runs, then taken away
    (config and procServ), each change seen by the gateway's list."""
    original = json.loads(json.dumps(peer.config))
    ps = ProcServ(FLOOD_CONSOLE, peer.root, GENERATOR)
    ps.start()
    try:
        ps.wait_ready(timeout=30)
        peer.config["consoles"][FLOOD_CONSOLE] = {"socket": str(ps.socket)}
        reload(fleet, peer, present=True)
        yield ps
    finally:
        peer.config = original
        try:
            reload(fleet, peer, present=False)
        finally:
            ps.stop()


def reload(fleet: Fleet, peer: Peer, *, present: bool) -> None:
    peer.write()
    assert peer.consrv.process is not None
    peer.consrv.process.send_signal(signal.SIGHUP)
    wanted = f"{FLOOD_CONSOLE}@{peer.name}"

    def listed() -> bool:
        rows = fleet.listing("bob")["consoles"]
        return any(f"{r['name']}@{r['host']}" == wanted for r in rows) == present

    wait_until(listed, f"{wanted} {'in' if present else 'gone from'} the gateway's list",
               timeout=20, interval=0.2)  # fmt: skip


def test_a_stalled_browser_on_a_peers_stream_stalls_neither_the_link_nor_others(
    fleet: Fleet,
) -> None:
    slow_peer, other_peer = fleet.peers[1], fleet.peers[16]
    slow, other = f"{FLOOD_CONSOLE}@{slow_peer.name}", f"ioc-16@{other_peer.name}"
    quiet = f"{DUPLICATE}@{slow_peer.name}"  # the stalled stream's host's other console
    log = slow_peer.root / "logs" / f"{FLOOD_CONSOLE}.log"
    gateway = fleet.gateways[0].consrv.process
    assert gateway is not None
    with (
        flood_console(fleet, slow_peer) as generator,
        httpx.Client(verify=False, timeout=20) as alice,  # noqa: S501 (the test's own cert)
        httpx.Client(verify=False, timeout=20) as bob,  # noqa: S501
        httpx.Client(verify=False, timeout=20) as olga,  # noqa: S501
    ):
        base, alice_cookie = sign_in(fleet, "alice", alice)
        _, bob_cookie = sign_in(fleet, "bob", bob)
        _, olga_cookie = sign_in(fleet, "olga", olga)
        with stream(base, alice_cookie, slow, rcvbuf=RCVBUF) as stalled, \
                stream(base, bob_cookie, other) as watched:  # fmt: skip
            read_until(stalled, f"attached to {FLOOD_CONSOLE}".encode(), 15)  # then no more
            read_until(watched, b"attached to ioc-16", 15)
            reader = Reader(watched)
            reader.start()
            before = resident(gateway.pid)
            with Witness(generator.socket) as typist:
                typist.send(b"%d\r" % FLOOD)  # the console prints FLOOD bytes
            latencies: list[float] = []

            def flooded() -> bool:  # (the log rotates: its current file ends with the line)
                return log.exists() and f"printed-{FLOOD}".encode() in tail(log)

            with Witness(other_peer.procservs["ioc-16"].socket) as witness:
                while not flooded() or len(latencies) < 5:
                    marker = f"mark-{secrets.token_hex(4)}".encode()
                    reader.markers.append(marker)
                    sent = time.monotonic()
                    witness.send(marker + b"\r")
                    wait_until(functools.partial(reader.seen.__contains__, marker),
                               f"{marker!r} in bob's page while alice's stream is stalled",
                               timeout=LATENCY_BOUND + 10)  # fmt: skip
                    latencies.append(reader.seen[marker] - sent)
                    witness.read()
                    time.sleep(0.3)
                    assert len(latencies) < 300, f"no printed-{FLOOD} in {log} yet"
            # The stalled stream's own host is still heard: a viewer there shows in the list.
            with stream(base, olga_cookie, quiet) as third:
                read_until(third, f"attached to {DUPLICATE}".encode(), 15)
                started = time.monotonic()

                def viewed() -> bool:
                    rows = bob.get(f"{base}/api/consoles").json()["consoles"]
                    return any(r["id"] == quiet and r["viewers"] >= 1 for r in rows)

                wait_until(viewed, f"olga's viewer of {quiet} in the gateway's list",
                           timeout=FRESH_BOUND + 10)  # fmt: skip
                fresh = time.monotonic() - started
            grown = resident(gateway.pid) - before
            # Alice reads again: what she gets is bounded, and her host says what it dropped.
            stalled.settimeout(2)
            received = b""
            with contextlib.suppress(websocket.WebSocketTimeoutException):
                while True:  # until nothing comes for 2 s
                    received += stalled.recv_data()[1]
            if b"bytes dropped" not in received:  # said once she had room and more came
                with Witness(generator.socket) as typist:
                    typist.send(b"100\r")  # more output: first, what she missed
                stalled.settimeout(15)
                received += read_until(stalled, b"bytes dropped", 15)
    print(
        f"stalled stream: received {len(received)} of {FLOOD} bytes; gateway grew "
        f"{grown / 2**20:.1f} MiB; other stream's latency max {max(latencies):.3f} s "
        f"over {len(latencies)} markers; list fresh in {fresh:.2f} s"
    )
    assert max(latencies) < LATENCY_BOUND, latencies
    assert fresh < FRESH_BOUND, fresh
    assert grown < RSS_BOUND, f"the gateway grew by {grown >> 20} MiB under the flood"
    assert b"bytes dropped" in received, received[-300:]
    assert len(received) < FLOOD // 2, len(received)


def gateway_metric(fleet: Fleet, sample: str) -> float:
    """One sample of the first gateway's /metrics (0 if absent)."""
    gateway = fleet.gateways[0]
    url = f"http://{gateway.address}:{gateway.consrv.metrics_port()}/metrics"
    for row in httpx.get(url, timeout=10).text.splitlines():
        if row.startswith(sample + " "):
            return float(row.split()[-1])
    return 0.0


def test_a_browser_that_stops_reading_a_peers_stream_is_dropped_as_on_a_host(
    fleet: Fleet,
) -> None:
    slow_peer, other_peer = fleet.peers[1], fleet.peers[17]
    slow, other = f"{FLOOD_CONSOLE}@{slow_peer.name}", f"ioc-17@{other_peer.name}"
    dropped = 'consrv_web_streams_dropped_total{reason="not_reading"}'
    gateway = fleet.gateways[0].consrv
    with (
        flood_console(fleet, slow_peer) as generator,
        httpx.Client(verify=False, timeout=20) as alice,  # noqa: S501 (the test's own cert)
        httpx.Client(verify=False, timeout=20) as bob,  # noqa: S501
    ):
        base, alice_cookie = sign_in(fleet, "alice", alice)
        _, bob_cookie = sign_in(fleet, "bob", bob)
        before, log_start = gateway_metric(fleet, dropped), len(gateway.stderr())
        with stream(base, alice_cookie, slow, rcvbuf=RCVBUF) as stalled, \
                stream(base, bob_cookie, other) as watched:  # fmt: skip
            read_until(stalled, f"attached to {FLOOD_CONSOLE}".encode(), 15)  # then no more
            read_until(watched, b"attached to ioc-17", 15)
            reader = Reader(watched)
            reader.start()
            with Witness(generator.socket) as typist:
                typist.send(b"%d\r" % FLOOD)
            flooded = time.monotonic()
            closed = f"{slow}: web stream of alice closed: too slow: not reading"
            wait_until(lambda: closed in gateway.stderr()[log_start:],
                       "the gateway to drop alice's stream of a peer's console",
                       timeout=DROP_BOUND + 10, seen=lambda: gateway.stderr()[-2000:])  # fmt: skip
            took = time.monotonic() - flooded
            assert gateway_metric(fleet, dropped) == before + 1
            with Witness(other_peer.procservs["ioc-17"].socket) as witness:
                for _ in range(3):  # bob's stream of another peer flows on after the drop
                    marker = f"mark-{secrets.token_hex(4)}".encode()
                    reader.markers.append(marker)
                    witness.send(marker + b"\r")
                    wait_until(functools.partial(reader.seen.__contains__, marker),
                               f"{marker!r} in bob's page after alice's drop",
                               timeout=LATENCY_BOUND + 10)  # fmt: skip
                    witness.read()
    print(f"alice's stream of a peer's console dropped {took:.1f} s after the flood began")
    assert SEND_TIMEOUT <= took <= DROP_BOUND, took
