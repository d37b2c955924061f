"""Tests for consrv.metrics: the collectors over hand-written fakes, the exposition, /metrics.

Policy: the fakes below are plain dataclasses shaped like the Protocols in
consrv.metrics (no Mock); the exposition is parsed with prometheus_client's
parser and linted by Debian's ``promtool check metrics``; /metrics is served on
127.0.0.1 port 0 and fetched with http.client; every wait is under tests.waits.deadline.
"""

from __future__ import annotations

import gzip
import http.client
import re
import shutil
import socket
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from consrv import __version__
from consrv.access import Role
from consrv.config import Endpoint, Pattern
from consrv.console import Console, Viewer
from consrv.metrics import (
    UNIT_STATES,
    ConsoleCollector,
    IocCollector,
    MetricsApp,
    RegistryView,
    ReloadStats,
    metrics_registry,
)
from consrv.patterns import LineMatcher
from consrv.ssh.stats import AUTH_FAILURE_REASONS, SshStats
from consrv.upstream import UnixTarget
from consrv.web import metrics as web_metrics
from consrv.web.metrics import MetricsServer
from tests.fakes import MemorySink, running, unix_server, wait_for
from tests.test_procserv import REAL_27
from tests.waits import deadline

# ---------------------------------------------------------------- fakes


@dataclass
class FakeStats:
    connects: int = 0
    disconnects: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    last_output: float | None = None
    child_starts: int = 0
    child_exits: int = 0
    exits: Counter[tuple[str, int]] = field(default_factory=Counter)
    viewer_bytes_dropped: int = 0


@dataclass(eq=False)
class FakeViewer:
    role: Role
    dropped_total: int = 0


@dataclass
class FakeLock:
    writer: FakeViewer | None = None
    since: float | None = None


@dataclass
class FakeLog:
    bytes_written: int = 0
    write_errors: int = 0
    rotations: int = 0
    bytes_lost: int = 0


@dataclass
class FakeConsole:
    name: str
    up: bool = False
    stats: FakeStats = field(default_factory=FakeStats)
    auto_restart: str | None = None
    child_pid: int | None = None
    viewers: set[FakeViewer] = field(default_factory=set)
    lock: FakeLock = field(default_factory=FakeLock)
    log: FakeLog | None = None
    recording: FakeLog | None = None
    matcher: LineMatcher | None = None

    def drop(self, viewer: FakeViewer, count: int) -> None:
        """What Viewer.deliver does for a stalled sink: count per viewer and per console."""
        viewer.dropped_total += count
        self.stats.viewer_bytes_dropped += count


@dataclass(frozen=True)
class FakeSettings:
    ioc: bool = False


@dataclass
class FakeRegistry:
    consoles: dict[str, FakeConsole] = field(default_factory=dict)
    settings: dict[str, FakeSettings] = field(default_factory=dict)

    def add(self, console: FakeConsole, *, ioc: bool = False) -> FakeConsole:
        self.consoles[console.name] = console
        self.settings[console.name] = FakeSettings(ioc)
        return console


@dataclass(frozen=True)
class FakeHealth:
    unit: str
    load_state: str = "loaded"
    active_state: str = "active"
    sub_state: str = "running"
    n_restarts: int | None = 0
    main_pid: int | None = 4242
    started_at: float | None = 1_700_000_000.0
    exit_status: int | None = 0
    memory_bytes: int | None = 12 << 20
    cpu_seconds: float | None = 1.5


@dataclass
class FakeIoc:
    health: dict[str, FakeHealth] = field(default_factory=dict)


# ---------------------------------------------------------------- scraping helpers

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def exposition(*collectors: Collector, process: bool = False) -> str:
    return generate_latest(metrics_registry(*collectors, process=process)).decode()


def samples(*collectors: Collector) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(exposition(*collectors)):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def series(found: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (each, labels) in found if each == name]


def one_console(**kwargs: object) -> tuple[FakeRegistry, FakeConsole]:
    registry = FakeRegistry()
    console = registry.add(FakeConsole("ioc-a", **kwargs))  # type: ignore[arg-type]
    return registry, console


# ---------------------------------------------------------------- consoles


