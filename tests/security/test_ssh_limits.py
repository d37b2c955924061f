"""Connections that never log in (issue 13, item 1): descriptors run out, one source floods.

The attacker is a plain TCP client that connects and says nothing (or stops after
its version line), from its own loopback address (127.0.0.2, 127.0.0.3, ...; all
of 127.0.0.0/8 is loopback), so consrv counts it as a source of its own. Whether
consrv let a connection in is read off the wire: an admitted one gets consrv's
``SSH-2.0-`` line, a refused one is closed at once. consrv runs as a process,
with a low open-file limit where the test needs one (``prlimit``, as systemd's
``LimitNOFILE=`` would set it); the figures come from its ``/metrics``.

Policy: loopback only, port 0, every wait bounded and named; every process and
socket is closed by the test (consrv and procServ by the ``site`` fixture).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio_asyncio

from tests.harness import Consrv
from tests.integration.test_metrics_live import key, scrape
from tests.reliability.conftest import Site
from tests.reliability.probes import CAT, open_fds, run_command
from tests.sshclients import scripted_ssh

pytestmark = pytest.mark.integration

IOC = "lim-ioc"
NOFILE = 128  # consrv's open-file limit in the descriptor test
FLOOD = 300  # idle connections against it
UNAUTHENTICATED = key("consrv_ssh_unauthenticated_connections")
ANSWER = 10  # seconds for consrv to greet or close a connection under the caps (ms, idle)


def ssh_section(site: Site, **limits: Any) -> dict[str, Any]:
    return {"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"), **limits}


class LimitedConsrv(Consrv):
    """``consrv serve`` with at most ``nofile`` open files (soft and hard), via prlimit."""

    def __init__(self, site: Site, config: Any, nofile: int) -> None:
        super().__init__(config, site.root)
        self.nofile = nofile

    def spawn(self) -> LimitedConsrv:
        argv = [sys.executable, "-m", "consrv", "serve", "--config", str(self.config)]
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *argv],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        return self


async def knock(port: int, source: str, timeout: float = 5) -> trio.SocketStream | None:
    """A TCP connection to consrv's SSH port from ``source`` that sends nothing; None if
    the connection was not even accepted by the kernel in ``timeout`` (a full backlog)."""
    with trio.move_on_after(timeout):
        return await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    return None


async def admitted(stream: trio.SocketStream, timeout: float = 3) -> bool:
    """True if consrv greeted the connection (``SSH-2.0-...``) within ``timeout``; False
    if it closed it, or has not accepted it yet (it waits in the kernel's backlog)."""
    data = b""
    with trio.move_on_after(timeout):
        while b"\n" not in data:
            try:
                chunk = await stream.receive_some(256)
            except trio.BrokenResourceError:  # reset: closed with our data unread
                return False
            if not chunk:
                return False
            data += chunk
        assert data.startswith(b"SSH-2.0-"), data
        return True
    return False


@asynccontextmanager
async def idle_connections(
    port: int, source: str, count: int
) -> AsyncIterator[list[trio.SocketStream]]:
    """``count`` connections from ``source`` that send nothing, opened all at once."""
    streams: list[trio.SocketStream] = []

    async def one() -> None:
        stream = await knock(port, source)
        if stream is not None:
            streams.append(stream)

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(one)
        yield streams
    finally:
        for stream in streams:
            await stream.aclose()


async def count_admitted(streams: list[trio.SocketStream], timeout: float = 3) -> int:
    """How many of ``streams`` consrv let in (each read concurrently, ``timeout`` at most:
    an answered one returns at once, greeted or closed)."""
    results: list[bool] = []

    async def one(stream: trio.SocketStream) -> None:
        results.append(await admitted(stream, timeout))

    async with trio.open_nursery() as nursery:
        for stream in streams:
            nursery.start_soon(one, stream)
    return sum(results)


async def wait_metric(port: int, sample: str, want: float, timeout: float = 10) -> None:
    deadline = trio.current_time() + timeout
    while (got := (await scrape(port)).get(sample)) != want:
        if trio.current_time() > deadline:
            raise AssertionError(f"{sample} is {got}, not {want}, after {timeout} s")
        await trio.sleep(0.1)


async def test_running_out_of_descriptors_keeps_the_writer_and_resumes_after(site: Site) -> None:
    """300 idle connections against an open-file limit of 128: before, accept()'s EMFILE
    stopped consrv ("cannot serve: Too many open files") and threw the writer out."""
    site.procserv(IOC, CAT)
    config = site.config(
        {IOC: site.socket_of(IOC)},
        ssh=ssh_section(site, max_startups=1000, max_startups_per_source=1000),
        metrics={"listen": "127.0.0.1:0"},
    )
    consrv = LimitedConsrv(site, config, nofile=NOFILE)
    site._consrv = consrv
    site._stack.callback(site._stop_consrv)
    consrv.start()
    metrics = consrv.metrics_port()
    assert consrv.process is not None
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", IOC, pty=True) as writer,
    ):
        await writer.expect(rb"attached to lim-ioc", stderr=True)
        writer.send(b"before the flood\r")
        await writer.expect(rb"before the flood")
        async with idle_connections(site.port, "127.0.0.2", FLOOD) as streams:
            held = await count_admitted(streams)
            assert consrv.process.poll() is None, f"consrv stopped:\n{consrv.stderr()}"
            assert held < NOFILE, f"consrv held {held} idle connections past its fd limit"
            writer.send(b"during the flood\r")
            await writer.expect(rb"during the flood")
            during = await scrape(metrics)
            fds_during = open_fds(consrv.process.pid)
        refused = during[key("consrv_ssh_connections_refused_total", reason="descriptors")]
        emfile = during[key("consrv_ssh_accept_errors_total", error="EMFILE")]
        assert refused + emfile > 0, during.consrv_lines()
        assert fds_during < NOFILE, fds_during
        await wait_metric(metrics, UNAUTHENTICATED, 0)
        reply = await run_command(site.port, site.key("bob"), "console", "list")
        assert reply.status == 0, reply  # accepting again
        assert IOC.encode() in reply.stdout, reply
        writer.send(b"after the flood\r")
        await writer.expect(rb"after the flood")
    assert "cannot serve" not in consrv.stderr()
    assert "Traceback" not in consrv.stderr()


