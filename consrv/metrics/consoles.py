"""What ``/metrics`` shows of the consoles and their IOC units, read at scrape time.

Owns the console and IOC series (names, labels, help) and the small read-only
Protocols they are read through (`MeteredConsole`, `RegistryView`, ...): must not
know consoles, sessions or systemd beyond those, and adds nothing to the console's
hot path (the collectors read the counters the console, its log and its matcher
keep anyway).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from consrv.access import Role
from consrv.metrics.labels import (
    AUTO_RESTART_MODES,
    LOAD_STATES,
    OTHER,
    ROLE_LABELS,
    SUB_STATES,
    UNIT_STATES,
    bounded,
)

# ---------------------------------------------------------------- what the collectors read


class ViewerView(Protocol):
    @property
    def role(self) -> Role: ...


class WriterLockView(Protocol):
    @property
    def writer(self) -> object | None: ...
    @property
    def since(self) -> float | None: ...  # epoch seconds


class ConsoleStatsView(Protocol):
    @property
    def connects(self) -> int: ...
    @property
    def disconnects(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...  # from procServ
    @property
    def bytes_in(self) -> int: ...  # to procServ
    @property
    def last_output(self) -> float | None: ...  # epoch seconds
    @property
    def child_starts(self) -> int: ...
    @property
    def exits(self) -> Mapping[tuple[str, int], int]: ...  # ("exit", code) / ("signal", signo)
    @property
    def viewer_bytes_dropped(self) -> int: ...


class ConsoleLogView(Protocol):
    @property
    def bytes_written(self) -> int: ...
    @property
    def write_errors(self) -> int: ...
    @property
    def rotations(self) -> int: ...
    @property
    def bytes_lost(self) -> int: ...


class MatcherView(Protocol):
    @property
    def counts(self) -> Mapping[str, int]: ...


class MeteredConsole(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def up(self) -> bool: ...
    @property
    def stats(self) -> ConsoleStatsView: ...
    @property
    def auto_restart(self) -> str | None: ...  # "ON" / "OFF" / "ONESHOT"
    @property
    def child_pid(self) -> int | None: ...
    @property
    def viewers(self) -> Collection[ViewerView]: ...
    @property
    def lock(self) -> WriterLockView: ...
    @property
    def log(self) -> ConsoleLogView | None: ...
    @property
    def recording(self) -> ConsoleLogView | None: ...
    @property
    def matcher(self) -> MatcherView | None: ...


class ConsoleSettingsView(Protocol):
    @property
    def ioc(self) -> bool: ...


class RegistryView(Protocol):
    @property
    def consoles(self) -> Mapping[str, MeteredConsole]: ...
    @property
    def settings(self) -> Mapping[str, ConsoleSettingsView]: ...


class UnitHealthView(Protocol):
    @property
    def unit(self) -> str: ...
    @property
    def load_state(self) -> str: ...
    @property
    def active_state(self) -> str: ...
    @property
    def sub_state(self) -> str: ...
    @property
    def n_restarts(self) -> int | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def exit_status(self) -> int | None: ...
    @property
    def memory_bytes(self) -> int | None: ...
    @property
    def cpu_seconds(self) -> float | None: ...


class IocHealthView(Protocol):
    @property
    def health(self) -> Mapping[str, UnitHealthView]: ...  # console name -> unit health


# ---------------------------------------------------------------- consoles


def _exit_labels(reason: str, code: int) -> tuple[str, str]:
    """Bounded labels for a child exit: a status 0-255 or a signal 1-64, else ``other``."""
    if (reason == "exit" and 0 <= code <= 255) or (reason == "signal" and 1 <= code <= 64):
        return reason, str(code)
    return OTHER, OTHER


def _counter(name: str, doc: str, *labels: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=["console", *labels])


def _gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=["console", *labels])


class _ConsoleFamilies:
    """The console metric families of one scrape, filled console by console."""

    def __init__(self) -> None:
        self.info = InfoMetricFamily(
            "consrv_console", "A configured console; ioc: it is an ioc@ unit.", labels=["console"]
        )
        self.up = _gauge("consrv_console_up", "1 while consrv is connected to procServ.")
        self.connects = _counter(
            "consrv_console_upstream_connects", "Connections made to procServ."
        )
        self.disconnects = _counter(
            "consrv_console_upstream_disconnects", "Connections to procServ lost or closed."
        )
        self.clients = _gauge("consrv_console_clients", "Attached users by role.", "role")
        self.writer = _gauge("consrv_console_writer", "1 while a user holds the write lock.")
        self.writer_since = _gauge(
            "consrv_console_writer_since_timestamp_seconds",
            "When the current writer got the write lock (Unix time).",
        )
        self.output = _counter("consrv_console_output_bytes", "Bytes of output from procServ.")
        self.input = _counter("consrv_console_input_bytes", "Bytes of user input sent to procServ.")
        self.dropped = _counter(
            "consrv_console_viewer_dropped_bytes",
            "Output bytes dropped for slow viewers (summed over viewers, past and present).",
        )
        self.last_output = _gauge(
            "consrv_console_last_output_timestamp_seconds", "When output last arrived (Unix time)."
        )
        self.child_up = _gauge(
            "consrv_console_child_up", "1 while procServ reports its child (the IOC) running."
        )
        self.child_starts = _counter(
            "consrv_console_child_starts", "Child (IOC) starts reported by procServ."
        )
        self.child_exits = _counter(
            "consrv_console_child_exits",
            "Child (IOC) exits reported by procServ, by exit status or signal number.",
            "reason",
            "code",
        )
        self.auto_restart = _gauge(
            "consrv_console_auto_restart",
            "procServ's auto-restart mode (1 for the current).",
            "mode",
        )
        self.log_written = _counter("consrv_console_log_written_bytes", "Bytes written to the log.")
        self.log_errors = _counter(
            "consrv_console_log_write_errors", "Failed log opens, rotations and writes."
        )
        self.log_rotations = _counter("consrv_console_log_rotations", "Log file rotations.")
        self.log_lost = _counter(
            "consrv_console_log_lost_bytes", "Bytes that could not be written to the log."
        )
        self.rec_written = _counter(
            "consrv_console_recording_written_bytes", "Bytes written to the recording."
        )
        self.rec_errors = _counter(
            "consrv_console_recording_write_errors", "Failed recording opens and writes."
        )
        self.rec_lost = _counter(
            "consrv_console_recording_lost_bytes", "Output bytes not recorded (write failures)."
        )
        self.patterns = _counter(
            "consrv_console_pattern_matches",
            "Output lines that matched a configured pattern.",
            "pattern",
        )

    def add(self, console: MeteredConsole, settings: ConsoleSettingsView | None) -> None:
        name = console.name
        ioc = settings is not None and settings.ioc
        self.info.add_metric([name], {"ioc": "true" if ioc else "false"})
        self._add_upstream(name, console)
        self._add_users(name, console)
        self._add_child(name, console)
        if console.log is not None:
            self._add_log(name, console.log)
        if console.recording is not None:
            self.rec_written.add_metric([name], console.recording.bytes_written)
            self.rec_errors.add_metric([name], console.recording.write_errors)
            self.rec_lost.add_metric([name], console.recording.bytes_lost)
        if console.matcher is not None:
            for pattern, count in list(console.matcher.counts.items()):
                self.patterns.add_metric([name, pattern], count)

    def _add_upstream(self, name: str, console: MeteredConsole) -> None:
        stats = console.stats
        self.up.add_metric([name], 1 if console.up else 0)
        self.connects.add_metric([name], stats.connects)
        self.disconnects.add_metric([name], stats.disconnects)
        self.output.add_metric([name], stats.bytes_out)
        self.input.add_metric([name], stats.bytes_in)
        if stats.last_output is not None:
            self.last_output.add_metric([name], stats.last_output)

    def _add_users(self, name: str, console: MeteredConsole) -> None:
        roles = Counter(viewer.role for viewer in list(console.viewers))
        for role in (Role.RW, Role.RO):
            self.clients.add_metric([name, ROLE_LABELS[role]], roles[role])
        lock = console.lock
        self.writer.add_metric([name], 0 if lock.writer is None else 1)
        if lock.writer is not None and lock.since is not None:
            self.writer_since.add_metric([name], lock.since)
        self.dropped.add_metric([name], console.stats.viewer_bytes_dropped)

    def _add_child(self, name: str, console: MeteredConsole) -> None:
        stats = console.stats
        self.child_up.add_metric([name], 1 if console.up and console.child_pid is not None else 0)
        self.child_starts.add_metric([name], stats.child_starts)
        exits: Counter[tuple[str, str]] = Counter()
        for (reason, code), count in list(stats.exits.items()):
            exits[_exit_labels(reason, code)] += count
        for labels, count in sorted(exits.items()):
            self.child_exits.add_metric([name, *labels], count)
        mode = (console.auto_restart or "").lower()
        for each in AUTO_RESTART_MODES:
            self.auto_restart.add_metric([name, each], 1 if mode == each else 0)

    def _add_log(self, name: str, log: ConsoleLogView) -> None:
        self.log_written.add_metric([name], log.bytes_written)
        self.log_errors.add_metric([name], log.write_errors)
        self.log_rotations.add_metric([name], log.rotations)
        self.log_lost.add_metric([name], log.bytes_lost)

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]


class ConsoleCollector:
    """Console metrics, read from the registry's consoles at each scrape."""

    def __init__(self, registry: RegistryView) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Metric]:
        families = _ConsoleFamilies()
        settings = self.registry.settings
        for name, console in sorted(list(self.registry.consoles.items())):
            families.add(console, settings.get(name))
        yield from families.all()