def test_upstream_and_byte_counters_read_the_live_console() -> None:
    registry, console = one_console(up=True)
    console.stats = FakeStats(connects=3, disconnects=2, bytes_out=1000, bytes_in=40)
    console.stats.last_output = 1_700_000_123.5
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_up", console="ioc-a") == 1
    assert value(found, "consrv_console_upstream_connects_total", console="ioc-a") == 3
    assert value(found, "consrv_console_upstream_disconnects_total", console="ioc-a") == 2
    assert value(found, "consrv_console_output_bytes_total", console="ioc-a") == 1000
    assert value(found, "consrv_console_input_bytes_total", console="ioc-a") == 40
    assert (
        value(found, "consrv_console_last_output_timestamp_seconds", console="ioc-a")
        == 1_700_000_123.5
    )


def test_values_are_read_at_each_scrape() -> None:
    registry, console = one_console()
    collector = ConsoleCollector(registry)
    assert value(samples(collector), "consrv_console_up", console="ioc-a") == 0
    console.up = True
    console.stats.bytes_out += 7
    found = samples(collector)
    assert value(found, "consrv_console_up", console="ioc-a") == 1
    assert value(found, "consrv_console_output_bytes_total", console="ioc-a") == 7


def test_a_console_without_output_has_no_last_output_series() -> None:
    registry, _ = one_console()
    assert (
        series(samples(ConsoleCollector(registry)), "consrv_console_last_output_timestamp_seconds")
        == []
    )


def test_clients_by_role_and_the_writer() -> None:
    writer = FakeViewer(Role.RW)
    registry, console = one_console(up=True)
    console.viewers = {writer, FakeViewer(Role.RW), FakeViewer(Role.RO), FakeViewer(Role.RO)}
    console.viewers.add(FakeViewer(Role.RO))
    console.lock = FakeLock(writer, since=1_700_000_500.0)
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_clients", console="ioc-a", role="rw") == 2
    assert value(found, "consrv_console_clients", console="ioc-a", role="ro") == 3
    assert value(found, "consrv_console_writer", console="ioc-a") == 1
    assert (
        value(found, "consrv_console_writer_since_timestamp_seconds", console="ioc-a")
        == 1_700_000_500.0
    )


def test_no_writer_no_clients() -> None:
    registry, _ = one_console()
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_clients", console="ioc-a", role="rw") == 0
    assert value(found, "consrv_console_clients", console="ioc-a", role="ro") == 0
    assert value(found, "consrv_console_writer", console="ioc-a") == 0
    assert series(found, "consrv_console_writer_since_timestamp_seconds") == []


def test_a_stalled_viewers_drops_show_and_never_go_back_when_it_leaves() -> None:
    stalled, fine = FakeViewer(Role.RO), FakeViewer(Role.RW)
    registry, console = one_console(up=True, viewers={stalled, fine})
    collector = ConsoleCollector(registry)
    name = "consrv_console_viewer_dropped_bytes_total"
    assert value(samples(collector), name, console="ioc-a") == 0
    console.drop(stalled, 65536)
    assert value(samples(collector), name, console="ioc-a") == 65536
    console.viewers.discard(stalled)  # it detaches: its bytes stay counted
    found = samples(collector)
    assert value(found, name, console="ioc-a") == 65536
    assert value(found, "consrv_console_clients", console="ioc-a", role="ro") == 0


def test_child_starts_exits_by_reason_and_up() -> None:
    registry, console = one_console(up=True, child_pid=4242)
    console.stats.child_starts = 4
    console.stats.exits = Counter({("exit", 0): 1, ("exit", 3): 2, ("signal", 11): 1})
    found = samples(ConsoleCollector(registry))
    exits = "consrv_console_child_exits_total"
    assert value(found, "consrv_console_child_starts_total", console="ioc-a") == 4
    assert value(found, exits, console="ioc-a", reason="exit", code="3") == 2
    assert value(found, exits, console="ioc-a", reason="exit", code="0") == 1
    assert value(found, exits, console="ioc-a", reason="signal", code="11") == 1
    assert len(series(found, exits)) == 3
    assert value(found, "consrv_console_child_up", console="ioc-a") == 1


def test_exit_labels_stay_bounded() -> None:
    registry, console = one_console()
    console.stats.exits = Counter(
        {("exit", 256): 1, ("exit", -1): 1, ("signal", 0): 1, ("signal", 65): 1, ("core", 1): 1}
    )
    found = samples(ConsoleCollector(registry))
    assert series(found, "consrv_console_child_exits_total") == [
        {"console": "ioc-a", "reason": "other", "code": "other"}
    ]
    total = value(
        found, "consrv_console_child_exits_total", console="ioc-a", reason="other", code="other"
    )
    assert total == 5


