"""The PV front: this host's consoles and IOCs as read-only PVs, posted from the core's events.

Owns which PVs exist (one set per console under ``pva.prefix``, one for the host
under ``pva.host_prefix``), following the registry (consoles added, removed,
patterns changed) and a reload; and when each is posted: at once from a console's
events (state, child, writer, viewers) and the IOC units' health polls, and for
what grows by itself (seconds since the last output, silence, the restarts of the
last hour falling) from one task that sleeps until something is due, posting at
most once a second. Nothing runs while nothing changes and nobody watches.
Knows the core only through the registry's `Observer` hook and `IocManager.observers`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

import trio
from prometheus_client.metrics_core import CounterMetricFamily, Metric

from consrv import __version__
from consrv.config import PvaConfig
from consrv.console import Console, Observer
from consrv.host import UnitHealth
from consrv.protocol.procserv import ChildExited
from consrv.pva import health
from consrv.pva.health import NO_ALARM, Kind, Reading, RestartWindow, SilenceSpec
from consrv.pva.remote import RemotePv, RemoteServer

if TYPE_CHECKING:  # p4p is loaded in consrv's process only without pva.own_process
    from consrv.pva.pvs import Pv, PvServer

logger = logging.getLogger(__name__)

# Seconds since the last output is posted at most this often (and only while watched).
TICK = 1.0
_SECONDS = Kind("d", units="s", high=86400.0, description="seconds since the last output")
_PID = Kind("l", description="the IOC's process id under procServ (0: none)", high=4194304.0)
_RESTARTS = Kind("l", description="IOC restarts in the last hour", high=60.0)
_VIEWERS = Kind("l", description="attached sessions", high=100.0)
_COUNT = Kind("l", description="output lines matched")
_STATE = Kind("enum", health.STATE_CHOICES)
_UNIT = Kind("enum", health.UNIT_CHOICES)
_TEXT = Kind("s")


class Consoles(Protocol):
    """The registry as the front sees it."""

    consoles: dict[str, Console]
    observers: list[Observer]


class Units(Protocol):
    """The IOC manager as the front sees it."""

    health: dict[str, UnitHealth]
    observers: list[Callable[[Mapping[str, UnitHealth]], None]]


class _ConsolePvs:
    """One console's PVs and what is tracked to post them."""

    def __init__(self, console: Console, prefix: str, added: float) -> None:
        self.console, self.prefix, self.added = console, prefix, added
        self.pvs: dict[str, Pv | RemotePv] = {}
        self.restarts = RestartWindow()
        self.child_starts = console.stats.child_starts
        # A child seen on this procServ connection: its next start is a restart. The first
        # start under a new procServ is not (the unit's own restarts count through NRestarts).
        self.had_child = console.child_running is not None
        self.n_restarts: int | None = None
        self.unit_key: tuple[str, str, int | None] | None = None  # what the Unit PV shows
        self.watched = False  # SilentFor has a subscriber
        self.silent_at: float | None = None  # when the silence alarm is due (wall clock)

    def age(self, now: float) -> float:
        last = self.console.stats.last_output
        return max(0.0, now - (last if last is not None else self.added))


