"""The IOC lifecycle as users meet it: consrv over SSH in front of real ``ioc@`` units.

consrv runs as a process (``consrv serve``) with ``ioc: {scope: user}`` against a
private systemd user manager (tests/systemd_user.py); every ``ioc@NAME`` instance is
procServ running a real EPICS soft IOC. The users are the OpenSSH client
(``ssh console@host restart NAME``, ``ssh -tt`` on a pty) and asyncssh (scripted, with
a pty). Every ``systemctl`` consrv runs is recorded by a wrapper first in consrv's
PATH, and what it did is checked against the manager itself (``systemctl --user
show`` and ``list-units``).

One manager and one consrv serve the module (starting them is most of the cost);
each test works on IOC names of its own, so the tests stay independent. The shared
consrv polls IOC health once an hour, so after its start-up every ``systemctl`` it
runs is one a test caused. docs/operations.md names these tests for its steps.

Policy: loopback and UNIX sockets only, port 0 (but for the sd_notify test, which
must know its port before consrv starts), every wait bounded; the manager and
everything under it, and every consrv, are stopped at the end.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import trio_asyncio

from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import PtySSH, ScriptedSSH, scripted_ssh, ssh_argv
from tests.systemd_user import CONSRV_UNIT, REPO, SystemdUser, softioc_cmd
from tests.waits import deadline, wait_until

pytestmark = pytest.mark.integration

BOOTED = b"iocRun: All initialization complete"
USERS = ("alice", "bob", "olga")  # alice operates; bob is rw only; olga is ro only
IOCS = ("lc-run", "lc-watch", "lc-guard", "lc-off", "lc-esc", "lc-auto", "lc-stale")  # env files
NO_ENV = "lc-noenv"  # a configured IOC without its env file: systemctl start fails
PLAIN = "plain"  # a console that is not an IOC unit
SYSTEMCTL = "--user --no-ask-password --no-pager"  # consrv's systemctl options
QUERIES = ("show", "list-units")  # systemctl verbs that change nothing

WRAPPER = """#!/bin/sh
# systemctl, recording each call's arguments (one line a call) for the test.
printf '%s\\n' "$*" >> {calls}
exec {systemctl} "$@"
"""


@dataclass
class Lab:
    """The module's systemd user manager, with consrv in front of it."""

    systemd: SystemdUser
    consrv: Consrv
    root: Path
    keys: dict[str, UserKey]
    calls_path: Path
    autostart_was: str  # lc-auto's ActiveState just before consrv started
    startup_calls: list[str]  # the systemctl calls consrv made as it started

    @property
    def port(self) -> int:
        return self.consrv.port

    def calls(self) -> list[str]:
        """Every systemctl call consrv made so far, as its arguments."""
        if not self.calls_path.exists():
            return []
        return self.calls_path.read_text().splitlines()

    def actions(self, since: int) -> list[str]:
        """The calls after the first ``since`` that are not queries (show, list-units)."""
        return [line for line in self.calls()[since:] if _verb(line) not in QUERIES]

    def console_log(self, name: str) -> str:
        path = self.root / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def unit(self, name: str, *properties: str) -> dict[str, str]:
        return self.systemd.show(f"ioc@{name}.service", *properties)


def _verb(call: str) -> str:
    return call.removeprefix(SYSTEMCTL).split()[0]


def _wrapper_env(systemd: SystemdUser, root: Path, calls: Path) -> dict[str, str]:
    """The manager's environment with a recording ``systemctl`` first in PATH."""
    real = shutil.which("systemctl")
    assert real is not None
    bin_dir = root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "systemctl"
    wrapper.write_text(WRAPPER.format(calls=shlex.quote(str(calls)), systemctl=real))
    wrapper.chmod(0o755)
    env = dict(systemd.env)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