@pytest.mark.parametrize(
    ("up", "pid", "expected"), [(True, 7, 1), (True, None, 0), (False, 7, 0), (False, None, 0)]
)
def test_child_up_needs_the_upstream(up: bool, pid: int | None, expected: int) -> None:
    registry, _ = one_console(up=up, child_pid=pid)
    assert (
        value(samples(ConsoleCollector(registry)), "consrv_console_child_up", console="ioc-a")
        == expected
    )


@pytest.mark.parametrize(
    ("mode", "on"), [("ON", "on"), ("OFF", "off"), ("ONESHOT", "oneshot"), (None, None)]
)
def test_auto_restart_mode_is_one_series_per_mode(mode: str | None, on: str | None) -> None:
    registry, _ = one_console(auto_restart=mode)
    found = samples(ConsoleCollector(registry))
    modes = {
        labels["mode"]: value(found, "consrv_console_auto_restart", **labels)
        for labels in series(found, "consrv_console_auto_restart")
    }
    assert modes == {m: (1 if m == on else 0) for m in ("on", "off", "oneshot")}


def test_log_metrics_only_for_a_console_with_a_log() -> None:
    registry = FakeRegistry()
    registry.add(FakeConsole("logged", log=FakeLog(4096, 2, 1, 300)))
    registry.add(FakeConsole("unlogged"))
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_log_written_bytes_total", console="logged") == 4096
    assert value(found, "consrv_console_log_write_errors_total", console="logged") == 2
    assert value(found, "consrv_console_log_rotations_total", console="logged") == 1
    assert value(found, "consrv_console_log_lost_bytes_total", console="logged") == 300
    assert series(found, "consrv_console_log_write_errors_total") == [{"console": "logged"}]


def test_recording_metrics_only_for_a_recorded_console() -> None:
    registry = FakeRegistry()
    registry.add(FakeConsole("recorded", log=FakeLog(1, 0, 0, 0), recording=FakeLog(900, 3, 0, 77)))
    registry.add(FakeConsole("logged", log=FakeLog(1, 0, 0, 0)))
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_recording_written_bytes_total", console="recorded") == 900
    assert value(found, "consrv_console_recording_write_errors_total", console="recorded") == 3
    assert value(found, "consrv_console_recording_lost_bytes_total", console="recorded") == 77
    assert series(found, "consrv_console_recording_write_errors_total") == [{"console": "recorded"}]


def test_pattern_matches_from_a_real_matcher() -> None:
    matcher = LineMatcher(
        [
            Pattern("segfault", re.compile(rb"Segmentation fault")),
            Pattern("unbalanced_quote", re.compile(rb"Unbalanced quote")),
        ]
    )
    matcher.feed(b"epics> Segmentation fault\r\nSegmentation fault (core dumped)\r\n")
    registry, _ = one_console(matcher=matcher)
    found = samples(ConsoleCollector(registry))
    name = "consrv_console_pattern_matches_total"
    assert value(found, name, console="ioc-a", pattern="segfault") == 2
    assert value(found, name, console="ioc-a", pattern="unbalanced_quote") == 0


def test_console_info_says_which_consoles_are_iocs() -> None:
    registry = FakeRegistry()
    registry.add(FakeConsole("ioc-a"), ioc=True)
    registry.add(FakeConsole("plc-gw"))
    found = samples(ConsoleCollector(registry))
    assert value(found, "consrv_console_info", console="ioc-a", ioc="true") == 1
    assert value(found, "consrv_console_info", console="plc-gw", ioc="false") == 1


def test_labels_never_carry_output_text() -> None:
    matcher = LineMatcher([Pattern("evil", re.compile(rb"."))])
    matcher.feed(b'x{console="forged"} 1\n\xff\xfe\r\n')
    registry, console = one_console(matcher=matcher, auto_restart='ON"} 1\nforged 1')
    console.stats.exits = Counter({('exit"}', 1): 1})
    text = exposition(ConsoleCollector(registry))
    assert "forged" not in text
    assert (
        value(
            samples(ConsoleCollector(registry)),
            "consrv_console_pattern_matches_total",
            console="ioc-a",
            pattern="evil",
        )
        == 2
    )


@dataclass
class RealConsoles:
    consoles: dict[str, Console]
    settings: dict[str, FakeSettings]


