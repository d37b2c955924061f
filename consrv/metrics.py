"""Prometheus metrics: what ``/metrics`` shows, read from the live objects at scrape time.

Owns metric names, labels, the counters that have no other home (SSH logins and
authentication failures, config reloads) and the small HTTP responder. Must not
know consoles, sessions or systemd beyond the read-only Protocols below, and adds
nothing to the console's hot path: the collectors read the counters that the
console, its log and its matcher keep anyway.

Rules:
1. Names follow Prometheus conventions: ``consrv_`` prefix, base units (seconds,
   bytes), ``_total`` for counters, ``_info`` for constant label sets.
2. Label values come only from the config (console, pattern and login names,
   unit names made from the unit template) and from fixed enums in this module;
   anything else maps to ``other``. Never from user input or console output.
3. Collecting runs in the trio thread (``serve_metrics`` calls it there), so no
   object is read while a task changes it; dicts are still copied with ``list()``.
docs/metrics.md explains every series.
"""

from __future__ import annotations

import logging
import platform
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import trio
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from consrv import __version__
from consrv.access import Role
from consrv.config import Endpoint

__all__ = [
    "AUTH_FAILURE_REASONS",
    "HANDSHAKE_FAILURE_REASONS",
    "UNIT_STATES",
    "BuildInfo",
    "ConsoleCollector",
    "IocCollector",
    "ReloadStats",
    "SshStats",
    "metrics_registry",
    "serve_metrics",
]

logger = logging.getLogger(__name__)

AUTH_FAILURE_REASONS = (
    "unknown_key",
    "unknown_login",
    "bad_certificate",
    "revoked",
    "no_method",
    "timeout",
    "other",
)
# Each refused authentication request (a connection may make several: MaxAuthTries).
AUTH_ATTEMPT_REASONS = (
    "unknown_key",
    "unknown_login",
    "bad_certificate",
    "revoked",
    "no_method",
    "other",
)
# New SSH connections closed at once: too many unauthenticated ones in total or from
# one source, or too few file descriptors left.
REFUSAL_REASONS = ("startups", "per_source", "descriptors")
ACCEPT_ERRORS = ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
# Why a connection ended before its first authentication request (consrv.ssh.handshake).
HANDSHAKE_FAILURE_REASONS = (
    "no_matching_kex",
    "no_matching_host_key",
    "no_matching_cipher",
    "no_matching_mac",
    "no_matching_compression",
    "kex_failed",
    "protocol_error",
    "bad_version",
    "closed",
    "timeout",
    "other",
)
UNIT_STATES = (
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
    "refreshing",
)
LOAD_STATES = frozenset({"stub", "loaded", "not-found", "bad-setting", "error", "merged", "masked"})
SUB_STATES = frozenset(
    {
        "dead", "condition", "start-pre", "start", "start-post", "running", "exited",
        "reload", "reload-signal", "reload-notify", "mounting", "stop", "stop-watchdog",
        "stop-sigterm", "stop-sigkill", "stop-post", "final-watchdog", "final-sigterm",
        "final-sigkill", "failed", "dead-before-auto-restart", "failed-before-auto-restart",
        "dead-resources-pinned", "auto-restart", "auto-restart-queued", "cleaning",
    }
)  # fmt: skip
AUTO_RESTART_MODES = ("on", "off", "oneshot")
ROLE_LABELS = {Role.RW: "rw", Role.RO: "ro", None: "none"}
OTHER = "other"


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