def _lab_config(root: Path, keys: dict[str, UserKey]) -> Path:
    consoles: dict[str, dict[str, Any]] = {name: {} for name in (*IOCS, NO_ENV)}
    consoles["lc-auto"] = {"autostart": True}
    consoles[PLAIN] = {"socket": str(root / "plain.sock"), "ioc": False}
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "log_dir": str(root / "logs"),
            "users": {key.name: {"keys": [key.public]} for key in keys.values()},
            "defaults": {"rw": ["alice", "bob"], "ro": ["*"], "operate": ["alice"]},
            # No periodic polls during the tests: see the module docstring.
            "ioc": {"scope": "user", "poll_interval": "1h"},
            "consoles": consoles,
        },
    )


@pytest.fixture(scope="module")
def lab(manager: SystemdUser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lifecycle")
    keys = {name: make_key(root, name) for name in USERS}
    for name in IOCS:
        manager.write_ioc_env(name, REPO, softioc_cmd(name))
    calls = root / "systemctl.calls"
    env = _wrapper_env(manager, root, calls)
    autostart_was = manager.show("ioc@lc-auto.service", "ActiveState")["ActiveState"]
    consrv = Consrv(_lab_config(root, keys), root, env).start()
    lab = Lab(manager, consrv, root, keys, calls, autostart_was, [])
    try:
        # Start-up: list-units (discovery), show + start (autostart), show (first poll).
        consrv.wait_for_log(rb"autostart: started")
        what = "consrv's first health poll (its 4th systemctl call)"
        wait_until(lambda: len(lab.calls()) >= 4, what, timeout=15, seen=lab.calls)
        lab.startup_calls = lab.calls()
        yield lab
    finally:
        consrv.stop()
        manager.stop_iocs()


# ---------------------------------------------------------------- helpers


async def ssh(lab: Lab, user: str, *command: str, login: str = "console") -> tuple[int, str, str]:
    """``ssh -T LOGIN@HOST COMMAND...`` with OpenSSH: exit status, stdout, stderr."""
    argv = ssh_argv(lab.port, lab.keys[user].private, login, *command, tty=False)
    with deadline(30, f"ssh {login}@127.0.0.1 {' '.join(command)} (as {user}) to finish"):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def status_of(lab: Lab, name: str) -> dict[str, Any]:
    status, out, err = await ssh(lab, "alice", "status", name, "--json")
    assert (status, err) == (0, "")
    (console,) = json.loads(out)["consoles"]
    assert isinstance(console, dict)
    return console


async def wait_status(
    lab: Lab, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15
) -> dict[str, Any]:
    """Ask ``status NAME --json`` until ``check`` passes; ``what`` names the awaited state."""
    console: dict[str, Any] = {}
    with deadline(timeout, f"`status {name} --json` to say {what}", lambda: console):
        while not check(console := await status_of(lab, name)):
            await trio.sleep(0.1)
    return console


async def wait_booted(systemd: SystemdUser, name: str, times: int = 1) -> None:
    """Until procServ's log of ``name`` shows the IOC's boot ``times`` times."""
    log = systemd.ioc_log_path(name)

    def tail() -> bytes:
        return log.read_bytes() if log.exists() else b"(no file)"

    with deadline(30, f"{BOOTED!r} {times} time(s) in {log}", tail):
        while not log.exists() or log.read_bytes().count(BOOTED) < times:
            await trio.sleep(0.05)


async def expect_after(
    client: ScriptedSSH, start: int, pattern: bytes, *, stderr: bool = False, timeout: float = 20
) -> None:
    """Wait for ``pattern`` in what ``client`` received after offset ``start``."""
    regex = re.compile(pattern)
    buffer = client.stderr if stderr else client.stdout
    with trio.move_on_after(timeout):
        while not regex.search(buffer, start):
            if client.collector.closed.is_set():
                break
            await trio.sleep(0.01)
        return
    raise AssertionError(f"no {pattern!r} in {bytes(buffer[start:])[-3000:]!r}")


@asynccontextmanager
async def connection(lab: Lab, user: str) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """One asyncssh connection for many commands (needs trio_asyncio.open_loop())."""
    conn = await trio_asyncio.aio_as_trio(asyncssh.connect)(
        "127.0.0.1", lab.port, username="console", client_keys=[str(lab.keys[user].private)],
        known_hosts=None, agent_path=None, connect_timeout=5,
    )  # fmt: skip
    try:
        yield conn
    finally:
        conn.close()
        await trio_asyncio.aio_as_trio(conn.wait_closed)()


async def listed(conn: asyncssh.SSHClientConnection) -> dict[str, dict[str, Any]]:
    """``list --json`` on an open connection, by console name."""
    result = await trio_asyncio.aio_as_trio(conn.run)("list --json", check=True)
    assert isinstance(result.stdout, str)
    return {console["name"]: console for console in json.loads(result.stdout)["consoles"]}


def pid_of(lab: Lab, name: str) -> int:
    return int(lab.unit(name, "MainPID")["MainPID"])


def process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def events(log: str) -> list[str]:
    """consrv's event lines of a console log, without their time stamps."""
    return re.findall(r"^\[consrv \S+\] (.*)$", log, re.MULTILINE)


# ---------------------------------------------------------------- start, restart, stop


async def test_start_restart_stop_over_ssh_drive_the_real_unit(lab: Lab) -> None:
    name, unit = "lc-run", "ioc@lc-run.service"
    since = len(lab.calls())
    assert await ssh(lab, "alice", "start", name) == (0, "started lc-run\n", "")
    started = lab.unit(name, "ActiveState", "SubState", "MainPID")
    assert (started["ActiveState"], started["SubState"]) == ("active", "running")
    assert process_name(int(started["MainPID"])) == "procServ"
    await wait_status(lab, name, lambda console: console["state"] == "up", "state up")

    assert await ssh(lab, "alice", "restart", name) == (0, "restarted lc-run\n", "")
    restarted = lab.unit(name, "ActiveState", "SubState", "MainPID")
    assert (restarted["ActiveState"], restarted["SubState"]) == ("active", "running")
    assert restarted["MainPID"] != started["MainPID"]

    assert await ssh(lab, "alice", "stop", name) == (0, "stopped lc-run\n", "")
    stopped = lab.unit(name, "ActiveState", "SubState", "MainPID")
    assert (stopped["ActiveState"], stopped["SubState"], stopped["MainPID"]) == (
        "inactive",
        "dead",
        "0",
    )
    # Right after the action, not a poll later: stopped, not an error.
    console = await status_of(lab, name)
    assert (console["state"], console["connected"]) == ("stopped", False)
    assert (console["ioc"]["unit"], console["ioc"]["active_state"]) == (unit, "inactive")

    verbs = ("start", "restart", "stop")
    assert lab.actions(since) == [f"{SYSTEMCTL} {verb} -- {unit}" for verb in verbs]
    assert "INFO consrv.service: lc-run: restart by alice\n" in lab.consrv.stderr()  # journald
    logged = [e for e in events(lab.console_log(name)) if "alice" in e]
    assert logged == [
        "start requested by alice",
        "start by alice: done",
        "restart requested by alice",
        "restart by alice: done",
        "stop requested by alice",
        "stop by alice: done",
    ]


async def test_an_attached_user_sees_the_restart_and_the_boot_live(lab: Lab) -> None:
    name = "lc-watch"
    # The fixture waits for the first health poll's systemctl call, not for consrv to
    # have read its answer: run first, bob could attach before the unit was known.
    await wait_status(lab, name, lambda c: c["state"] == "stopped", "state stopped")
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.keys["bob"].private, "console", name, pty=True) as bob,
    ):
        # bob may not operate: told the IOC is stopped, not offered to start it.
        await bob.expect(rb"IOC lc-watch is stopped; someone in its operate list", stderr=True)
        assert b"Start it?" not in bob.stderr
        lab.systemd.systemctl("start", f"ioc@{name}.service")  # an admin starts it
        await bob.expect(BOOTED, timeout=30)  # the whole boot, live
        await bob.expect(rb"epics> ")
        out, err = len(bob.stdout), len(bob.stderr)
        first = pid_of(lab, name)

        assert await ssh(lab, "alice", "restart", name) == (0, "restarted lc-watch\n", "")
        # systemctl restart returns once the new procServ runs: consrv may connect to
        # it before or after it says "done".
        await expect_after(bob, err, rb"(?s)restart requested by alice.*lc-watch down", stderr=True)
        await expect_after(bob, err, rb"(?s)lc-watch down.*lc-watch up", stderr=True)
        await expect_after(bob, err, rb"(?s)lc-watch down.*restart by alice: done", stderr=True)
        await expect_after(bob, out, rb"(?s)@@@ Welcome to procServ.*" + re.escape(BOOTED))
        await expect_after(bob, out, rb"epics> ")
    assert pid_of(lab, name) != first