# ---------------------------------------------------------------- IOC units


class IocCollector:
    """``ioc@`` unit metrics, read from the latest batched ``systemctl show``."""

    def __init__(self, source: IocHealthView) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        state = _gauge("consrv_ioc_unit_state", "1 for the unit's ActiveState.", "state")
        info = InfoMetricFamily(
            "consrv_ioc_unit", "The unit, its LoadState and SubState.", labels=["console"]
        )
        restarts = _counter(
            "consrv_ioc_unit_restarts",
            "systemd's NRestarts: automatic restarts (0 again after a manual stop).",
        )
        started = _gauge("consrv_ioc_unit_start_time_seconds", "When the main process started.")
        status = _gauge("consrv_ioc_unit_exit_status", "Exit status of the last main process.")
        memory = _gauge("consrv_ioc_unit_memory_bytes", "Memory of the unit (MemoryCurrent).")
        cpu = _counter("consrv_ioc_unit_cpu_seconds", "CPU time of the unit (resets on restart).")
        for name, health in sorted(list(self.source.health.items())):
            for each in UNIT_STATES:
                state.add_metric([name, each], 1 if health.active_state == each else 0)
            info.add_metric([name], self._info(health))
            self._optional(restarts, name, health.n_restarts)
            self._optional(started, name, health.started_at)
            self._optional(status, name, health.exit_status)
            self._optional(memory, name, health.memory_bytes)
            self._optional(cpu, name, health.cpu_seconds)
        yield from (state, info, restarts, started, status, memory, cpu)

    @staticmethod
    def _info(health: UnitHealthView) -> dict[str, str]:
        return {
            "unit": health.unit,
            "load_state": bounded(health.load_state, LOAD_STATES),
            "sub_state": bounded(health.sub_state, SUB_STATES),
        }

    @staticmethod
    def _optional(
        family: GaugeMetricFamily | CounterMetricFamily, name: str, value: float | None
    ) -> None:
        if value is not None:
            family.add_metric([name], value)