class ConsoleView(Protocol):
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
    def consoles(self) -> Mapping[str, ConsoleView]: ...
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

    def add(self, console: ConsoleView, settings: ConsoleSettingsView | None) -> None:
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

    def _add_upstream(self, name: str, console: ConsoleView) -> None:
        stats = console.stats
        self.up.add_metric([name], 1 if console.up else 0)
        self.connects.add_metric([name], stats.connects)
        self.disconnects.add_metric([name], stats.disconnects)
        self.output.add_metric([name], stats.bytes_out)
        self.input.add_metric([name], stats.bytes_in)
        if stats.last_output is not None:
            self.last_output.add_metric([name], stats.last_output)

    def _add_users(self, name: str, console: ConsoleView) -> None:
        roles = Counter(viewer.role for viewer in list(console.viewers))
        for role in (Role.RW, Role.RO):
            self.clients.add_metric([name, ROLE_LABELS[role]], roles[role])
        lock = console.lock
        self.writer.add_metric([name], 0 if lock.writer is None else 1)
        if lock.writer is not None and lock.since is not None:
            self.writer_since.add_metric([name], lock.since)
        self.dropped.add_metric([name], console.stats.viewer_bytes_dropped)

    def _add_child(self, name: str, console: ConsoleView) -> None:
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


def _bounded(value: str, allowed: Collection[str]) -> str:
    return value if value in allowed else OTHER


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
            "load_state": _bounded(health.load_state, LOAD_STATES),
            "sub_state": _bounded(health.sub_state, SUB_STATES),
        }

    @staticmethod
    def _optional(
        family: GaugeMetricFamily | CounterMetricFamily, name: str, value: float | None
    ) -> None:
        if value is not None:
            family.add_metric([name], value)


# ---------------------------------------------------------------- SSH


SessionsProvider = Callable[[], Iterable[tuple[str, Role | None]]]


def _no_sessions() -> Iterable[tuple[str, Role | None]]:
    return ()