# ---------------------------------------------------------------- who may, what may not


async def test_operate_is_enforced_and_the_unit_is_untouched(lab: Lab) -> None:
    name = "lc-guard"
    lab.systemd.systemctl("start", f"ioc@{name}.service")
    before = lab.unit(name, "MainPID", "ExecMainStartTimestamp", "ActiveState")
    assert before["ActiveState"] == "active"
    since = len(lab.calls())

    denied = "consrv: you may not {} lc-guard (not in its operate list)\n"
    assert await ssh(lab, "bob", "restart", name) == (3, "", denied.format("restart"))
    assert await ssh(lab, "olga", "stop", name) == (3, "", denied.format("stop"))
    # alice operates lc-guard, but never through the observer login.
    assert await ssh(lab, "alice", "stop", name, login="observer") == (
        3,
        "",
        "consrv: you may not stop lc-guard (the observer login is read-only)\n",
    )
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.keys["bob"].private, "console", name, pty=True) as bob,
    ):
        await bob.expect(rb"attached to lc-guard", stderr=True)
        bob.send(b"\x05c?")
        await bob.expect(rb"this help", stderr=True)
        assert b"IOC action" not in bob.stderr
        bob.send(b"\x05c!restart\r")
        await bob.expect(rb"you may not operate lc-guard", stderr=True)
        assert b"Restart IOC" not in bob.stderr

    assert lab.calls()[since:] == []  # not even a show
    assert lab.unit(name, "MainPID", "ExecMainStartTimestamp", "ActiveState") == before
    assert not [e for e in events(lab.console_log(name)) if "requested" in e]


