"""The web view behind a real authenticating reverse proxy (Debian's nginx, with the
nginx block of docs/web.md), and a real browser connection that stopped reading.

Policy: one consrv, one procServ (a console printing fast) and one nginx for the
module; loopback only (the untrusted peer is 127.0.0.2); every wait is bounded and
named; every process is stopped at the end.
"""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websocket

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import ssh_argv
from tests.waits import wait_until
from tests.web.nginx import Nginx, free_port, nginx

pytestmark = pytest.mark.integration

FAST = "fast"
# About 2 MB/s of numbered lines: enough to fill a stalled connection's buffers at once.
FAST_CHILD = [
    sys.executable,
    "-c",
    "import sys, time\n"
    "n = 0\n"
    "pad = 'x' * 80\n"
    "while True:\n"
    "    sys.stdout.write(''.join(f'line {n + i:09d} {pad}\\r\\n' for i in range(200)))\n"
    "    sys.stdout.flush(); n += 200; time.sleep(0.01)\n",
]
PASSWORD = "olga-pw"
SEND_TIMEOUT = 2.0  # web.limits.send_timeout in this module's config
STREAMS = 2  # web.limits.streams_per_user in this module's config


@dataclass
class Proxied:
    root: Path
    consrv: Consrv
    proxy: Nginx
    direct: str  # consrv's own web address
    metrics: int
    keys: dict[str, UserKey]

    def auth(self) -> dict[str, str]:
        token = base64.b64encode(f"olga:{PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5).read()
        match = re.search(rf"^{re.escape(name)} (\S+)$", text.decode(), re.MULTILINE)
        assert match, f"no {name} in /metrics"
        return float(match.group(1))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    root = tmp_path_factory.mktemp("proxy")
    keys = {name: make_key(root, name) for name in ("alice", "olga")}
    port = free_port()
    with ProcServ(FAST, root, FAST_CHILD) as fast:
        config = {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "metrics": {"listen": "127.0.0.1:0"},
            "log_dir": str(root / "logs"),
            "users": {k.name: {"keys": [k.public]} for k in keys.values()},
            "defaults": {"rw": ["alice"], "ro": ["*"]},
            "consoles": {FAST: {"socket": str(fast.socket)}},
            "web": {
                "listen": "127.0.0.1:0",
                "url": f"http://127.0.0.1:{port}",
                "trusted_proxies": ["127.0.0.1"],
                "identity_header": "X-Remote-User",
                "limits": {
                    "send_timeout": f"{SEND_TIMEOUT:g}s",
                    "viewer_buffer": "64M",
                    "streams_per_user": STREAMS,
                },
            },
        }
        write_config(root / "consrv.yaml", config)
        consrv = Consrv(root / "consrv.yaml", root).start()
        try:
            bound = consrv.wait_for_log(rb"listening on (http://127\.0\.0\.1:\d+)").group(1)
            direct = bound.decode()
            with nginx(root, port, direct, {"olga": PASSWORD}) as proxy:
                yield Proxied(root, consrv, proxy, direct, consrv.metrics_port(), keys)
        finally:
            consrv.stop()


def test_through_the_proxy_the_header_names_the_user(proxied: Proxied) -> None:
    with httpx.Client(base_url=proxied.proxy.url, timeout=10) as client:
        assert client.get("/api/consoles").status_code == 401  # nginx: sign on first
        # The proxy overwrites the header: a client's own claim does not pass through.
        headers = {**proxied.auth(), "X-Remote-User": "alice"}
        listing = client.get("/api/consoles", headers=headers)
        assert listing.status_code == 200, listing.text
        assert [c["name"] for c in listing.json()["consoles"]] == [FAST]
        page = client.get("/", headers=headers)
        assert page.status_code == 200
        assert "olga" in page.text
        assert "alice" not in page.text


def test_the_header_from_an_untrusted_address_is_ignored(proxied: Proxied) -> None:
    claim = {"X-Remote-User": "olga"}
    untrusted = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=proxied.direct, transport=untrusted, timeout=10) as client:
        assert client.get("/api/consoles", headers=claim).status_code == 401
        page = client.get("/", headers=claim)
        assert page.status_code == 401
        assert "Not signed in" in page.text
    # The same request from the trusted address does sign in: the refusal above was
    # the address, not the header.
    with httpx.Client(base_url=proxied.direct, timeout=10) as client:
        assert client.get("/api/consoles", headers=claim).status_code == 200