def _labelled(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in counts.items():
        family.add_metric([value], count)
    return family


class SshStats:
    """SSH logins and authentication failures (counted by the SSH front), sessions (read).

    ``logins`` are the two configured login names; ``sessions`` returns one
    ``(login name, role)`` per open session (role None: not on a console).
    """

    def __init__(self, logins: Iterable[str], sessions: SessionsProvider = _no_sessions) -> None:
        self.logins = tuple(dict.fromkeys(logins))
        self.sessions = sessions
        self.login_counts: Counter[str] = Counter(dict.fromkeys(self.logins, 0))
        self.failures: Counter[str] = Counter(dict.fromkeys(AUTH_FAILURE_REASONS, 0))
        self.handshakes: Counter[str] = Counter(dict.fromkeys(HANDSHAKE_FAILURE_REASONS, 0))
        self.attempt_failures: Counter[str] = Counter(dict.fromkeys(AUTH_ATTEMPT_REASONS, 0))
        self.refused: Counter[str] = Counter(dict.fromkeys(REFUSAL_REASONS, 0))
        self.accept_errors: Counter[str] = Counter(dict.fromkeys(ACCEPT_ERRORS, 0))
        self.sessions_refused = 0
        self.unauthenticated: Callable[[], int] = lambda: 0

    def login(self, login_name: str) -> None:
        """A user authenticated under ``login_name``."""
        self.login_counts[_bounded(login_name, self.logins)] += 1

    def auth_failure(self, reason: str) -> None:
        """A connection failed to authenticate; ``reason`` one of AUTH_FAILURE_REASONS."""
        self.failures[_bounded(reason, AUTH_FAILURE_REASONS)] += 1

    def auth_attempt_failure(self, reason: str) -> None:
        """One authentication request was refused; ``reason`` one of AUTH_ATTEMPT_REASONS."""
        self.attempt_failures[_bounded(reason, AUTH_ATTEMPT_REASONS)] += 1

    def connection_refused(self, reason: str) -> None:
        """A new connection was closed at once; ``reason`` one of REFUSAL_REASONS."""
        self.refused[_bounded(reason, REFUSAL_REASONS)] += 1

    def accept_error(self, error: str) -> None:
        """accept() failed for want of a resource (``error``: EMFILE, ENFILE, ...)."""
        self.accept_errors[_bounded(error, ACCEPT_ERRORS)] += 1

    def handshake_failure(self, reason: str) -> None:
        """A connection ended before asking to authenticate; one of HANDSHAKE_FAILURE_REASONS."""
        self.handshakes[_bounded(reason, HANDSHAKE_FAILURE_REASONS)] += 1

    def collect(self) -> Iterator[Metric]:
        logins = CounterMetricFamily(
            "consrv_ssh_logins", "Successful SSH authentications by login name.", labels=["login"]
        )
        for login, count in self.login_counts.items():
            logins.add_metric([login], count)
        failures = CounterMetricFamily(
            "consrv_ssh_auth_failures",
            "SSH connections that failed to authenticate, by reason.",
            labels=["reason"],
        )
        for reason, count in self.failures.items():
            failures.add_metric([reason], count)
        handshakes = CounterMetricFamily(
            "consrv_ssh_handshake_failures",
            "SSH connections that ended before asking to authenticate, by reason.",
            labels=["reason"],
        )
        for reason, count in self.handshakes.items():
            handshakes.add_metric([reason], count)
        yield from (logins, failures, handshakes, self._sessions(), *self._limits())

    def _limits(self) -> Iterator[Metric]:
        """What the limits under abuse refused (docs/security.md)."""
        yield _labelled(
            "consrv_ssh_auth_attempt_failures",
            "Refused SSH authentication requests (each key, certificate or method), by reason.",
            "reason",
            self.attempt_failures,
        )
        yield _labelled(
            "consrv_ssh_connections_refused",
            "New SSH connections closed at once, by reason (limits under abuse).",
            "reason",
            self.refused,
        )
        yield _labelled(
            "consrv_ssh_accept_errors",
            "Times accept() failed for want of a resource; consrv retried a second later.",
            "error",
            self.accept_errors,
        )
        yield CounterMetricFamily(
            "consrv_ssh_sessions_refused",
            "SSH session channels refused: max_sessions were open on the connection.",
            value=self.sessions_refused,
        )
        yield GaugeMetricFamily(
            "consrv_ssh_unauthenticated_connections",
            "Open SSH connections that have not authenticated yet.",
            value=self.unauthenticated(),
        )

    def _sessions(self) -> GaugeMetricFamily:
        counts: Counter[tuple[str, str]] = Counter(
            {(login, role): 0 for login in self.logins for role in ROLE_LABELS.values()}
        )
        for login, role in list(self.sessions()):
            counts[_bounded(login, self.logins), ROLE_LABELS.get(role, OTHER)] += 1
        family = GaugeMetricFamily(
            "consrv_ssh_sessions", "Open SSH sessions by login and role.", labels=["login", "role"]
        )
        for labels, count in sorted(counts.items()):
            family.add_metric(list(labels), count)
        return family


# ---------------------------------------------------------------- config reloads, build


class ReloadStats:
    """Config reloads (SIGHUP). The start-up load counts as the first success."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.results: Counter[str] = Counter(success=0, failure=0)
        self.last_ok = True
        self.last_success = clock()

    def reload(self, ok: bool) -> None:
        self.results["success" if ok else "failure"] += 1
        self.last_ok = ok
        if ok:
            self.last_success = self._clock()

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "consrv_config_reloads", "Config reloads by result.", labels=["result"]
        )
        for result, count in self.results.items():
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily(
            "consrv_config_last_reload_successful",
            "1 if the last config load or reload succeeded.",
            value=1 if self.last_ok else 0,
        )
        yield GaugeMetricFamily(
            "consrv_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
            value=self.last_success,
        )


class BuildInfo:
    """``consrv_build_info{version, python} 1``."""

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("consrv_build", "consrv's version and the Python running it.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info


def metrics_registry(*collectors: Collector, process: bool = True) -> CollectorRegistry:
    """A registry with build info, ``collectors`` and (``process``) the process_* metrics."""
    registry = CollectorRegistry()
    for collector in (BuildInfo(), *collectors):
        registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry


# ---------------------------------------------------------------- serving /metrics

MAX_REQUEST = 8192
# A scraper sends its whole request at once: one that takes longer is a slowloris.
HEAD_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0  # head, collecting and sending, all told
MAX_CONNECTIONS = 64
INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    accept: str


def parse_request(head: bytes) -> Request | None:
    """The request line and Accept header of an HTTP/1.x request head; None if malformed."""
    lines = head.decode("latin-1").splitlines()
    parts = lines[0].split() if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    accept = ""
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "accept":
            accept = value.strip()
    return Request(parts[0], parts[1].partition("?")[0], accept)


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _text(status: str, text: str) -> bytes:
    return http_response(status, "text/plain; charset=utf-8", text.encode() + b"\n")


class _Snapshot:
    """Families collected already: formatting them needs no live object."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


class _Responder:
    """Answers one request per connection: collects in the trio thread, formats in a worker.

    Slow clients cannot keep a scrape out: at ``MAX_CONNECTIONS`` a new connection
    takes the place of the oldest one still sending its request head (a scraper
    sends its request at once; only a slowloris is still at it), and no head may
    take longer than ``HEAD_TIMEOUT``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.active = 0
        self.reading: dict[trio.CancelScope, None] = {}  # oldest first
        self.evicted = 0

    async def respond(self, head: bytes) -> bytes:
        request = parse_request(head)
        if request is None:
            return _text("400 Bad Request", "bad request")
        if request.method == "GET" and request.path == "/metrics":
            return await self._metrics(request.accept)
        if request.method == "GET" and request.path == "/":
            return http_response("200 OK", "text/html; charset=utf-8", INDEX)
        return _text("404 Not Found", "not found: try /metrics")

    async def _metrics(self, accept: str) -> bytes:
        encoder, content_type = choose_encoder(accept)
        try:
            snapshot = _Snapshot(list(self.registry.collect()))
            body = await trio.to_thread.run_sync(encoder, snapshot)
        except Exception:
            logger.exception("metrics: collecting failed")
            return _text("500 Internal Server Error", "collecting metrics failed")
        return http_response("200 OK", content_type, body)

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.active >= MAX_CONNECTIONS and not self._evict_slowest():
            await stream.aclose()  # every place is answering a request
            return
        self.active += 1
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = await self._read_head(stream)
                if head is not None:
                    await stream.send_all(await self.respond(head))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the scraper went away
        finally:
            self.active -= 1
            await stream.aclose()

    async def _read_head(self, stream: trio.SocketStream) -> bytes | None:
        scope = trio.CancelScope(deadline=trio.current_time() + HEAD_TIMEOUT)
        self.reading[scope] = None
        try:
            with scope:
                return await _read_head(stream)
            return None  # too slow, or evicted for a newer connection
        finally:
            self.reading.pop(scope, None)

    def _evict_slowest(self) -> bool:
        """Cancel the connection that has been sending its request longest; False if none is."""
        if not self.reading:
            return False
        oldest = next(iter(self.reading))
        del self.reading[oldest]
        oldest.cancel()
        self.evicted += 1
        return True


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head (up to the blank line); None at EOF or when it is too long."""
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_REQUEST:
            return None
        data = await stream.receive_some(4096)
        if not data:
            return None
        buf += data
    return buf


async def serve_metrics(
    endpoint: Endpoint,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``endpoint`` until cancelled; started() gets the bound address.

    A small trio responder rather than prometheus_client's threaded server: the
    collectors then read consoles in the trio thread, never while a task changes
    them; only turning the collected families into text (the larger part of a
    scrape) runs in a worker thread.
    """
    listeners = await trio.open_tcp_listeners(endpoint.port, host=endpoint.host)
    host, port = listeners[0].socket.getsockname()[:2]
    logger.info("metrics on http://%s/metrics", Endpoint(host, port))
    task_status.started((host, port))
    await trio.serve_listeners(_Responder(registry).handle, listeners)