class PvaFront:
    """The PV server and every PV, fed by the core's change hooks."""

    def __init__(
        self,
        config: PvaConfig,
        registry: Consoles,
        units: Units | None = None,
        *,
        clock: Callable[[], float] = time.time,
        process: bool = False,
    ) -> None:
        self.config, self.registry, self.units, self._clock = config, registry, units, clock
        self.process = process  # serve from a child process (consrv/pva/remote.py)
        self.server: PvServer | RemoteServer | None = None
        self._consoles: dict[str, _ConsolePvs] = {}
        self._host: dict[str, Pv | RemotePv] = {}
        self._dirty: set[str] = set()  # consoles with new output since the last tick
        self._kick = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._last_tick = -math.inf

    # -- running ---------------------------------------------------------
    async def serve(
        self, *, task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve PVs until cancelled; ``task_status`` gets the server's settings in force."""
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            if self.process:
                remote = RemoteServer(self.config.server_conf())
                await nursery.start(remote.run)
                self.server = remote
            else:
                from consrv.pva.pvs import PvServer

                self.server = PvServer(self.config.server_conf())
            await self._serve(task_status)

    async def _serve(self, task_status: trio.TaskStatus[dict[str, str]]) -> None:
        assert self.server is not None
        try:
            self._start()
            if isinstance(self.server, RemoteServer):
                await self.server.sync()  # served when the log line says so
            conf = self.server.conf()
            logger.info(
                "pva on %s tcp port %s udp port %s: %d PV(s) under %s",
                conf["EPICS_PVAS_INTF_ADDR_LIST"], conf["EPICS_PVAS_SERVER_PORT"],
                conf["EPICS_PVAS_BROADCAST_PORT"], len(self.server.pvs),
                self.config.host_pv_prefix(),
            )  # fmt: skip
            task_status.started(conf)
            await self._tick_forever()
        finally:
            self._stop()

    def _start(self) -> None:
        self._add_host_pvs()
        for console in list(self.registry.consoles.values()):
            self._add_console(console)
        self._post_host(self._clock())
        self.registry.observers.append(self)
        if self.units is not None:
            self.units.observers.append(self.health_changed)
            self.health_changed(self.units.health)

    def _stop(self) -> None:
        if self in self.registry.observers:
            self.registry.observers.remove(self)
        if self.units is not None and self.health_changed in self.units.observers:
            self.units.observers.remove(self.health_changed)
        assert self.server is not None
        self.server.stop()

    def reconfigure(self, config: PvaConfig) -> None:
        """A reload: new names (every PV made again), or new alarms (every PV posted again)."""
        old, self.config = self.config, config
        if self.server is None:
            return
        renamed = (old.host, old.prefix, old.host_prefix) != (
            config.host, config.prefix, config.host_prefix,
        )  # fmt: skip
        if renamed:
            for name in list(self._host):
                self.server.remove(name)
            self._host.clear()
            self._add_host_pvs()
        for entry in list(self._consoles.values()):
            if renamed:
                self._remove_console(entry.console)
                self._add_console(entry.console)
            else:
                self._sync_text(entry)
                self._post_all(entry, self._clock())
        self._post_host(self._clock())
        self._kick.set()

    def collect(self) -> Iterator[Metric]:
        """``consrv_pva_server_restarts_total``: the PV server's process started again."""
        restarts = self.server.restarts if isinstance(self.server, RemoteServer) else 0
        yield CounterMetricFamily(
            "consrv_pva_server_restarts",
            "Times the PV server's own process died and was started again.",
            value=restarts,
        )

    # -- the registry's and the IOC manager's hooks (trio thread) ----------
    # They must not raise (the registry and a console's reader call them): a failure is
    # logged, and the next change posts again.
    def console_added(self, console: Console) -> None:
        with _logged(f"{console.name}: making its PVs"):
            self._add_console(console)
            self._post_host(self._clock())

    def console_removed(self, console: Console) -> None:
        with _logged(f"{console.name}: removing its PVs"):
            self._remove_console(console)
            self._post_host(self._clock())

    def console_changed(self, console: Console, what: str) -> None:
        with _logged(f"{console.name}: posting its PVs after {what}"):
            self._console_changed(console, what)

    def health_changed(self, units: Mapping[str, UnitHealth]) -> None:
        with _logged("posting the IOC units' PVs"):
            self._health_changed(units)

    def _add_console(self, console: Console) -> None:
        if self.server is None or console.name in self._consoles:
            return
        now = self._clock()
        entry = _ConsolePvs(console, self.config.console_prefix(console.name), now)
        self._consoles[console.name] = entry
        first = self._readings(entry, now)
        for suffix, kind, reading in first:
            self._add(entry, suffix, kind, reading, now)
        self._sync_patterns(entry, now)
        self._sync_text(entry)
        self._plan_silence(entry, now)

    def _remove_console(self, console: Console) -> None:
        entry = self._consoles.get(console.name)
        if entry is None or entry.console is not console or self.server is None:
            return
        del self._consoles[console.name]
        self._dirty.discard(console.name)
        for name in entry.pvs:
            self.server.remove(name)

    def _console_changed(self, console: Console, what: str) -> None:
        entry = self._consoles.get(console.name)
        if entry is None or entry.console is not console:
            return
        if what == "output":
            silent = entry.pvs.get(entry.prefix + "SilentFor")
            last = silent.last if silent is not None else None
            if last is not None and last.severity != NO_ALARM:
                # An alarm that output clears is posted now, not at the next tick: the
                # once-a-second rule is for the count, not for an alarm going away.
                self._post_all(entry, self._clock())
                return
            if not self._dirty:
                self._kick.set()
            self._dirty.add(console.name)
            return
        now = self._clock()
        if what == "state":
            entry.had_child = False
        if what == "child":
            self._count_restart(entry, now)
        if what == "patterns":
            self._sync_patterns(entry, now)
        self._post_all(entry, now)
        if what in ("state", "viewers"):
            self._post_host(now)

    def _count_restart(self, entry: _ConsolePvs, now: float) -> None:
        """procServ started its child again (after ^X, a crash): one restart."""
        starts = entry.console.stats.child_starts
        if starts > entry.child_starts and entry.had_child:
            entry.restarts.record(now, starts - entry.child_starts)
            self._kick.set()  # the count falls again in an hour
        entry.child_starts, entry.had_child = starts, True

    def _health_changed(self, units: Mapping[str, UnitHealth]) -> None:
        now = self._clock()
        for name, unit_health in units.items():
            entry = self._consoles.get(name)
            key = (unit_health.active_state, unit_health.sub_state, unit_health.n_restarts)
            if entry is None or key == entry.unit_key:
                continue  # a poll that changed nothing posts nothing
            entry.unit_key = key
            seen, entry.n_restarts = entry.n_restarts, unit_health.n_restarts
            fresh = unit_health.n_restarts
            if seen is not None and fresh is not None and fresh > seen:
                entry.restarts.record(now, fresh - seen)
                self._kick.set()
            self._post_all(entry, now)

    # -- readings --------------------------------------------------------
    def _readings(self, entry: _ConsolePvs, now: float) -> list[tuple[str, Kind, Reading]]:
        console, settings = entry.console, self.config.for_console(entry.console.name)
        alarms = settings.alarms
        exit_event = console.stats.last_exit
        exit_text = "" if exit_event is None else _exit_text(exit_event)
        unit_health = self.units.health.get(console.name) if self.units is not None else None
        return [
            ("State", _STATE, health.state(console.up, console.child_running, exit_text, alarms)),
            ("Pid", _PID, health.count(console.child_pid or 0)),
            ("Unit", _UNIT, health.unit(unit_health, alarms)),
            ("Restarts", _RESTARTS, health.restarts(
                entry.restarts.count(now), settings.crash_loop, alarms)),
            ("SilentFor", _SECONDS, health.silence(entry.age(now), settings.silent_after, alarms)),
            ("Writer", _TEXT, health.text(console.writer_name())),
            ("Viewers", _VIEWERS, health.count(len(console.viewers))),
        ]  # fmt: skip

    def _post_all(self, entry: _ConsolePvs, now: float) -> None:
        for suffix, _kind, reading in self._readings(entry, now):
            entry.pvs[entry.prefix + suffix].post(reading, now)
        self._post_patterns(entry, now)
        self._plan_silence(entry, now)

    def _add(self, entry: _ConsolePvs, suffix: str, kind: Kind, first: Reading, now: float) -> None:
        assert self.server is not None
        name = entry.prefix + suffix
        fresh = watched = None
        if suffix == "SilentFor":
            fresh = self._fresh_silence(entry)
            watched = self._watched(entry)
        spec = self._silence_spec(entry) if suffix == "SilentFor" else None
        pv = self.server.make(name, kind, first, now, fresh=fresh, watched=watched, spec=spec)
        entry.pvs[name] = pv

    def _fresh_silence(self, entry: _ConsolePvs) -> Callable[[], tuple[Reading, float]]:
        """p4p's thread, a first subscriber: the silence now (reads two floats)."""

        def fresh() -> tuple[Reading, float]:
            settings = self.config.for_console(entry.console.name)
            now = self._clock()
            return health.silence(entry.age(now), settings.silent_after, settings.alarms), now

        return fresh

    def _silence_spec(self, entry: _ConsolePvs) -> Callable[[], SilenceSpec]:
        """For a PV server in its own process: what makes the silence there (a fresh value)."""

        def spec() -> SilenceSpec:
            settings = self.config.for_console(entry.console.name)
            last = entry.console.stats.last_output
            since = last if last is not None else entry.added
            return since, settings.silent_after, settings.alarms.silent

        return spec

    def _watched(self, entry: _ConsolePvs) -> Callable[[bool], None]:
        def watched(first: bool) -> None:  # p4p's thread: hand over to trio's
            if self._token is not None:
                self._token.run_sync_soon(self._set_watched, entry, first)

        return watched

    def _set_watched(self, entry: _ConsolePvs, first: bool) -> None:
        entry.watched = first
        self._kick.set()

    def _sync_patterns(self, entry: _ConsolePvs, now: float) -> None:
        assert self.server is not None
        matcher = entry.console.matcher
        counts = dict(matcher.counts) if matcher is not None else {}
        wanted = {f"{entry.prefix}Pattern:{name}" for name in counts}
        for name in [n for n in entry.pvs if ":Pattern:" in n[len(entry.prefix) - 1 :]]:
            if name not in wanted:
                self.server.remove(name)
                del entry.pvs[name]
        for pattern, value in counts.items():
            if f"{entry.prefix}Pattern:{pattern}" not in entry.pvs:
                self._add(entry, f"Pattern:{pattern}", _COUNT, health.count(value), now)

    def _post_patterns(self, entry: _ConsolePvs, now: float) -> None:
        matcher = entry.console.matcher
        if matcher is None:
            return
        for pattern, value in matcher.counts.items():
            pv = entry.pvs.get(f"{entry.prefix}Pattern:{pattern}")
            if pv is not None:
                pv.post(health.count(value), now)

    def _sync_text(self, entry: _ConsolePvs) -> None:
        """The last output line, only for a console that opts in (``text: true``)."""
        assert self.server is not None
        name = entry.prefix + "LastLine"
        wanted = self.config.for_console(entry.console.name).text
        if wanted and name not in entry.pvs:
            self._add(entry, "LastLine", _TEXT, self._last_line(entry), self._clock())
        elif not wanted and name in entry.pvs:
            self.server.remove(name)
            del entry.pvs[name]

    def _last_line(self, entry: _ConsolePvs) -> Reading:
        return health.text(health.last_line(entry.console.scrollback.last_lines(2)))

    # -- the host's PVs ----------------------------------------------------
    def _add_host_pvs(self) -> None:
        assert self.server is not None
        now, prefix = self._clock(), self.config.host_pv_prefix()
        for suffix, kind, reading in self._host_readings():
            self._host[prefix + suffix] = self.server.make(prefix + suffix, kind, reading, now)

    def _host_readings(self) -> list[tuple[str, Kind, Reading]]:
        entries = self._consoles.values()
        up = sum(entry.console.up for entry in entries)
        sessions = sum(len(entry.console.viewers) for entry in entries)
        return [
            ("ConsolesUp", Kind("l", description="consoles connected to procServ"),
             health.count(up)),
            ("Consoles", Kind("l", description="consoles"), health.count(len(entries))),
            ("Sessions", Kind("l", description="attached sessions"), health.count(sessions)),
            ("Version", _TEXT, health.text(__version__)),
        ]  # fmt: skip

    def _post_host(self, now: float) -> None:
        prefix = self.config.host_pv_prefix()
        for suffix, _kind, reading in self._host_readings():
            pv = self._host.get(prefix + suffix)
            if pv is not None:
                pv.post(reading, now)

    # -- what grows by itself: one task, asleep until something is due -----
    def _plan_silence(self, entry: _ConsolePvs, now: float) -> None:
        after = self.config.for_console(entry.console.name).silent_after
        if after is None:
            entry.silent_at = None
            return
        due = now - entry.age(now) + after
        entry.silent_at = due if due > now else None  # past: its alarm is posted already

    def _next_due(self) -> float:
        """Wall-clock time the tick is next needed (inf: only a kick wakes it)."""
        if self._dirty or any(entry.watched for entry in self._consoles.values()):
            return -math.inf  # once a second
        due = math.inf
        for entry in self._consoles.values():
            for when in (entry.silent_at, entry.restarts.next_expiry()):
                if when is not None and when < due:
                    due = when
        return due

    async def _tick_forever(self) -> None:
        while True:
            due = self._next_due()
            if due != -math.inf:
                wait = math.inf if due == math.inf else max(0.0, due - self._clock()) + 0.001
                with trio.move_on_after(wait):
                    await self._kick.wait()
            self._kick = trio.Event()
            await trio.sleep_until(max(self._last_tick + TICK, trio.current_time()))
            self._last_tick = trio.current_time()
            self.tick(self._clock())

    def tick(self, now: float) -> None:
        """Post what is due at ``now``: new output's effects, watched silences, alarms due."""
        dirty, self._dirty = self._dirty, set()
        for name, entry in self._consoles.items():
            due = entry.silent_at is not None and entry.silent_at <= now
            expiry = entry.restarts.next_expiry()
            if name in dirty or due or (expiry is not None and expiry <= now):
                self._post_all(entry, now)
                if name in dirty and self.config.for_console(name).text:
                    entry.pvs[entry.prefix + "LastLine"].post(self._last_line(entry), now)
            elif entry.watched:  # only the silence grows by itself: the rest is posted at once
                self._post_silence(entry, now)

    def _post_silence(self, entry: _ConsolePvs, now: float) -> None:
        settings = self.config.for_console(entry.console.name)
        reading = health.silence(entry.age(now), settings.silent_after, settings.alarms)
        entry.pvs[entry.prefix + "SilentFor"].post(reading, now)


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    try:
        yield
    except Exception:  # a PV must never stop a console or a reload: logged, not raised
        logger.exception("%s failed", what)


def _exit_text(event: ChildExited) -> str:
    if event.signal is not None:
        return f"killed by signal {event.signal}"
    return f"exit {event.exit_code or 0}"


def all_names(front: PvaFront) -> Iterable[str]:
    """Every PV name served now (for tests and the bench)."""
    return list(front.server.pvs) if front.server is not None else []
