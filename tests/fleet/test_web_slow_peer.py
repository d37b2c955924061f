"""A browser that stops reading a peer's stream in the gateway's page stalls nobody.

The shared fleet (tests/fleet/sim.py). Alice opens a peer's console in the gateway's
page (a real WebSocket client with a small receive buffer) and stops reading while
that console prints tens of MB (procServ's `cat` child echoing what a direct client
types). Meanwhile another user's stream of another peer's console keeps its latency,
the gateway's list still hears of a change on the stalled stream's own host, and the
gateway's memory stays bounded: the bounds are the stream's queue (the bridge pauses
the peer's channel above it), the SSH window, and the peer's own per-viewer bound
(it drops for the slow viewer and says so once she reads again).
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import select
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

from tests.fleet.sim import DUPLICATE, Fleet
from tests.waits import wait_until
from tests.witness import Witness

pytestmark = pytest.mark.integration

FLOOD = 32 << 20  # bytes typed into the stalled stream's console (cat prints them back)
# Growth of the gateway's resident memory allowed while one stream is stalled under the
# flood: its queue (256 KiB), the hop's SSH window (2 MiB), socket buffers and the
# allocator's slack; an unbounded queue would hold most of FLOOD.
RSS_BOUND = 20 << 20
# A marker typed on another console reaching another user's page through the gateway,
# at most (a loaded 2-core machine shared with the flood: generous, named).
LATENCY_BOUND = 2.0
FRESH_BOUND = 5.0  # s: a change on the stalled stream's own host in the gateway's list
RCVBUF = 32 << 10  # the stalled client's socket receive buffer


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


def flood(path: Path, total: int, done: threading.Event) -> None:
    """Type `total` bytes of 1,000-byte lines into a console (cat prints them back), as a
    direct procServ client that also reads everything procServ sends it."""
    chunk = (b"f" * 999 + b"\r") * 64
    with Witness(path) as witness:
        witness.wait_greeted()
        pending, sent = b"", 0
        while sent < total:
            _, writable, _ = select.select([witness.sock], [witness.sock], [], 0.1)
            witness.read()
            witness.seen.clear()
            if not writable:
                continue
            pending = pending or chunk
            try:
                count = witness.sock.send(pending)
            except BlockingIOError:
                continue
            pending, sent = pending[count:], sent + count
    done.set()


def test_a_stalled_browser_on_a_peers_stream_stalls_neither_the_link_nor_others(
    fleet: Fleet,
) -> None:
    slow_peer, other_peer = fleet.peers[1], fleet.peers[16]
    slow, other = f"ioc-01@{slow_peer.name}", f"ioc-16@{other_peer.name}"
    quiet = f"{DUPLICATE}@{slow_peer.name}"  # the stalled stream's host's other console
    gateway = fleet.gateways[0].consrv.process
    assert gateway is not None
    with (
        httpx.Client(verify=False, timeout=20) as alice,  # noqa: S501 (the test's own cert)
        httpx.Client(verify=False, timeout=20) as bob,  # noqa: S501
        httpx.Client(verify=False, timeout=20) as olga,  # noqa: S501
    ):
        base, alice_cookie = sign_in(fleet, "alice", alice)
        _, bob_cookie = sign_in(fleet, "bob", bob)
        _, olga_cookie = sign_in(fleet, "olga", olga)
        with stream(base, alice_cookie, slow, rcvbuf=RCVBUF) as stalled, \
                stream(base, bob_cookie, other) as watched:  # fmt: skip
            read_until(stalled, b"attached to ioc-01", 15)  # then alice reads no more
            read_until(watched, b"attached to ioc-16", 15)
            reader = Reader(watched)
            reader.start()
            before = resident(gateway.pid)
            done = threading.Event()
            flooder = threading.Thread(
                target=flood, args=(slow_peer.procservs["ioc-01"].socket, FLOOD, done),
                daemon=True,
            )  # fmt: skip
            flooder.start()
            latencies: list[float] = []
            with Witness(other_peer.procservs["ioc-16"].socket) as witness:
                while not done.is_set() or len(latencies) < 5:
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
                    assert flooder.is_alive() or done.is_set(), "the flood ended early"
            flooder.join(timeout=120)
            assert done.is_set(), "the flood typed all its bytes"
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
    assert max(latencies) < LATENCY_BOUND, latencies
    assert fresh < FRESH_BOUND, fresh
    assert grown < RSS_BOUND, f"the gateway grew by {grown >> 20} MiB under the flood"
    assert b"bytes dropped" in received, received[-300:]
    assert len(received) < FLOOD // 2, len(received)