async def test_a_typo_or_a_bad_name_runs_no_systemctl_and_instantiates_nothing(lab: Lab) -> None:
    canary = lab.root / "canary"
    unknown = "consrv: unknown console 'ioc-typo'"
    invalid = "consrv: invalid console name"
    cases = [
        (("restart", "ioc-typo"), 1, unknown),
        (("start", "ioc-typo"), 1, unknown),
        (("stop", "ioc-typo"), 1, unknown),
        (("restart", "'../x'"), 1, f"{invalid} '../x'"),  # ssh console@h "restart '../x'"
        (("restart", "../x"), 1, f"{invalid} '../x'"),  # ssh console@h restart '../x'
        (("restart", shlex.quote("x;rm -rf /")), 1, f"{invalid} 'x;rm -rf /'"),
        (("restart", "x;rm -rf /"), 2, "consrv: restart: unknown option '-rf'"),
        (("restart", shlex.quote(f"x;touch {canary}")), 1, f"{invalid} 'x;touch"),
        (("restart", f"$(touch {canary})"), 2, "consrv: restart: too many arguments"),
        (("restart", f"`touch {canary}`"), 2, "consrv: restart: too many arguments"),
        (("restart", "'ioc@x.service'"), 1, f"{invalid} 'ioc@x.service'"),
        (("restart", PLAIN), 1, "consrv: plain is not an IOC unit (ioc: true in the config)"),
    ]
    units = lab.systemd.units("ioc@*")
    calls = lab.calls()
    for command, status, message in cases:
        code, out, err = await ssh(lab, "alice", *command)
        assert (code, out) == (status, ""), command
        assert err.startswith(message), (command, err)
        assert err.count("\n") == 1, err
    assert lab.calls() == calls  # not one systemctl call
    # Instances only ever go away (stopped ones are unloaded); none appeared.
    assert set(lab.systemd.units("ioc@*")) <= set(units)
    assert not canary.exists()
    assert not (lab.root / "logs" / "ioc-typo.log").exists()