async def test_a_real_console_fed_by_procserv_27(tmp_path: Path) -> None:
    """The real Console, fed the bytes real procServ 2.7 sent: exits, a kill, restarts."""
    console = Console("ioc-a", UnixTarget(tmp_path / "ctl"), scrollback=4096)
    console.matcher = LineMatcher([Pattern("hi", re.compile(rb"^hi "))])
    # the cast: Console types its matcher by feed() alone
    collector = ConsoleCollector(
        cast(RegistryView, RealConsoles({"ioc-a": console}, {"ioc-a": FakeSettings(ioc=True)}))
    )
    sink = MemorySink()
    sink.stalled = True
    stalled = Viewer(sink, user="slow", role=Role.RO, limit=64)
    async with unix_server(tmp_path / "ctl") as server, running(console):
        peer = await server.next_peer()
        console.attach(stalled)
        half = len(REAL_27) // 2
        await peer.send(REAL_27[:half])  # fills the stalled viewer's sink
        await wait_for(
            lambda: sink.buffered() > stalled.limit,
            what=f"more than {stalled.limit} bytes held for the stalled viewer",
            seen=sink.buffered,
        )
        await peer.send(REAL_27[half:])  # dropped for it
        await wait_for(
            lambda: console.stats.child_starts == 4,
            what="the console to count 4 child starts",
            seen=lambda: console.stats.child_starts,
        )
        found = samples(collector)
        console.detach(stalled)
        after = samples(collector)
    exits = "consrv_console_child_exits_total"
    assert value(found, "consrv_console_up", console="ioc-a") == 1
    assert value(found, "consrv_console_child_up", console="ioc-a") == 1
    assert value(found, "consrv_console_child_starts_total", console="ioc-a") == 4
    assert value(found, exits, console="ioc-a", reason="exit", code="3") == 3
    assert value(found, exits, console="ioc-a", reason="signal", code="9") == 1
    assert value(found, "consrv_console_auto_restart", console="ioc-a", mode="on") == 1
    assert value(found, "consrv_console_pattern_matches_total", console="ioc-a", pattern="hi") == 3
    assert value(found, "consrv_console_clients", console="ioc-a", role="ro") == 1
    dropped = value(found, "consrv_console_viewer_dropped_bytes_total", console="ioc-a")
    assert dropped == stalled.dropped_total > 0
    assert value(after, "consrv_console_viewer_dropped_bytes_total", console="ioc-a") == dropped
    assert value(after, "consrv_console_clients", console="ioc-a", role="ro") == 0


# ---------------------------------------------------------------- IOC units


def test_unit_state_is_one_series_per_state() -> None:
    ioc = FakeIoc({"ioc-a": FakeHealth("ioc@ioc-a.service", active_state="failed")})
    found = samples(IocCollector(ioc))
    states = {
        labels["state"]: value(found, "consrv_ioc_unit_state", **labels)
        for labels in series(found, "consrv_ioc_unit_state")
    }
    assert states == {s: (1 if s == "failed" else 0) for s in UNIT_STATES}


def test_unit_numbers_and_info() -> None:
    health = FakeHealth("ioc@ioc-a.service", n_restarts=5, exit_status=139, cpu_seconds=2.25)
    found = samples(IocCollector(FakeIoc({"ioc-a": health})))
    assert value(found, "consrv_ioc_unit_restarts_total", console="ioc-a") == 5
    assert value(found, "consrv_ioc_unit_start_time_seconds", console="ioc-a") == 1_700_000_000.0
    assert value(found, "consrv_ioc_unit_exit_status", console="ioc-a") == 139
    assert value(found, "consrv_ioc_unit_memory_bytes", console="ioc-a") == 12 << 20
    assert value(found, "consrv_ioc_unit_cpu_seconds_total", console="ioc-a") == 2.25
    info = {"console": "ioc-a", "unit": "ioc@ioc-a.service", "load_state": "loaded"}
    assert value(found, "consrv_ioc_unit_info", **info, sub_state="running") == 1


