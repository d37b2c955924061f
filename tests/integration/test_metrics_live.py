"""Prometheus metrics scraped from a live consrv while real things happen to its consoles.

consrv runs as a process (``consrv serve``) with ``metrics.listen: 127.0.0.1:0``;
its console is a real procServ whose child is a small Python program that does
what the test types into it (print pattern lines, flood, exit with a code) or is
killed with a signal; procServ restarts it (``--holdoff=1``). Users are asyncssh
clients with both login names; one stops reading while the child floods; others
fail to log in (unknown key, login name, password only, a certificate). The
config is reloaded with SIGHUP (a bad one, then a good one with a new pattern).
Every scrape is an HTTP GET parsed with ``prometheus_client.parser``; one is
also checked by Debian's ``promtool check metrics``, and one is read as
OpenMetrics, as Prometheus asks for it. The IOC-unit series are read against a
private systemd user manager (tests/systemd_user.py) running an ``ioc@`` unit.

Policy: loopback and UNIX sockets in tmp_path only, port 0, every wait bounded and
naming what it awaited (``tests.waits.deadline``, or a scrape loop that says what
differs), every process started here stopped here.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import trio_asyncio
import yaml
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from consrv import __version__
from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import ScriptedSSH, scripted_ssh
from tests.systemd_user import SystemdUser
from tests.waits import deadline

pytestmark = pytest.mark.integration

CON = "mx-con"  # the procServ console
UNIT = "mx-unit"  # the ioc@ unit
VIEWER_BUFFER = 1 << 20  # consrv's per-viewer bound (large: only a stalled viewer drops)
FLOOD = 6 << 20  # more than asyncssh's 2 MiB channel window plus the viewer bound

# The IOC stand-in: it does what is typed into it, one command a line.
CHILD = """\
import os, sys
print("child ready", os.getpid(), flush=True)
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["oops"]:
        print("Segmentation fault, and again: Segmentation fault", flush=True)
        print("caught signal 11", flush=True)
        print("caught signal 6", flush=True)
    elif words[:1] == ["flood"]:
        sys.stdout.write(("x" * 99 + "\\n") * (int(words[1]) // 100))
        print("flood done", flush=True)
    elif words[:1] == ["exit"]:
        print("leaving with status", words[1], flush=True)
        sys.exit(int(words[1]))
"""
# Prometheus's own Accept header (2.x): OpenMetrics first, the text format as fallback.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
PATTERNS = {
    "segfault": "Segmentation fault",
    "caught_signal": r"caught signal \d+",
    "unbalanced_quote": "Unbalanced quote",
}


# ---------------------------------------------------------------- scraping


def key(name: str, **labels: str) -> str:
    """A sample as the text format writes it: ``name{a="1",b="2"}`` (labels sorted)."""
    inside = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    return f"{name}{{{inside}}}"


def con(name: str, **labels: str) -> str:
    """A sample of the test console ``CON``."""
    return key(name, console=CON, **labels)


@dataclass(frozen=True)
class Scrape:
    text: str
    families: list[Metric]
    samples: dict[str, float]

    @property
    def types(self) -> dict[str, str]:
        return {family.name: family.type for family in self.families}

    def __getitem__(self, sample: str) -> float:
        return self.samples[sample]

    def get(self, sample: str) -> float | None:
        return self.samples.get(sample)

    def consrv_lines(self) -> str:
        return "\n".join(
            f"{s} {v}" for s, v in sorted(self.samples.items()) if s.startswith("consrv_")
        )


def parse(text: str) -> Scrape:
    families = list(text_string_to_metric_families(text))
    samples: dict[str, float] = {}
    for family in families:
        for sample in family.samples:
            name = key(sample.name, **sample.labels)
            assert name not in samples, f"duplicate sample {name}"
            samples[name] = sample.value
    return Scrape(text, families, samples)


async def fetch(port: int, accept: str = "") -> tuple[bytes, bytes]:
    """``GET /metrics`` over loopback: the response head and body (consrv closes after one)."""
    request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    request += f"Accept: {accept}\r\n\r\n" if accept else "\r\n"
    data = bytearray()
    what = f"a whole /metrics response from 127.0.0.1:{port} (consrv closes after one)"
    with deadline(10, what, lambda: data):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(request.encode())
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return head, body


async def scrape(port: int) -> Scrape:
    head, body = await fetch(port)
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"text/plain; version=0.0.4" in head, head
    return parse(body.decode())


async def wait_for(port: int, want: Mapping[str, float | None], timeout: float = 15) -> Scrape:
    """Scrape until every sample in ``want`` has its value (None: absent); the last scrape."""
    give_up = trio.current_time() + timeout
    while True:
        got = await scrape(port)
        wrong = {s: got.get(s) for s, value in want.items() if got.get(s) != value}
        if not wrong:
            return got
        if trio.current_time() > give_up:
            raise AssertionError(
                f"after {timeout} s: want {dict(want)}, differ: {wrong}\n{got.consrv_lines()}"
            )
        await trio.sleep(0.1)


async def wait_until(port: int, sample: str, at_least: float, timeout: float = 20) -> Scrape:
    """Scrape until ``sample`` is at least ``at_least``."""
    give_up = trio.current_time() + timeout
    while True:
        got = await scrape(port)
        if (got.get(sample) or 0) >= at_least:
            return got
        if trio.current_time() > give_up:
            raise AssertionError(f"{sample} < {at_least} after {timeout} s:\n{got.consrv_lines()}")
        await trio.sleep(0.1)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool missing: apt-get install prometheus"
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )


# ---------------------------------------------------------------- the live consrv


@dataclass
class Live:
    root: Path
    procserv: ProcServ
    consrv: Consrv
    keys: dict[str, UserKey]
    metrics: int  # the /metrics port
    began: float  # wall-clock time just before consrv started

    @property
    def port(self) -> int:
        return self.consrv.port

    @property
    def log(self) -> Path:
        return self.root / "logs" / f"{CON}.log"

    def start_procserv(self) -> ProcServ:
        self.procserv = ProcServ(CON, self.root, child_argv(self.root), holdoff=1)
        self.procserv.start()
        self.procserv.wait_ready()
        wait_child(self.procserv)
        return self.procserv


def wait_child(procserv: ProcServ, timeout: float = 10) -> None:
    """Until procServ has started its first child (about 0.5 s after its socket is there).

    Before that, procServ's banner says the child is SHUT DOWN and drops what is typed.
    """
    give_up = time.monotonic() + timeout
    while not procserv.child_pids():
        assert time.monotonic() < give_up, (
            f"gave up after {timeout:g} s waiting for procServ {procserv.name} to start its child"
        )
        time.sleep(0.02)


def child_argv(root: Path) -> list[str]:
    script = root / "child.py"
    script.write_text(CHILD)
    return [sys.executable, "-u", str(script)]


def live_config(root: Path, keys: Mapping[str, UserKey], consoles: dict[str, Any]) -> Path:
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "metrics": {"listen": "127.0.0.1:0"},
            "log_dir": str(root / "logs"),
            "users": {k.name: {"keys": [k.public]} for k in keys.values() if k.name != "eve"},
            "defaults": {"rw": ["alice", "bob"], "ro": ["*"], "viewer_buffer": VIEWER_BUFFER},
            "consoles": consoles,
        },
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """procServ running the child, consrv with metrics in front; eve's key is unknown."""
    keys = {name: make_key(tmp_path, name) for name in ("alice", "bob", "olga", "eve")}
    console = {"socket": "", "patterns": PATTERNS, "procserv_keys": "pass"}
    with ProcServ(CON, tmp_path, child_argv(tmp_path), holdoff=1) as procserv:
        wait_child(procserv)
        console["socket"] = str(procserv.socket)
        consrv = Consrv(live_config(tmp_path, keys, {CON: console}), tmp_path)
        live = Live(tmp_path, procserv, consrv, keys, 0, time.time())
        try:
            consrv.start()
            live.metrics = consrv.metrics_port()
            yield live
        finally:
            if consrv.process is not None:
                consrv.stop()
            live.procserv.stop()


@asynccontextmanager
async def attach(
    live: Live, user: str, login: str, command: str = CON, *, pty: bool = False
) -> AsyncIterator[ScriptedSSH]:
    """``ssh LOGIN@host COMMAND`` as ``user`` (asyncssh); waits for the attach notice."""
    async with scripted_ssh(live.port, live.keys[user].private, login, command, pty=pty) as ssh:
        if command:
            await ssh.expect(rb"attached to " + CON.encode(), stderr=not pty)
        yield ssh


KeySpec = str | tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]


async def login(live: Live, login_name: str, keys: list[KeySpec]) -> None:
    """Connect and authenticate (asyncssh, a password as the last resort), then leave."""
    with deadline(10, f"an SSH login as {login_name!r} to be let in or refused"):
        conn = await trio_asyncio.aio_as_trio(asyncssh.connect)(
            "127.0.0.1", live.port, username=login_name, client_keys=keys, password="guess",
            known_hosts=None, agent_path=None, connect_timeout=5,
        )  # fmt: skip
        conn.close()
        await trio_asyncio.aio_as_trio(conn.wait_closed)()


async def refused(live: Live, login_name: str, keys: list[KeySpec]) -> None:
    """An SSH login that must fail to authenticate."""
    with pytest.raises(asyncssh.PermissionDenied):
        await login(live, login_name, keys)


def with_certificate(path: Path, user: str) -> tuple[asyncssh.SSHKey, asyncssh.SSHCertificate]:
    """The key at ``path`` with an OpenSSH user certificate from a CA consrv does not trust."""
    user_key = asyncssh.read_private_key(path)
    ca = asyncssh.generate_private_key("ssh-ed25519")
    return user_key, ca.generate_user_certificate(user_key, user, principals=["console"])


def kill_child(procserv: ProcServ, signo: int) -> int:
    (pid,) = procserv.child_pids()
    os.kill(pid, signo)
    return pid


# ---------------------------------------------------------------- tests


async def test_child_exits_signals_restarts_patterns_and_upstream(live: Live) -> None:
    port = live.metrics
    first = await wait_for(
        port,
        {
            con("consrv_console_up"): 1,
            con("consrv_console_upstream_connects_total"): 1,
            con("consrv_console_upstream_disconnects_total"): 0,
            con("consrv_console_child_up"): 1,  # from the banner: the child runs
            con("consrv_console_child_starts_total"): 0,  # running is not starting
            con("consrv_console_auto_restart", mode="on"): 1,
            con("consrv_console_auto_restart", mode="off"): 0,
            con("consrv_console_pattern_matches_total", pattern="segfault"): 0,
            con("consrv_console_pattern_matches_total", pattern="caught_signal"): 0,
            con("consrv_console_pattern_matches_total", pattern="unbalanced_quote"): 0,
            con("consrv_console_input_bytes_total"): 0,
            con("consrv_console_info", ioc="false"): 1,
        },
    )
    assert not any(s.startswith("consrv_console_child_exits_total") for s in first.samples)
    assert first.types["consrv_console_child_exits"] == "counter"
    sent = 0
    async with trio_asyncio.open_loop(), attach(live, "alice", "console") as alice:

        async def type_(data: bytes) -> None:
            nonlocal sent
            alice.send(data)
            sent += len(data)

        await type_(b"oops\r")
        await wait_for(
            port,
            {
                con("consrv_console_pattern_matches_total", pattern="segfault"): 1,  # once a line
                con("consrv_console_pattern_matches_total", pattern="caught_signal"): 2,
                con("consrv_console_pattern_matches_total", pattern="unbalanced_quote"): 0,
                con("consrv_console_input_bytes_total"): sent,
            },
        )
        await type_(b"exit 3\r")  # auto-restart is on: procServ starts it again
        await wait_for(
            port,
            {
                con("consrv_console_child_exits_total", reason="exit", code="3"): 1,
                con("consrv_console_child_starts_total"): 1,
                con("consrv_console_child_up"): 1,
            },
        )
        killed = kill_child(live.procserv, signal.SIGKILL)  # a crash: restarted too
        await wait_for(
            port,
            {
                con("consrv_console_child_exits_total", reason="signal", code="9"): 1,
                con("consrv_console_child_exits_total", reason="exit", code="3"): 1,
                con("consrv_console_child_starts_total"): 2,
                con("consrv_console_child_up"): 1,
            },
        )
        assert killed not in live.procserv.child_pids()
        await type_(b"\x14")  # ^T (procserv_keys: pass): auto-restart off
        await wait_for(
            port,
            {
                con("consrv_console_auto_restart", mode="on"): 0,
                con("consrv_console_auto_restart", mode="off"): 1,
                con("consrv_console_auto_restart", mode="oneshot"): 0,
            },
        )
        await type_(b"exit 0\r")
        exited = await wait_for(
            port,
            {
                con("consrv_console_child_exits_total", reason="exit", code="0"): 1,
                con("consrv_console_child_up"): 0,
            },
        )
        await trio.sleep(1.5)  # past --holdoff=1: with auto-restart off nothing restarts it
        down = await wait_for(
            port,
            {con("consrv_console_child_starts_total"): 2, con("consrv_console_child_up"): 0},
        )
        assert live.procserv.child_pids() == []
        await type_(b"\x12")  # ^R: restart the child while it is down
        await wait_for(
            port,
            {
                con("consrv_console_child_starts_total"): 3,
                con("consrv_console_child_up"): 1,
                con("consrv_console_input_bytes_total"): sent,
                con("consrv_console_pattern_matches_total", pattern="segfault"): 1,
                con("consrv_console_pattern_matches_total", pattern="caught_signal"): 2,
            },
        )
    stamp = con("consrv_console_last_output_timestamp_seconds")
    assert live.began <= first[stamp] <= exited[stamp] <= down[stamp] <= time.time()
    output = con("consrv_console_output_bytes_total")
    assert 0 < first[output] < exited[output]

    live.procserv.stop()  # procServ goes away (SIGTERM), and comes back
    await wait_for(
        port,
        {
            con("consrv_console_up"): 0,
            con("consrv_console_child_up"): 0,
            con("consrv_console_upstream_disconnects_total"): 1,
        },
    )
    live.start_procserv()
    back = await wait_for(
        port,
        {
            con("consrv_console_up"): 1,
            con("consrv_console_upstream_connects_total"): 2,
            con("consrv_console_upstream_disconnects_total"): 1,
            con("consrv_console_child_up"): 1,
            con("consrv_console_child_exits_total", reason="signal", code="9"): 1,
        },
    )
    # the log: every byte written is on disk (unbuffered), once output has settled
    written = con("consrv_console_log_written_bytes_total")
    what = f"{live.log}'s size to equal {written}"
    with deadline(10, what, lambda: f"{live.log.stat().st_size} on disk, {back[written]} counted"):
        while back[written] != live.log.stat().st_size:
            await trio.sleep(0.1)
            back = await scrape(port)
    assert back[written] > back[output] > 0  # output plus event lines
    assert back[con("consrv_console_log_write_errors_total")] == 0
    assert back[con("consrv_console_log_rotations_total")] == 0


async def test_viewers_roles_writer_sessions_stall_and_failed_logins(live: Live) -> None:
    port = live.metrics
    zero = {
        key("consrv_ssh_logins_total", login="console"): 0,
        key("consrv_ssh_logins_total", login="observer"): 0,
        **{
            key("consrv_ssh_auth_failures_total", reason=reason): 0
            for reason in ("unknown_key", "unknown_login", "bad_certificate", "no_method")
        },
        **{
            key("consrv_ssh_sessions", login=name, role=role): 0
            for name in ("console", "observer")
            for role in ("rw", "ro", "none")
        },
        con("consrv_console_clients", role="rw"): 0,
        con("consrv_console_clients", role="ro"): 0,
        con("consrv_console_writer"): 0,
        con("consrv_console_writer_since_timestamp_seconds"): None,
        con("consrv_console_viewer_dropped_bytes_total"): 0,
    }
    await wait_for(port, zero)
    async with trio_asyncio.open_loop():
        keys = {name: str(user.private) for name, user in live.keys.items()}
        await refused(live, "console", [keys["eve"]])  # a key no user has
        await refused(live, "root", [keys["alice"]])  # a login name consrv does not serve
        await refused(live, "console", [])  # a password: consrv offers keys only
        eve_cert = with_certificate(live.keys["eve"].private, "eve")
        await refused(live, "console", [eve_cert])  # a certificate (then eve's bare key)
        # alice's certificate is refused too, then her bare key lets her in: no failure
        await login(live, "console", [with_certificate(live.keys["alice"].private, "alice")])
        await wait_for(
            port,
            {
                key("consrv_ssh_auth_failures_total", reason="unknown_key"): 1,
                key("consrv_ssh_auth_failures_total", reason="unknown_login"): 1,
                key("consrv_ssh_auth_failures_total", reason="no_method"): 1,
                key("consrv_ssh_auth_failures_total", reason="bad_certificate"): 1,
                key("consrv_ssh_auth_failures_total", reason="timeout"): 0,
                key("consrv_ssh_logins_total", login="console"): 1,
            },
        )
        before = time.time()
        async with (
            attach(live, "alice", "console") as alice,  # rw: takes the write lock
            attach(live, "bob", "observer") as bob,  # rw user, observer login: read-only
            attach(live, "olga", "console") as olga,  # ro user on the service login
            attach(live, "alice", "console", "", pty=True) as menu,  # the menu: no console
        ):
            await menu.expect(rb"\S")
            attached = time.time()
            busy = await wait_for(
                port,
                {
                    con("consrv_console_clients", role="rw"): 1,
                    con("consrv_console_clients", role="ro"): 2,
                    con("consrv_console_writer"): 1,
                    key("consrv_ssh_sessions", login="console", role="rw"): 1,
                    key("consrv_ssh_sessions", login="console", role="ro"): 1,
                    key("consrv_ssh_sessions", login="console", role="none"): 1,
                    key("consrv_ssh_sessions", login="observer", role="ro"): 1,
                    key("consrv_ssh_sessions", login="observer", role="rw"): 0,
                    key("consrv_ssh_logins_total", login="console"): 4,
                    key("consrv_ssh_logins_total", login="observer"): 1,
                    con("consrv_console_viewer_dropped_bytes_total"): 0,
                },
            )
            since = busy[con("consrv_console_writer_since_timestamp_seconds")]
            assert before <= since <= attached

            olga.send(b"exit 5\r")  # read-only: never sent
            bob.send(b"exit 6\r")  # rw user, but on the observer login: never sent
            olga.chan.pause_reading()  # olga stalls; the others keep reading
            out = con("consrv_console_output_bytes_total")
            flood = f"flood {FLOOD}\r".encode()
            alice.send(flood)
            await wait_until(port, out, busy[out] + FLOOD)
            stalled = await wait_until(port, con("consrv_console_viewer_dropped_bytes_total"), 1)
            await alice.expect(rb"flood done", timeout=20)
            assert b"flood done" not in olga.stdout
            olga.chan.resume_reading()
            alice.send(b"oops\r")  # more output: olga is told what she missed
            await olga.expect(rb"\d+ bytes dropped", stderr=True, timeout=20)
            await bob.expect(rb"flood done", timeout=20)
            assert bytes(bob.stdout).count(b"x" * 99) == FLOOD // 100  # bob lost nothing
    gone = await wait_for(
        port,
        {
            **{s: v for s, v in zero.items() if "dropped" not in s and "_total" not in s},
            key("consrv_ssh_logins_total", login="console"): 4,
            key("consrv_ssh_auth_failures_total", reason="unknown_key"): 1,
            con("consrv_console_input_bytes_total"): len(flood) + len(b"oops\r"),
            con("consrv_console_child_starts_total"): 0,  # nobody's "exit" reached the child
        },
    )
    dropped = con("consrv_console_viewer_dropped_bytes_total")
    assert gone[dropped] >= stalled[dropped] > 0  # never goes back when the viewer leaves
    assert gone[dropped] <= gone[out] - busy[out]


async def test_a_live_scrape_passes_promtool_and_carries_build_info(live: Live) -> None:
    async with trio_asyncio.open_loop(), attach(live, "alice", "console") as alice:
        alice.send(b"oops\rexit 7\r")
        busy = await wait_for(
            live.metrics,
            {con("consrv_console_child_exits_total", reason="exit", code="7"): 1},
        )
        _, body = await fetch(live.metrics)
        head, open_body = await fetch(live.metrics, PROMETHEUS_ACCEPT)
    result = promtool_check(body.decode())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""  # no lint warnings either
    build = busy[key("consrv_build_info", version=__version__, python=platform.python_version())]
    assert build == 1
    assert busy.types["consrv_build_info"] == "gauge"  # info, in the text format
    assert busy[key("process_open_fds")] > 0
    for family in busy.families:
        assert family.name.startswith(("consrv_", "process_")), family.name
        assert family.documentation, family.name
        if family.type == "counter":
            assert all(s.name == family.name + "_total" for s in family.samples), family.name
    # what Prometheus itself asks for: OpenMetrics, with the info family typed as such
    assert b"application/openmetrics-text; version=1.0.0" in head, head
    # prometheus_client's OpenMetrics parser has no annotations
    parsed: Iterator[Metric] = openmetrics_families(open_body.decode())  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    assert families["consrv_build"].type == "info"
    (exits,) = (
        s
        for s in families["consrv_console_child_exits"].samples
        if s.labels.get("code") == "7" and s.name.endswith("_total")
    )
    assert exits.value == 1


async def test_config_reloads_count_failures_successes_and_new_patterns(live: Live) -> None:
    port, path = live.metrics, live.consrv.config
    process = live.consrv.process
    assert process is not None
    good = yaml.safe_load(path.read_text())
    segfault = con("consrv_console_pattern_matches_total", pattern="segfault")
    bye = con("consrv_console_pattern_matches_total", pattern="bye")
    async with trio_asyncio.open_loop(), attach(live, "alice", "console") as alice:
        alice.send(b"oops\r")
        first = await wait_for(
            port,
            {
                key("consrv_config_reloads_total", result="success"): 0,
                key("consrv_config_reloads_total", result="failure"): 0,
                key("consrv_config_last_reload_successful"): 1,
                segfault: 1,
                bye: None,
            },
        )
        started = first[key("consrv_config_last_reload_success_timestamp_seconds")]
        assert live.began <= started <= time.time()  # the start-up load
        write_config(path, {**good, "no_such_key": 1})
        process.send_signal(signal.SIGHUP)
        await wait_for(
            port,
            {
                key("consrv_config_reloads_total", result="failure"): 1,
                key("consrv_config_last_reload_successful"): 0,
                key("consrv_config_last_reload_success_timestamp_seconds"): started,
            },
        )
        good["consoles"][CON]["patterns"]["bye"] = "leaving with status"
        write_config(path, good)
        process.send_signal(signal.SIGHUP)
        await wait_for(
            port,
            {
                key("consrv_config_reloads_total", result="success"): 1,
                key("consrv_config_reloads_total", result="failure"): 1,
                key("consrv_config_last_reload_successful"): 1,
                bye: 0,
                segfault: 1,  # an unchanged pattern keeps its count
            },
        )
        alice.send(b"exit 1\r")  # alice's session survived the reload
        reloaded = await wait_for(
            port,
            {bye: 1, con("consrv_console_child_exits_total", reason="exit", code="1"): 1},
        )
    assert reloaded[key("consrv_config_last_reload_success_timestamp_seconds")] > started


# ---------------------------------------------------------------- IOC units


async def test_ioc_unit_state_follows_a_real_unit(manager: SystemdUser, tmp_path: Path) -> None:
    manager.write_ioc_env(UNIT, tmp_path, child_argv(tmp_path))
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
            "metrics": {"listen": "127.0.0.1:0"},
            "ioc": {"scope": "user", "poll_interval": 0.5, "discover": False},
            "consoles": {UNIT: {}},
        },
    )
    consrv = Consrv(config, tmp_path, manager.env)
    unit = f"ioc@{UNIT}.service"
    try:
        consrv.start()
        port = consrv.metrics_port()
        states = ("active", "inactive", "failed", "activating")

        def state(active: str) -> dict[str, float | None]:
            return {
                key("consrv_ioc_unit_state", console=UNIT, state=s): int(s == active)
                for s in states
            }

        def unit_info(sub_state: str) -> str:
            return key(
                "consrv_ioc_unit_info",
                console=UNIT, unit=unit, load_state="loaded", sub_state=sub_state,
            )  # fmt: skip

        await wait_for(port, {**state("inactive"), key("consrv_console_up", console=UNIT): 0})
        t0 = time.time()
        manager.systemctl("start", unit)
        running = await wait_for(
            port,
            {
                **state("active"),
                unit_info("running"): 1,
                key("consrv_ioc_unit_restarts_total", console=UNIT): 0,
                key("consrv_console_up", console=UNIT): 1,
                key("consrv_console_info", console=UNIT, ioc="true"): 1,
            },
        )
        started = running[key("consrv_ioc_unit_start_time_seconds", console=UNIT)]
        assert t0 - 1 <= started <= time.time()  # systemd's text stamps have whole seconds
        os.kill(int(manager.show(unit, "MainPID")["MainPID"]), signal.SIGKILL)  # procServ dies
        again = await wait_for(  # Restart=always, RestartSec=2
            port,
            {
                **state("active"),
                unit_info("running"): 1,
                key("consrv_ioc_unit_restarts_total", console=UNIT): 1,
                key("consrv_console_up", console=UNIT): 1,
                key("consrv_console_upstream_connects_total", console=UNIT): 2,
            },
        )
        assert again[key("consrv_ioc_unit_start_time_seconds", console=UNIT)] > started
        manager.systemctl("stop", unit)
        await wait_for(
            port,
            {
                **state("inactive"),
                unit_info("dead"): 1,
                key("consrv_console_up", console=UNIT): 0,
                key("consrv_console_upstream_disconnects_total", console=UNIT): 2,
            },
        )
    finally:
        if consrv.process is not None:
            consrv.stop()
        manager.stop_iocs()
