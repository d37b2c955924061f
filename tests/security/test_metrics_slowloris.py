"""The metrics port under a slowloris, and where it listens (issue 13, item 8).

40 half-sent ``GET /metrics`` requests used to fill all 16 places of consrv's
responder for its 10 s request timeout, and the next Prometheus scrape was
reset. Now a new connection takes the place of the oldest one still sending its
request, and a request head gets 5 s. The attacker here sends 200 request heads
without their last blank line, and keeps them open; scrapes must still be
answered, at once, again and again.

Where it listens: a bare port (``metrics.listen: 9750``) means loopback, and
``check-config`` warns about a non-loopback address.

Policy: loopback only, port 0, every wait bounded and named; consrv and procServ
are stopped by the ``site`` fixture; every socket is closed by the test.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import trio

from tests.integration.test_metrics_live import fetch
from tests.reliability.conftest import Site
from tests.reliability.probes import CAT
from tests.waits import deadline

pytestmark = pytest.mark.integration

IOC = "met-ioc"
SLOW_CLIENTS = 200
HALF_REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # no blank line: never ends
SCRAPE_BOUND = 2.0  # seconds; Prometheus's default scrape timeout is 10 s


async def timed_scrape(port: int) -> float:
    started = time.monotonic()
    with deadline(SCRAPE_BOUND, f"a scrape of 127.0.0.1:{port} to be answered"):
        head, body = await fetch(port)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"consrv_build_info" in body
    return time.monotonic() - started


async def closed_by_server(stream: trio.SocketStream) -> bool:
    """True if consrv has closed this connection (EOF or reset), without waiting."""
    with trio.move_on_after(0.01):
        try:
            return await stream.receive_some(1) == b""
        except trio.BrokenResourceError:
            return True
    return False


async def test_scrapes_are_answered_while_200_slow_clients_hold_half_sent_requests(
    site: Site,
) -> None:
    site.procserv(IOC, CAT)
    site.start({IOC: site.socket_of(IOC)}, metrics={"listen": "127.0.0.1:0"})
    port = site.consrv.metrics_port()
    slow: list[trio.SocketStream] = []
    try:
        for _ in range(SLOW_CLIENTS):
            with deadline(5, "a slow client's connection to the metrics port"):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            slow.append(stream)
            await stream.send_all(HALF_REQUEST)
        took = [await timed_scrape(port) for _ in range(5)]
        for _ in range(SLOW_CLIENTS):  # the slowloris comes back
            with deadline(5, "a slow client's connection to the metrics port"):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            slow.append(stream)
            await stream.send_all(HALF_REQUEST)
            if len(slow) % 50 == 0:
                took.append(await timed_scrape(port))
        closed = sum([await closed_by_server(stream) for stream in slow])
    finally:
        for stream in slow:
            await stream.aclose()
    print(f"scrapes took {max(took):.3f} s at most; consrv closed {closed} slow clients")
    assert closed >= 2 * SLOW_CLIENTS - 64, closed  # at most 64 places, scrapes kept one


async def test_a_request_head_that_never_ends_is_closed_after_its_deadline(site: Site) -> None:
    site.procserv(IOC, CAT)
    site.start({IOC: site.socket_of(IOC)}, metrics={"listen": "127.0.0.1:0"})
    port = site.consrv.metrics_port()
    with deadline(5, "a connection to the metrics port"):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(HALF_REQUEST)
        started = time.monotonic()
        with deadline(10, "consrv to close a request head that never ends"):  # 5 s due
            while not await closed_by_server(stream):
                await stream.send_all(b"X-Slow: 1\r\n")
                await trio.sleep(0.5)
    assert 4.0 < time.monotonic() - started < 8.0


def check_config(site: Site, listen: object) -> subprocess.CompletedProcess[str]:
    config = site.config({}, metrics={"listen": listen})
    return subprocess.run(
        [sys.executable, "-m", "consrv", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip


@pytest.mark.parametrize("listen", ["0.0.0.0:9750", "[::]:9750", "192.0.2.7:9750"])
def test_check_config_warns_when_metrics_listen_beyond_loopback(site: Site, listen: str) -> None:
    checked = check_config(site, listen)
    assert checked.returncode == 0, checked
    assert "warning: metrics.listen" in checked.stderr, checked
    assert "not a loopback address" in checked.stderr


@pytest.mark.parametrize("listen", [9750, "127.0.0.1:9750", "[::1]:9750", "localhost:9750"])
def test_loopback_metrics_pass_check_config_quietly(site: Site, listen: object) -> None:
    checked = check_config(site, listen)
    assert checked.returncode == 0, checked
    assert checked.stderr == "", checked.stderr


def test_a_bare_metrics_port_listens_on_loopback(site: Site) -> None:
    site.procserv(IOC, CAT)
    site.start({IOC: site.socket_of(IOC)}, metrics={"listen": 0})  # port 0: any free one
    line = site.consrv.wait_for_log(rb"metrics on http://(\S+):\d+/metrics")
    assert line.group(1) == b"127.0.0.1", line.group(0)