async def test_unauthenticated_connections_are_capped_per_source_and_in_total(
    site: Site,
) -> None:
    """One source may hold ``max_startups_per_source`` connections that have not logged
    in, all sources together ``max_startups``; users from elsewhere still get in."""
    site.procserv(IOC, CAT)
    site.start(
        {IOC: site.socket_of(IOC)},
        ssh=ssh_section(site, max_startups=30, max_startups_per_source=10),
        metrics={"listen": "127.0.0.1:0"},
    )
    metrics = site.consrv.metrics_port()
    async with trio_asyncio.open_loop():
        async with idle_connections(site.port, "127.0.0.2", 25) as flood:
            assert await count_admitted(flood, ANSWER) == 10  # the other 15 closed at once
            reply = await run_command(site.port, site.key("olga"), "observer", "list")
            assert reply.status == 0, reply  # another source logs in meanwhile
            async with (
                idle_connections(site.port, "127.0.0.3", 10) as second,
                idle_connections(site.port, "127.0.0.4", 10) as third,
            ):
                assert await count_admitted([*second, *third], ANSWER) == 20
                async with idle_connections(site.port, "127.0.0.5", 1) as late:
                    assert await count_admitted(late, ANSWER) == 0  # 30 in total already
                got = await scrape(metrics)
        await wait_metric(metrics, UNAUTHENTICATED, 0)
        reply = await run_command(site.port, site.key("olga"), "observer", "list")
        assert reply.status == 0, reply
    refused = "consrv_ssh_connections_refused_total"
    assert got[key(refused, reason="per_source")] == 15, got.consrv_lines()
    assert got[key(refused, reason="startups")] == 1, got.consrv_lines()
    assert got[UNAUTHENTICATED] == 30, got.consrv_lines()
    assert "refusing new connections" in site.consrv.stderr()