def test_unknown_unit_values_are_left_out_or_bounded() -> None:
    health = FakeHealth(
        "ioc@x.service",
        load_state="weird",
        active_state="exploding",
        sub_state="made-up",
        n_restarts=None,
        started_at=None,
        exit_status=None,
        memory_bytes=None,
        cpu_seconds=None,
    )
    found = samples(IocCollector(FakeIoc({"x": health})))
    assert all(
        value(found, "consrv_ioc_unit_state", console="x", state=s) == 0 for s in UNIT_STATES
    )
    labels = {"console": "x", "unit": "ioc@x.service", "load_state": "other", "sub_state": "other"}
    assert value(found, "consrv_ioc_unit_info", **labels) == 1
    for name in (
        "consrv_ioc_unit_restarts_total",
        "consrv_ioc_unit_start_time_seconds",
        "consrv_ioc_unit_exit_status",
        "consrv_ioc_unit_memory_bytes",
        "consrv_ioc_unit_cpu_seconds_total",
    ):
        assert series(found, name) == []


# ---------------------------------------------------------------- SSH, reloads, build


def test_ssh_counters_start_at_zero_for_every_login_and_reason() -> None:
    found = samples(SshStats(["console", "observer"]))
    assert value(found, "consrv_ssh_logins_total", login="console") == 0
    assert value(found, "consrv_ssh_logins_total", login="observer") == 0
    for reason in AUTH_FAILURE_REASONS:
        assert value(found, "consrv_ssh_auth_failures_total", reason=reason) == 0


def test_ssh_logins_failures_and_sessions() -> None:
    open_sessions: list[tuple[str, Role | None]] = [
        ("console", Role.RW),
        ("console", Role.RO),
        ("observer", Role.RO),
    ]
    stats = SshStats(["console", "observer"], lambda: list(open_sessions))
    stats.login("console")
    stats.login("console")
    stats.login("observer")
    stats.login("root")  # cannot happen; still bounded
    for reason in ("unknown_key", "unknown_key", "timeout", "ssh-rsa is weak"):
        stats.auth_failure(reason)
    open_sessions.append(("console", None))
    found = samples(stats)
    assert value(found, "consrv_ssh_logins_total", login="console") == 2
    assert value(found, "consrv_ssh_logins_total", login="observer") == 1
    assert value(found, "consrv_ssh_logins_total", login="other") == 1
    assert value(found, "consrv_ssh_auth_failures_total", reason="unknown_key") == 2
    assert value(found, "consrv_ssh_auth_failures_total", reason="timeout") == 1
    assert value(found, "consrv_ssh_auth_failures_total", reason="other") == 1
    assert len(series(found, "consrv_ssh_auth_failures_total")) == len(AUTH_FAILURE_REASONS)
    assert value(found, "consrv_ssh_sessions", login="console", role="rw") == 1
    assert value(found, "consrv_ssh_sessions", login="console", role="none") == 1
    assert value(found, "consrv_ssh_sessions", login="observer", role="ro") == 1
    assert value(found, "consrv_ssh_sessions", login="observer", role="rw") == 0


def test_reloads_count_by_result_and_stamp_the_last_success() -> None:
    now = [1000.0]
    stats = ReloadStats(clock=lambda: now[0])
    found = samples(stats)
    assert value(found, "consrv_config_last_reload_success_timestamp_seconds") == 1000.0
    assert value(found, "consrv_config_last_reload_successful") == 1
    now[0] = 2000.0
    stats.reload(ok=True)
    now[0] = 3000.0
    stats.reload(ok=False)
    found = samples(stats)
    assert value(found, "consrv_config_reloads_total", result="success") == 1
    assert value(found, "consrv_config_reloads_total", result="failure") == 1
    assert value(found, "consrv_config_last_reload_successful") == 0
    assert value(found, "consrv_config_last_reload_success_timestamp_seconds") == 2000.0


def test_build_info() -> None:
    (labels,) = series(samples(), "consrv_build_info")
    assert labels["version"] == __version__
    assert re.fullmatch(r"3\.\d+\.\d+.*", labels["python"])


# ---------------------------------------------------------------- the whole exposition


def busy_collectors() -> Iterator[Collector]:
    """Every collector, with every kind of series present."""
    registry = FakeRegistry()
    writer = FakeViewer(Role.RW)
    matcher = LineMatcher([Pattern("segfault", re.compile(rb"Segmentation fault"))])
    matcher.feed(b"Segmentation fault\n")
    console = FakeConsole(
        "ioc-a", up=True, child_pid=1, auto_restart="ON", viewers={writer}, log=FakeLog(1, 0, 0, 0)
    )
    console.lock = FakeLock(writer, 1.0)
    console.matcher = matcher
    console.stats = FakeStats(1, 0, 10, 2, 5.0, 1, 1, Counter({("signal", 11): 1}), 3)
    registry.add(console, ioc=True)
    registry.add(FakeConsole("plc-gw"))
    yield ConsoleCollector(registry)
    yield IocCollector(FakeIoc({"ioc-a": FakeHealth("ioc@ioc-a.service")}))
    ssh = SshStats(["console", "observer"], lambda: [("console", Role.RW)])
    ssh.login("console")
    yield ssh
    yield ReloadStats()


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool missing: apt-get install prometheus"
    return path