async def test_a_systemctl_failure_reaches_the_user(lab: Lab) -> None:
    code, out, err = await ssh(lab, "alice", "start", NO_ENV)
    reason = (
        "systemctl start ioc@lc-noenv.service failed: Job for ioc@lc-noenv.service failed"
        " because of unavailable resources or another system error. (exit 1)"
    )
    try:
        assert (code, out, err) == (4, "", f"consrv: {reason}\n")
        assert f"start by alice failed: {reason}" in events(lab.console_log(NO_ENV))
        journal = f"WARNING consrv.service: {NO_ENV}: start by alice failed: {reason}\n"
        assert journal in lab.consrv.stderr()
        # Read right after the failure: systemd retries it (Restart=always) until its
        # start limit, so the unit is failed or waiting to restart; the IOC is not up.
        console = await status_of(lab, NO_ENV)
        assert console["ioc"]["active_state"] in ("failed", "activating")
        assert console["state"] in ("failed", "down")
    finally:
        lab.systemd.systemctl("stop", f"ioc@{NO_ENV}.service", check=False)
        lab.systemd.systemctl("reset-failed", f"ioc@{NO_ENV}.service", check=False)


# ---------------------------------------------------------------- discovery, stopped, autostart


async def test_a_new_instance_is_discovered_and_connected_within_a_second(lab: Lab) -> None:
    name, unit = "lc-new", "ioc@lc-new.service"
    lab.systemd.write_ioc_env(name, REPO, softioc_cmd(name))
    socket_path = lab.systemd.socket_path(name)
    assert not socket_path.parent.exists()
    async with trio_asyncio.open_loop(), connection(lab, "alice") as conn:
        assert name not in await listed(conn)
        lab.systemd.systemctl("start", unit)  # not through consrv, not in its config
        console: dict[str, Any] = {}
        what = f"`list --json` to show the new instance {name} connected"
        with deadline(15, what, lambda: console):
            while not (console := (await listed(conn)).get(name, {})).get("connected"):
                await trio.sleep(0.01)
        seen = time.time()  # the answer reflects a moment before this
    # A socket's mtime is its creation (procServ's chmod changes only ctime).
    latency = seen - socket_path.stat().st_mtime
    assert latency < 1.0, f"connected {latency:.3f} s after procServ made its socket"
    # Connected to procServ; the IOC itself starts ~0.5 s later ("child-down" until then).
    assert console["state"] in ("up", "child-down")
    assert console["ioc"]["unit"] == unit
    assert f"discovered IOC lc-new (socket {socket_path})" in lab.consrv.stderr()
    # In time for the boot (procServ starts the IOC ~0.5 s after making its socket).
    what = f"the boot line in consrv's log of {name}"
    with deadline(30, what, lambda: lab.console_log(name)):
        while BOOTED.decode() not in lab.console_log(name):
            await trio.sleep(0.05)
    # A discovered IOC is operated like a configured one (defaults.operate).
    assert await ssh(lab, "alice", "stop", name) == (0, "stopped lc-new\n", "")
    console = await status_of(lab, name)
    assert (console["state"], console["ioc"]["active_state"]) == ("stopped", "inactive")


