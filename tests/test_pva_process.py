"""The PV server in its own process (consrv/pva/remote.py, consrv/pva/worker.py).

A `PvaFront` with ``process=True`` (as the daemon runs it) in front of real `Console`
objects, the real child (``python -m consrv.pva.worker``) and p4p's client. The child
is killed with SIGKILL (a crash nothing else can cause on demand): it must be started
again on the same ports with every PV, a log line and the restart counted; and it must
end with the front. Policy: loopback only, port 0 (TCP and UDP); every wait bounded
and named; the child is stopped by the front (checked).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from p4p.client.thread import Context

from consrv.access import Role
from consrv.console import Console, Viewer
from consrv.pva import PvaFront
from consrv.pva.remote import RemoteServer
from tests.fakes import MemorySink
from tests.pvaclient import client_conf
from tests.test_pva_front import HOST, FakeRegistry, FakeUnits, P, config, console
from tests.waits import deadline

__all__ = ["console"]  # the fixture, shared with tests/test_pva_front.py

# A child started again needs its imports and its sockets: generous on a loaded machine.
RESTART_WITHIN = 60.0


@asynccontextmanager
async def child_served(console: Console) -> AsyncIterator[tuple[PvaFront, Context]]:
    front = PvaFront(config(silent_after=10.0), FakeRegistry(console), FakeUnits(), process=True)
    async with trio.open_nursery() as nursery:
        conf = await nursery.start(front.serve)
        with Context("pva", conf=client_conf(conf), useenv=False) as ctx:
            yield front, ctx
        nursery.cancel_scope.cancel()


def remote(front: PvaFront) -> RemoteServer:
    assert isinstance(front.server, RemoteServer)
    return front.server


async def get(ctx: Context, name: str) -> object:
    return await trio.to_thread.run_sync(lambda: ctx.get(name, timeout=10))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def thread_names(pid: int) -> dict[int, str]:
    tasks = Path(f"/proc/{pid}/task")
    return {int(t.name): (t / "comm").read_text().strip() for t in tasks.iterdir()}


async def test_the_child_serves_at_the_lowest_priority_and_ends_with_the_front(
    console: Console,
) -> None:
    async with child_served(console) as (front, ctx):
        pid = remote(front).pid
        assert pid is not None
        assert pid != os.getpid()
        assert int(await get(ctx, f"CONSRV:{HOST}:Consoles")) == 1  # type: ignore[call-overload]
        names = thread_names(pid)
        assert {"PVXTCP", "PVXUDP"} <= set(names.values()), names
        for tid in names:
            assert os.getpriority(os.PRIO_PROCESS, tid) == 19, names[tid]
        assert "PVXTCP" not in thread_names(os.getpid()).values()  # none in consrv's process
    assert not alive(pid), "the PV server's process outlived the front"


async def test_a_killed_child_is_started_again_with_every_pv(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    async with child_served(console) as (front, ctx):
        server = remote(front)
        old, conf = server.pid, server.conf()
        assert old is not None
        assert await get(ctx, P + "Viewers") == 0
        os.kill(old, signal.SIGKILL)
        seen = lambda: {"pid": server.pid, "restarts": server.restarts}  # noqa: E731
        with deadline(RESTART_WITHIN, "a new PV server process", seen=seen):
            while server.pid == old or server.restarts < 1:
                await trio.sleep(0.05)
        console.attach(Viewer(MemorySink(), user="olga", role=Role.RW, limit=1 << 20), write=True)
        assert server.conf() == conf  # the same ports: clients find it where it was
        assert await get(ctx, P + "Writer") == "olga"
        assert f"pva: the PV server process (pid {old}) was killed by signal 9" in caplog.text
        (family,) = list(front.collect())
        assert family.samples[0].value == 1
    assert not alive(server.pid or 0)


async def test_a_first_subscriber_gets_the_silence_of_now_from_the_child(
    console: Console,
) -> None:
    console.stats.last_output = time.time() - 3600  # nothing posted since: nobody watched
    registry = FakeRegistry(console)
    front = PvaFront(config(silent_after=10.0), registry, FakeUnits(), process=True)
    async with trio.open_nursery() as nursery:
        conf = await nursery.start(front.serve)
        with Context("pva", conf=client_conf(conf), useenv=False) as ctx:
            silent = await get(ctx, P + "SilentFor")
            assert 3600.0 <= float(silent) < 3700.0  # type: ignore[arg-type]
            assert silent.raw["alarm.severity"] == 1  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_a_first_child_that_cannot_start_stops_the_start() -> None:
    """A child that ends before it serves (here: one that does nothing) is an error at once."""
    server = RemoteServer({}, argv=[sys.executable, "-c", "pass"])
    async with trio.open_nursery() as nursery:
        with pytest.raises(RuntimeError, match="the PV server process said None"):
            await nursery.start(server.run)