def proxy_ws(proxied: Proxied, origin: str) -> websocket.WebSocket:
    url = proxied.proxy.url.replace("http://", "ws://") + f"/c/{FAST}/stream"
    headers = [f"{k}: {v}" for k, v in proxied.auth().items()]
    return websocket.create_connection(url, header=headers, origin=origin, timeout=10)


def test_the_console_streams_through_the_proxy_with_the_origin_rule(proxied: Proxied) -> None:
    ws = proxy_ws(proxied, origin=proxied.proxy.url)
    try:
        received = b""
        end = time.monotonic() + 10
        while not re.search(rb"line \d{9} x{80}\r", received):
            seen = received[-300:]
            assert time.monotonic() < end, f"waiting for console lines over the proxy: {seen!r}"
            opcode, data = ws.recv_data()
            assert opcode == websocket.ABNF.OPCODE_BINARY
            received += data
    finally:
        ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        proxy_ws(proxied, origin="http://evil.example")
    assert refused.value.status_code == 403


def no_streams(proxied: Proxied) -> None:
    """Until consrv counts no open stream (those of earlier tests ended)."""
    wait_until(lambda: proxied.metric("consrv_web_streams") == 0, "no web stream open")


def test_streams_over_the_users_cap_are_refused_through_the_proxy(proxied: Proxied) -> None:
    no_streams(proxied)
    streams = [proxy_ws(proxied, origin=proxied.proxy.url) for _ in range(STREAMS)]
    try:
        wait_until(
            lambda: proxied.metric("consrv_web_streams") == STREAMS,
            f"{STREAMS} streams open for olga",
        )
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            proxy_ws(proxied, origin=proxied.proxy.url)
        assert refused.value.status_code == 403
        assert proxied.metric("consrv_web_streams") == STREAMS
    finally:
        for ws in streams:
            ws.close()
    no_streams(proxied)
    proxy_ws(proxied, origin=proxied.proxy.url).close()  # a place again once they closed


def stalled_browser(proxied: Proxied) -> socket.socket:
    """A WebSocket to consrv that completes its handshake, then never reads again (its
    Origin is ``web.url``, the proxy's: with ``url`` set, no other counts)."""
    host = proxied.direct.removeprefix("http://")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", int(host.rpartition(":")[2])))
    key = base64.b64encode(b"stalled-browser!").decode()
    sock.sendall(
        f"GET /c/{FAST}/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Origin: {proxied.proxy.url}\r\nX-Remote-User: olga\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # one byte at a time: nothing of the stream is taken
        assert chunk, f"consrv closed the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_browser_that_stopped_reading_is_dropped_and_nobody_else_waits(
    proxied: Proxied,
) -> None:
    key = proxied.keys["olga"].private
    out = proxied.root / "observer.out"
    with out.open("wb") as sink:
        viewer = subprocess.Popen(
            ssh_argv(proxied.consrv.port, key, "observer", FAST, tty=False),
            stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_until(lambda: out.stat().st_size > 100_000, "the SSH observer to get output")
        no_streams(proxied)
        before = proxied.metric('consrv_web_streams_dropped_total{reason="not_reading"}')
        log = proxied.root / "logs" / f"{FAST}.log"
        sock = stalled_browser(proxied)
        opened = time.monotonic()
        try:
            wait_until(
                lambda: (
                    b"web stream of olga closed: too slow: not reading"
                    in proxied.consrv.stderr_path.read_bytes()
                ),
                "consrv to drop the browser that stopped reading",
                timeout=SEND_TIMEOUT + 10,
                seen=lambda: proxied.consrv.stderr()[-2000:],
            )
            took = time.monotonic() - opened
            # Dropped by the send timeout (not at once, not by the queue's bound), and in
            # time: the buffers on the way fill within a second at this rate.
            assert SEND_TIMEOUT <= took <= SEND_TIMEOUT + 8, took
            dropped = 'consrv_web_streams_dropped_total{reason="not_reading"}'
            assert proxied.metric(dropped) == before + 1
            assert proxied.metric('consrv_web_streams_dropped_total{reason="behind"}') == 0
            assert proxied.metric("consrv_web_streams") == 0
            # The console and the SSH observer flowed on all along, and still do.
            sizes = out.stat().st_size, log.stat().st_size
            wait_until(
                lambda: out.stat().st_size > sizes[0] + 100_000,
                "the SSH observer to get more output after the drop",
            )
            wait_until(
                lambda: log.stat().st_size > sizes[1] + 100_000,
                "the console's log to grow after the drop",
            )
        finally:
            sock.close()
    finally:
        viewer.kill()
        viewer.wait()
        assert viewer.stdin is not None
        viewer.stdin.close()