async def test_a_stopped_ioc_shows_stopped_and_attaching_offers_to_start_it(lab: Lab) -> None:
    name = "lc-off"
    console = await status_of(lab, name)
    assert (console["state"], console["connected"]) == ("stopped", False)
    assert console["ioc"]["active_state"] == "inactive"
    status, out, err = await ssh(lab, "alice", "status", name)
    assert (status, err) == (0, "")
    assert out.startswith("console   lc-off: stopped\n")

    client = await PtySSH(ssh_argv(lab.port, lab.keys["alice"].private, "console", name)).start()
    try:
        await client.expect(rb"IOC lc-off is stopped\. Start it\? \[y/N\]")
        await client.send(b"y")
        await client.expect(rb"start by alice: done")
        await client.expect(re.escape(BOOTED), timeout=30)  # not running before the "y"
        await client.expect(rb"epics> ")
        await client.send(b"\x05c.")
        await client.expect(rb"detached from lc-off")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    assert lab.unit(name, "ActiveState")["ActiveState"] == "active"
    assert "start by alice: done" in events(lab.console_log(name))


async def test_the_start_question_is_withdrawn_when_the_ioc_is_started_elsewhere(
    lab: Lab,
) -> None:
    """Asked "Start it?", the operator does not answer; a colleague starts the real unit
    from another session. The question is withdrawn with a line that says why, and the
    first command typed after the boot goes to the IOC (issue 24)."""
    name = "lc-stale"
    client = await PtySSH(ssh_argv(lab.port, lab.keys["alice"].private, "console", name)).start()
    try:
        await client.expect(rb"IOC lc-stale is stopped\. Start it\? \[y/N\]")
        assert (await ssh(lab, "alice", "start", name))[:2] == (0, "started lc-stale\n")
        await client.expect(rb"question withdrawn: IOC lc-stale (was started meanwhile|is )")
        await client.expect(re.escape(BOOTED), timeout=30)
        await client.expect(rb"epics> ")
        await client.send(b"dbgf lc-stale:name\r")  # typed, not a key: the IOC's command
        await client.expect(rb'DBF_STRING:\s+"lc-stale"')
        await client.send(b"\x05c.")
        await client.expect(rb"detached from lc-stale")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    assert b"Start it?" not in client.output.split(b"question withdrawn")[-1]
    assert b"byte(s)" not in client.output  # nothing typed was taken as an answer
    assert lab.unit(name, "ActiveState")["ActiveState"] == "active"


async def test_the_restart_escape_restarts_the_unit_from_a_session(lab: Lab) -> None:
    name = "lc-esc"
    lab.systemd.systemctl("start", f"ioc@{name}.service")
    await wait_booted(lab.systemd, name)
    await wait_status(lab, name, lambda console: console["connected"], "connected")
    first = pid_of(lab, name)
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.keys["alice"].private, "console", name, pty=True) as alice,
    ):
        await alice.expect(rb"attached to lc-esc: you write", stderr=True)
        out = len(alice.stdout)
        alice.send(b"\x05c!")
        await alice.expect(rb"IOC action \(restart, start, stop\): ", stderr=True)
        alice.send(b"restart\r")
        await alice.expect(rb"Restart IOC lc-esc\? \[y/N\] ", stderr=True)
        assert pid_of(lab, name) == first  # nothing happens before the answer
        alice.send(b"y")
        await alice.expect(rb"restart by alice: done", stderr=True)
        await expect_after(alice, out, re.escape(BOOTED))
    assert pid_of(lab, name) not in (0, first)
    logged = events(lab.console_log(name))
    assert logged.index("restart requested by alice") < logged.index("restart by alice: done")


