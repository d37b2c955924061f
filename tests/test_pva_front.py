"""The PV front in process: real `Console` objects, a real p4p server, p4p's client.

The consoles are not connected (their procServ is tests/integration/test_pva.py's
business): what is driven here is what a console tells its observers (a writer, a
viewer, output, new patterns) and what the front makes of time (silence, the tick).
The front's clock is a plain variable, so the silence alarm is checked without waiting.
Policy: loopback only, port 0 (TCP and UDP); every wait bounded and named.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from p4p.client.thread import Context

from consrv.access import Role
from consrv.config import Pattern, PvaConfig, PvaConsole
from consrv.console import Console, Observer, Viewer
from consrv.ioc import UnitHealth
from consrv.patterns import LineMatcher
from consrv.pva import PvaFront
from consrv.pva import health as pv_health
from consrv.pva.front import all_names
from consrv.pva.pvs import Kind, Pv
from consrv.upstream import UnixTarget
from tests.fakes import MemorySink
from tests.pvaclient import client_conf

HOST = "fronthost"
P = f"CONSRV:{HOST}:c1:"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeRegistry:
    """What the front reads of the registry: its consoles and its observer list."""

    def __init__(self, *consoles: Console) -> None:
        self.consoles = {c.name: c for c in consoles}
        self.observers: list[Observer] = []
        for console in consoles:
            console.observers = self.observers  # as Registry.add does


class FakeUnits:
    def __init__(self) -> None:
        self.health: dict[str, UnitHealth] = {}
        self.observers: list[Callable[[Mapping[str, UnitHealth]], None]] = []

    def poll(self, **states: str) -> None:
        self.health = {name: unit(state) for name, state in states.items()}
        for observer in self.observers:
            observer(self.health)


def unit(state: str, sub: str = "dead", restarts: int = 0) -> UnitHealth:
    return UnitHealth(f"ioc@{state}.service", "loaded", state, sub, restarts, None, None, None,
                      None, None)  # fmt: skip


def config(**console: object) -> PvaConfig:
    settings = PvaConsole(**console)  # type: ignore[arg-type]
    return PvaConfig(host=HOST, server_port=0, broadcast_port=0, defaults=settings)


class Served:
    def __init__(self, front: PvaFront, ctx: Context, clock: Clock) -> None:
        self.front, self.ctx, self.clock = front, ctx, clock

    async def get(self, name: str) -> object:
        return await trio.to_thread.run_sync(lambda: self.ctx.get(name, timeout=5))

    async def value(self, name: str) -> object:
        got = await self.get(name)
        raw = got.raw  # type: ignore[attr-defined]
        if raw.getID().startswith("epics:nt/NTEnum"):
            return raw["value.choices"][raw["value.index"]]
        return raw["value"]

    async def severity(self, name: str) -> int:
        got = await self.get(name)
        return int(got.raw["alarm.severity"])  # type: ignore[attr-defined]


@pytest.fixture
def console(tmp_path: Path) -> Console:
    return Console("c1", UnixTarget(tmp_path / "nowhere"), scrollback=4096)


@asynccontextmanager
async def serving(
    registry: FakeRegistry, settings: PvaConfig, units: FakeUnits | None = None
) -> AsyncIterator[Served]:
    clock = Clock()
    front = PvaFront(settings, registry, units, clock=clock)
    async with trio.open_nursery() as nursery:
        conf = await nursery.start(front.serve)
        with Context("pva", conf=client_conf(conf), useenv=False) as ctx:
            yield Served(front, ctx, clock)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def served(console: Console) -> AsyncIterator[Served]:
    async with serving(FakeRegistry(console), config(silent_after=10.0), FakeUnits()) as one:
        yield one


async def test_the_pvs_of_a_console_and_its_host(served: Served) -> None:
    names = set(all_names(served.front))
    assert {P + n for n in ("State", "Pid", "Unit", "Restarts", "SilentFor", "Writer",
                            "Viewers")} <= names  # fmt: skip
    assert {
        f"CONSRV:{HOST}:{n}" for n in ("ConsolesUp", "Consoles", "Sessions", "Version")
    } <= names
    assert P + "LastLine" not in names  # no console text unless a console opts in
    assert await served.value(P + "State") == "down"
    assert await served.severity(P + "State") == 2
    assert await served.value(f"CONSRV:{HOST}:Consoles") == 1


async def test_a_writer_and_viewers_follow_the_console(served: Served, console: Console) -> None:
    alice = Viewer(MemorySink(), user="alice", role=Role.RW, limit=1 << 20)
    olga = Viewer(MemorySink(), user="olga", role=Role.RO, limit=1 << 20)
    console.attach(alice, write=True)
    console.attach(olga)
    assert await served.value(P + "Writer") == "alice"
    assert await served.value(P + "Viewers") == 2
    assert await served.value(f"CONSRV:{HOST}:Sessions") == 2
    console.detach(alice)
    assert await served.value(P + "Writer") == ""
    assert await served.value(P + "Viewers") == 1


async def test_silence_is_minor_past_its_limit_and_output_clears_it(
    served: Served, console: Console
) -> None:
    clock, front = served.clock, served.front
    clock.now += 9
    front.tick(clock.now)
    assert await served.severity(P + "SilentFor") == 0  # 9 s: not due, nothing posted
    clock.now += 2
    front.tick(clock.now)
    assert await served.severity(P + "SilentFor") == 1
    assert await served.value(P + "SilentFor") == 11.0
    console.stats.last_output = clock.now
    console.changed("output")
    front.tick(clock.now)
    assert await served.severity(P + "SilentFor") == 0
    assert await served.value(P + "SilentFor") == 0.0


async def test_a_first_subscriber_gets_the_silence_of_now(served: Served) -> None:
    served.clock.now += 3600  # nobody watched: nothing was posted meanwhile
    assert await served.value(P + "SilentFor") == 3600.0


async def test_unit_polls_post_only_changes(served: Served) -> None:
    units = served.front.units
    assert isinstance(units, FakeUnits)
    units.poll(c1="failed")
    assert await served.value(P + "Unit") == "failed"
    assert await served.severity(P + "Unit") == 2
    pv = next(p for name, p in served.front.server.pvs.items() if name == P + "Unit")  # type: ignore[union-attr]
    before = pv.last
    units.poll(c1="failed")
    assert pv.last is before


async def test_patterns_and_text_come_and_go_with_the_settings(console: Console) -> None:
    console.matcher = LineMatcher([Pattern("oops", re.compile(b"OOPS"))])
    settings = config()
    async with serving(FakeRegistry(console), settings) as served:
        assert await served.value(P + "Pattern:oops") == 0
        console.matcher.feed(b"OOPS\n")
        console.scrollback.append(b"password: hunter2\nready\n")
        console.changed("output")
        served.front.tick(served.clock.now)
        assert await served.value(P + "Pattern:oops") == 1
        console.matcher = None
        console.changed("patterns")
        assert P + "Pattern:oops" not in all_names(served.front)
        served.front.reconfigure(dataclasses.replace(settings, defaults=PvaConsole(text=True)))
        assert await served.value(P + "LastLine") == "ready"
        served.front.reconfigure(dataclasses.replace(settings, host="renamed"))
        assert "CONSRV:renamed:c1:State" in all_names(served.front)
        assert P + "State" not in all_names(served.front)
        with pytest.raises(TimeoutError):
            await trio.to_thread.run_sync(lambda: served.ctx.get(P + "State", timeout=1))


async def test_the_front_leaves_the_registry_as_it_found_it(console: Console) -> None:
    registry, units = FakeRegistry(console), FakeUnits()
    async with trio.open_nursery() as inner:
        front = PvaFront(config(), registry, units)
        await inner.start(front.serve)
        assert registry.observers == [front]
        assert units.observers == [front.health_changed]
        inner.cancel_scope.cancel()
    assert (registry.observers, units.observers) == ([], [])


def test_readings() -> None:
    alarms = PvaConsole().alarms
    assert pv_health.state(False, None, "", alarms).severity == 2
    assert pv_health.state(True, False, "exit 1", alarms).message == "IOC not running (exit 1)"
    assert pv_health.state(True, None, "", alarms).value == 1
    assert pv_health.unit(unit("inactive"), alarms).severity == 1
    assert pv_health.unit(unit("activating", "auto-restart"), alarms).severity == 2
    assert pv_health.unit(unit("weird"), alarms).value == len(pv_health.UNIT_CHOICES) - 1
    assert pv_health.restarts(3, 3, alarms).severity == 2
    assert pv_health.restarts(2, 3, alarms).severity == 0
    assert pv_health.silence(10.5, 10.0, alarms).value == 10.0
    assert pv_health.silence(10.5, None, alarms).severity == 0
    assert pv_health.last_line(b"a\r\nsecret \x1b[1mb\x1b[0m\npartial") == "secret [1mb[0m"
    assert pv_health.last_line(b"partial") is None


def test_the_restart_window_forgets_after_an_hour() -> None:
    window = pv_health.RestartWindow()
    window.record(100.0)
    window.record(200.0, 2)
    assert window.count(300.0) == 3
    assert window.next_expiry() == 3700.0
    assert window.count(3700.0) == 2
    assert window.count(3800.0) == 0
    assert window.next_expiry() is None


def test_a_timestamp_never_goes_back() -> None:
    """A post whose time was taken before another thread's post is stamped no earlier."""
    pv = Pv("T:stamp", Kind("l"), pv_health.count(0), 100.0)
    assert pv.post(pv_health.count(1), 200.0)
    assert pv.post(pv_health.count(2), 150.0)
    assert not pv.post(pv_health.count(2), 300.0)  # unchanged: not posted
    raw = pv.shared.current().raw
    assert (raw["value"], raw["timeStamp.secondsPastEpoch"]) == (2, 200)
    pv.close()


async def test_a_failure_in_the_front_never_reaches_the_registry(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A console whose name no PV may carry (the registry never makes one): logged only."""
    odd = Console("bad name", UnixTarget(tmp_path / "odd"), scrollback=64)
    served.front.console_added(odd)  # must not raise into Registry.add
    assert "bad name: making its PVs failed" in caplog.text
    assert not any("bad name" in name for name in all_names(served.front))
    assert await served.value(f"CONSRV:{HOST}:Consoles") == 1


def thread_name(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().strip()


async def test_the_pv_servers_threads_run_below_consrvs_priority(served: Served) -> None:
    """pvxs' threads, lowered so that a client storm yields to the consoles' path."""
    server = served.front.server
    assert server is not None
    own = os.getpriority(os.PRIO_PROCESS, 0)
    names = {thread_name(tid) for tid in server.lowered}
    assert {"PVXTCP", "PVXUDP"} <= names
    for tid in server.lowered:
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, own + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