def test_promtool_finds_nothing_to_lint() -> None:
    text = exposition(*busy_collectors(), process=True)
    result = subprocess.run(
        [promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "process_cpu_seconds_total" in text


def test_every_family_has_help_and_a_consrv_prefix() -> None:
    families = list(text_string_to_metric_families(exposition(*busy_collectors())))
    assert len(families) > 30
    for family in families:
        assert family.name.startswith("consrv_"), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name


def test_families_are_there_even_without_consoles() -> None:
    names = {
        f.name for f in text_string_to_metric_families(exposition(ConsoleCollector(FakeRegistry())))
    }
    assert "consrv_console_up" in names
    assert "consrv_build_info" in names


# ---------------------------------------------------------------- serving /metrics


async def serve_metrics(
    endpoint: Endpoint,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """``registry`` served as consrv serves it (daemon.py): its `MetricsApp` on ``endpoint``."""
    await web_metrics.serve_metrics(endpoint, MetricsApp(registry), task_status=task_status)


def get(port: int, path: str, method: str = "GET", accept: str = "") -> tuple[int, str, str]:
    """One request with http.client (run it in a thread)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read().decode()
    finally:
        conn.close()


def served_registry() -> CollectorRegistry:
    return metrics_registry(*busy_collectors())


async def fetch(
    port: int, path: str, method: str = "GET", accept: str = ""
) -> tuple[int, str, str]:
    return await trio.to_thread.run_sync(get, port, path, method, accept)


async def test_serves_metrics_over_loopback_and_stops_within_a_second() -> None:
    with deadline(10, "the metrics server to start, answer /metrics and stop"):
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(
                serve_metrics, Endpoint("127.0.0.1", 0), served_registry()
            )
            assert host == "127.0.0.1"
            assert port > 0
            status, content_type, body = await fetch(port, "/metrics")
            assert status == 200
            assert content_type.startswith("text/plain; version=0.0.4")
            names = {f.name for f in text_string_to_metric_families(body)}
            assert {"consrv_console_up", "consrv_ioc_unit_state", "consrv_ssh_logins"} <= names
            nursery.cancel_scope.cancel()
            stopped = trio.current_time()
        assert trio.current_time() - stopped < 1.0
    with pytest.raises(ConnectionRefusedError):
        await fetch(port, "/metrics")


async def test_index_links_and_anything_else_is_404() -> None:
    with deadline(10, "the metrics server to answer / and three 404s"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                serve_metrics, Endpoint("127.0.0.1", 0), served_registry()
            )
            status, content_type, body = await fetch(port, "/")
            assert (status, content_type.split(";")[0]) == (200, "text/html")
            assert 'href="/metrics"' in body
            for method, path in [("GET", "/nope"), ("POST", "/metrics"), ("GET", "/metrics/x")]:
                status, _, _ = await fetch(port, path, method)
                assert status == 404, (method, path)
            nursery.cancel_scope.cancel()


async def test_openmetrics_when_the_scraper_asks() -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    with deadline(10, "the metrics server to answer an OpenMetrics scrape"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                serve_metrics, Endpoint("127.0.0.1", 0), served_registry()
            )
            status, content_type, body = await fetch(port, "/metrics", accept=accept)
            assert status == 200
            assert content_type.startswith("application/openmetrics-text")
            assert body.endswith("# EOF\n")
            assert "# TYPE consrv_build info" in body
            nursery.cancel_scope.cancel()


async def test_a_silent_client_does_not_hold_up_a_scrape() -> None:
    with deadline(10, "a scrape answered while a silent client holds a connection"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                serve_metrics, Endpoint("127.0.0.1", 0), served_registry()
            )
            silent = socket.create_connection(("127.0.0.1", port))
            try:
                silent.sendall(b"GET /metr")  # and nothing more
                status, _, _ = await fetch(port, "/metrics")
                assert status == 200
            finally:
                silent.close()
            nursery.cancel_scope.cancel()


async def test_a_taken_port_is_an_oserror() -> None:
    with deadline(10, "serve_metrics to fail on a taken port"):
        holder = trio.socket.socket()
        await holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with holder, pytest.raises(OSError, match="in use"):
            await serve_metrics(Endpoint("127.0.0.1", port), CollectorRegistry())


class BrokenCollector:
    def collect(self) -> Iterator[Metric]:
        raise RuntimeError("a collector bug")


async def test_a_failing_collector_is_a_500_and_the_server_stays_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = metrics_registry(BrokenCollector(), process=False)
    with deadline(10, "a 500 for /metrics, then a 200 for /"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(serve_metrics, Endpoint("127.0.0.1", 0), registry)
            status, _, _ = await fetch(port, "/metrics")
            assert status == 500
            status, _, _ = await fetch(port, "/")
            assert status == 200
            nursery.cancel_scope.cancel()
    assert "collecting failed" in caplog.text


# ------------------------------------------- as prometheus-client answers, served again


Message = dict[str, object]


async def asgi_get(
    app: object, path: str, query: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET through an ASGI app, in memory: status, headers (lower-case), body."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": headers,
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await cast(Any, app)(scope, receive, send)
    start, body = sent[0], sent[1]
    head = {
        bytes(k).lower(): bytes(v) for k, v in cast(list[tuple[bytes, bytes]], start["headers"])
    }
    return cast(int, start["status"]), head, cast(bytes, body["body"])


ACCEPTS = [
    "",
    "text/plain",
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    "application/openmetrics-text; version=0.0.1",
    "*/*",
]
ENCODINGS = ["", "gzip", "gzip, deflate, br", "identity", "deflate;q=1, GZIP;q=0.5"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("query", [b"", b"name[]=consrv_build_info&name[]=consrv_console_up"])
async def test_answers_as_prometheus_clients_own_asgi_app(
    accept: str, encoding: str, query: bytes
) -> None:
    registry = metrics_registry(*busy_collectors(), process=False)
    headers = [
        (b"host", b"h"),
        (b"accept", accept.encode()),
        (b"accept-encoding", encoding.encode()),
    ]
    ours = await asgi_get(MetricsApp(registry), "/metrics", query, headers)
    theirs = await asgi_get(make_asgi_app(registry), "/metrics", query, headers)
    assert ours[0] == theirs[0] == 200
    assert {k: v for k, v in ours[1].items() if k != b"content-length"} == theirs[1]
    gzipped = theirs[1].get(b"content-encoding") == b"gzip"
    assert gzipped == ("gzip" in encoding.lower())
    unzip = gzip.decompress if gzipped else bytes
    assert unzip(ours[2]) == unzip(theirs[2])
    assert int(ours[1][b"content-length"]) == len(ours[2])


def get_gzipped(port: int) -> tuple[str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = conn.getresponse()
        return response.getheader("Content-Encoding") or "", response.read()
    finally:
        conn.close()


async def test_a_gzip_scrape_over_loopback() -> None:
    with deadline(10, "the metrics server to answer a gzip scrape"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(
                serve_metrics, Endpoint("127.0.0.1", 0), served_registry()
            )
            encoding, body = await trio.to_thread.run_sync(get_gzipped, port)
            assert encoding == "gzip"
            names = {f.name for f in text_string_to_metric_families(gzip.decompress(body).decode())}
            assert "consrv_console_up" in names
            nursery.cancel_scope.cancel()


async def test_a_failure_in_serving_is_logged_and_served_again_on_its_port(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault we cannot cause on demand (the web front saw hypercorn end its server on
    one connection's error): the first connection's handler raises."""
    server = MetricsServer(MetricsApp(served_registry()))
    hypercorn = server.serve_connection
    calls = 0

    async def flaky(connection: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError(25)
        await hypercorn(connection)

    server.serve_connection = flaky
    with deadline(10, "a failed connection, the metrics served again, a 200"):
        async with trio.open_nursery() as nursery:
            _, port = await nursery.start(server.serve, Endpoint("127.0.0.1", 0))
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                await fetch(port, "/metrics")
            await wait_for(lambda: server.restarts == 1)
            while True:  # refused until the listener is back, after RESTART_DELAY
                try:
                    status, _, _ = await fetch(port, "/metrics")
                    break
                except ConnectionRefusedError:
                    await trio.sleep(0.1)
            assert status == 200
            nursery.cancel_scope.cancel()
    assert "metrics failed; serving them again in 1 s" in caplog.text