async def test_autostart_started_the_stopped_ioc_when_consrv_started(lab: Lab) -> None:
    assert lab.autostart_was == "inactive"
    unit = lab.unit("lc-auto", "ActiveState", "SubState")
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running")
    # Only the IOC marked autostart was started (after one show of them all).
    assert lab.actions(0)[0] == f"{SYSTEMCTL} start -- ioc@lc-auto.service"
    assert [_verb(call) for call in lab.startup_calls] == ["list-units", "show", "start", "show"]
    assert "autostart: started lc-auto" in lab.consrv.stderr()
    console = await wait_status(lab, "lc-auto", lambda console: console["connected"], "connected")
    assert console["ioc"]["unit"] == "ioc@lc-auto.service"


# ---------------------------------------------------------------- sd_notify


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        assert isinstance(port, int)
        return port


async def _datagram(receiver: trio.socket.SocketType, timeout: float = 15) -> tuple[float, bytes]:
    with deadline(timeout, "a datagram from consrv on its NOTIFY_SOCKET"):
        data = await receiver.recv(4096)
    return trio.current_time(), data


async def test_sd_notify_ready_after_listening_then_watchdog_then_stopping(
    manager: SystemdUser, tmp_path: Path
) -> None:
    receiver = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    await receiver.bind(str(tmp_path / "notify"))
    port = _free_port()
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": [f"127.0.0.1:{port}"], "host_key": str(tmp_path / "host_key")},
            "ioc": {"scope": "user", "discover": False},
            "consoles": {"lc-notify": {}},
        },
    )
    env = dict(manager.env, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    consrv = Consrv(config, tmp_path, env).spawn()
    try:
        _, ready = await _datagram(receiver)
        # At once: the SSH port takes connections and answers with its banner.
        with deadline(5, f"an SSH banner from 127.0.0.1:{port} right after READY=1"):
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                assert (await stream.receive_some(256)).startswith(b"SSH-2.0-")
        assert ready == b"READY=1\nSTATUS=0/1 console(s) up, 0 session(s)"

        pings = [await _datagram(receiver) for _ in range(4)]
        assert [data for _, data in pings] == [b"WATCHDOG=1"] * 4
        gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(pings)]
        assert all(0.3 < gap < 1.0 for gap in gaps), gaps  # every half WATCHDOG_USEC

        assert consrv.process is not None
        consrv.process.terminate()
        while (message := (await _datagram(receiver))[1]) == b"WATCHDOG=1":
            pass
        assert message == b"STOPPING=1"
        assert consrv.process.wait(10) == 0
        assert "INFO consrv.daemon: stopped" in consrv.stderr()
    finally:
        consrv.stop()
        receiver.close()


# ---------------------------------------------------------------- consrv as a unit

UNIT_KEYS = (  # consrv.service's lines that make it a notify service (systemd/README.md)
    "Type", "NotifyAccess", "ExecStartPre", "ExecStart", "ExecReload", "Restart",
    "RestartSec", "TimeoutStopSec", "WatchdogSec",
)  # fmt: skip


def user_consrv_unit(config: Path, runtime_dir: Path) -> str:
    """consrv.service for a user manager: its notify lines, this venv's consrv, ``config``.

    No User=/Group= (a user manager cannot change user) and no sandbox (covered by
    test_systemd.py::test_consrv_works_inside_its_sandbox).
    """
    program = Path(sys.executable).parent / "consrv"
    lines = ["[Unit]", "Description=consrv (user scope)", "[Service]"]
    for line in CONSRV_UNIT.read_text().splitlines():
        if line.split("=", 1)[0] in UNIT_KEYS:
            line = line.replace("/usr/local/bin/consrv", str(program))
            lines.append(line.replace("/etc/consrv/consrv.yaml", str(config)))
    lines += [f"Environment=XDG_RUNTIME_DIR={runtime_dir}", "[Install]", "WantedBy=default.target"]
    return "\n".join(lines) + "\n"


async def test_enable_now_runs_consrv_as_a_notify_unit_in_front_of_its_iocs(
    manager: SystemdUser, tmp_path: Path
) -> None:
    name = "lc-unit"
    manager.write_ioc_env(name, REPO, softioc_cmd(name))
    alice = make_key(tmp_path, "alice")
    port = _free_port()
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": [f"127.0.0.1:{port}"], "host_key": str(tmp_path / "host_key")},
            "log_dir": str(tmp_path / "logs"),
            "users": {"alice": {"keys": [alice.public]}},
            "defaults": {"rw": ["alice"], "operate": ["alice"]},
            "ioc": {"scope": "user", "discover": False},
            "consoles": {name: {"autostart": True}},
        },
    )
    unit = tmp_path / "consrv.service"
    unit.write_text(user_consrv_unit(config, manager.runtime_dir))
    manager.install_unit(unit)
    try:
        # Type=notify: `enable --now` returns once consrv sent READY=1.
        manager.systemctl("enable", "--now", "consrv.service")
        shown = manager.show("consrv.service", "ActiveState", "SubState", "StatusText")
        assert (shown["ActiveState"], shown["SubState"]) == ("active", "running")
        assert re.fullmatch(r"[01]/1 console\(s\) up, 0 session\(s\)", shown["StatusText"])
        assert manager.show("consrv.service", "WatchdogUSec")["WatchdogUSec"] == "30s"
        # consrv autostarted its IOC and is connected to it.
        console: dict[str, Any] = {}
        what = f"consrv.service to report {name} connected in `status {name} --json`"
        with deadline(15, what, lambda: console):
            while True:
                argv = ssh_argv(port, alice.private, "console", "status", name, "--json")
                result = await trio.run_process(argv, capture_stdout=True, check=False)
                console = json.loads(result.stdout or b'{"consoles":[{}]}')["consoles"][0]
                if console.get("connected"):
                    break
                await trio.sleep(0.1)
        assert console["ioc"]["unit"] == f"ioc@{name}.service"
        assert manager.show(f"ioc@{name}.service", "ActiveState")["ActiveState"] == "active"
        # SIGTERM (STOPPING=1): a clean stop, which leaves the IOC running.
        manager.systemctl("stop", "consrv.service")
        shown = manager.show("consrv.service", "ActiveState", "Result")
        assert (shown["ActiveState"], shown["Result"]) == ("inactive", "success")
        assert manager.show(f"ioc@{name}.service", "ActiveState")["ActiveState"] == "active"
    finally:
        manager.systemctl("disable", "--now", "consrv.service", check=False)
        manager.systemctl("stop", f"ioc@{name}.service", check=False)


# ---------------------------------------------------------------- docs/operations.md

OPERATIONS = REPO / "docs" / "operations.md"


def test_the_config_in_this_guide_passes_check_config(tmp_path: Path) -> None:
    """docs/operations.md step 7: its config file, and what check-config says of it."""
    guide = OPERATIONS.read_text()
    (block,) = re.findall(r"```yaml\n(# /etc/consrv/consrv\.yaml\n.*?)```", guide, re.DOTALL)
    (said,) = re.findall(r"^# /etc/consrv/consrv\.yaml: (ok .*)$", guide, re.MULTILINE)
    config = tmp_path / "consrv.yaml"
    config.write_text(block)
    program = Path(sys.executable).parent / "consrv"
    result = subprocess.run(
        [str(program), "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{config}: {said}\n"


def test_every_test_this_guide_names_exists() -> None:
    """Each step of docs/operations.md names its tests: they must exist under these names."""
    named = set(re.findall(r"`(test_\w+\.py)::(test_\w+)`", OPERATIONS.read_text()))
    assert len(named) > 30
    missing = []
    for file, test in sorted(named):
        (path,) = (REPO / "tests").rglob(file)
        if not re.search(rf"^(async )?def {test}\(", path.read_text(), re.MULTILINE):
            missing.append(f"{file}::{test}")
    assert missing == []
