"""IOC units for real: a systemd user manager, ioc@.service, procServ and an EPICS soft IOC.

consrv.ioc drives ``systemctl --user`` against a private manager (tests/systemd_user.py);
what it reports is checked against procServ's socket, info file and log, and against
the manager itself. The last test runs consrv's own stack inside consrv.service's
sandbox.

Policy: every wait is bounded and says what it awaited (``tests.waits.deadline``); no
wait is for a one-time line a client may have missed; each test leaves no ioc@ unit
running; the manager and everything under it is stopped at the end of the module.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import trio

from consrv.ioc import IocManager, Systemctl, SystemctlError, UnitHealth
from consrv.names import InvalidName
from tests.systemd_user import CONSRV_UNIT, REPO, SystemdUser, softioc_cmd
from tests.waits import deadline

pytestmark = pytest.mark.integration

TELNET_OFFER = b"\xff\xfb\x01"
BOOTED = b"iocRun: All initialization complete"


@pytest.fixture
def systemd(manager: SystemdUser) -> Iterator[SystemdUser]:
    """The module's manager, with no ioc@ unit left running after the test."""
    try:
        yield manager
    finally:
        manager.stop_iocs()


def iocs(systemd: SystemdUser, *names: str) -> IocManager:
    """An IocManager on the test manager, with an env file (a soft IOC) for each name."""
    for name in names:
        systemd.write_ioc_env(name, REPO, softioc_cmd(name))
    return IocManager(Systemctl("user", env=systemd.env), "ioc@{name}.service")


async def wait_for_path(path: Path, timeout: float = 10) -> None:
    with deadline(timeout, f"{path} to exist"):
        while not await trio.Path(path).exists():
            await trio.sleep(0.02)


async def wait_for_text(path: Path, text: bytes, timeout: float = 10) -> None:
    """Wait until ``path`` holds ``text`` (procServ writes its log after its clients)."""

    def tail() -> bytes:
        return path.read_bytes() if path.exists() else b"(no file)"

    with deadline(timeout, f"{text!r} in {path}", tail):
        while not (await trio.Path(path).exists() and text in await trio.Path(path).read_bytes()):
            await trio.sleep(0.02)


def process_name(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


class ConsoleClient:
    """A plain client of procServ's socket (what consrv's upstream sees)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.seen = bytearray()

    @classmethod
    async def connect(cls, path: Path, timeout: float = 10) -> ConsoleClient:
        """Connect as soon as procServ listens (its socket exists a moment before)."""
        with deadline(timeout, f"procServ to accept a connection at {path}"):
            while True:
                try:
                    return cls(await trio.open_unix_socket(str(path)))
                except (FileNotFoundError, ConnectionRefusedError):
                    await trio.sleep(0.02)

    async def expect(self, needle: bytes, timeout: float = 15) -> None:
        with deadline(timeout, f"{needle!r} from procServ", lambda: self.seen):
            while needle not in self.seen:
                await self._read_more(needle)

    async def _read_more(self, needle: bytes) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EOFError(f"EOF before {needle!r}; saw {bytes(self.seen[-500:])!r}")
        self.seen += data

    async def expect_eof(self, timeout: float = 10) -> None:
        with deadline(timeout, "procServ to close the connection (EOF)", lambda: self.seen):
            while data := await self.stream.receive_some(65536):
                self.seen += data

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def ask(self, question: bytes, answer: bytes, timeout: float = 20) -> None:
        """Type ``question`` every second until ``answer`` (a regex) comes back.

        An answer to a question asked now cannot be missed, as a boot line or a first
        prompt can (procServ drops input until its child runs; the shell reads it once
        booted). The echo of the question must not contain ``answer``.
        """
        regex = re.compile(answer)
        what = f"{answer!r} in answer to {question!r}, asked every second"
        with deadline(timeout, what, lambda: self.seen):
            while not regex.search(self.seen):
                await self.send(question)
                with trio.move_on_after(1.0):
                    while not regex.search(self.seen):
                        await self._read_more(answer)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def wait_health(
    manager: IocManager, name: str, running: bool, timeout: float = 10
) -> UnitHealth:
    health: UnitHealth | None = None
    what = f"ioc@{name} to be {'running' if running else 'not running'}"
    with deadline(timeout, what, lambda: health):
        while True:
            health = (await manager.show([name]))[name]
            if health.running == running:
                return health
            await trio.sleep(0.05)


# ---------------------------------------------------------------- start, show, connect


async def test_start_gives_a_procserv_console_with_the_booting_ioc(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    await manager.start("t1")
    client = await ConsoleClient.connect(systemd.socket_path("t1"))
    await client.expect(b'@@@ Child "t1" started as: ' + sys.executable.encode())  # banner
    await client.expect(TELNET_OFFER)
    # The boot line and the first prompt are said once (procServ starts the IOC ~0.5 s
    # after making the socket, a window a slow client can miss): ask the IOC instead.
    await client.ask(b"dbl\r", b"t1:temperature")
    await client.aclose()
    # procServ's --logfile has everything the IOC printed, boot included.
    await wait_for_text(systemd.ioc_log_path("t1"), BOOTED)


async def test_show_reports_the_running_procserv(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    before = time.time()
    await manager.start("t1")
    health = await wait_health(manager, "t1", running=True)
    assert (health.unit, health.load_state, health.sub_state) == (
        "ioc@t1.service",
        "loaded",
        "running",
    )
    assert health.main_pid is not None
    assert process_name(health.main_pid) == "procServ"
    assert health.n_restarts == 0
    assert health.started_at is not None
    assert before - 2 <= health.started_at <= time.time() + 1  # whole seconds
    await wait_for_path(systemd.info_path("t1"))
    info = systemd.info_path("t1").read_text().splitlines()
    assert f"pid:{health.main_pid}" in info
    assert f"unix:{systemd.socket_path('t1')}" in info


async def test_the_console_is_for_owner_and_group_only(systemd: SystemdUser) -> None:
    await iocs(systemd, "t1").start("t1")
    await wait_for_path(systemd.info_path("t1"))
    directory = systemd.socket_path("t1").parent
    # procServ makes its socket 0666 whatever the umask: the directory is the guard.
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE(systemd.info_path("t1").stat().st_mode) == 0o660  # UMask=0007


async def test_show_of_several_iocs_is_one_answer(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1", "t2")
    await manager.start("t1")
    health = await manager.show(["t1", "t2"])
    assert {name: h.active_state for name, h in health.items()} == {
        "t1": "active",
        "t2": "inactive",
    }
    assert health["t2"].main_pid is None


async def test_reload_makes_procserv_reopen_its_log(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "tlog")
    await manager.start("tlog")
    client = await ConsoleClient.connect(systemd.socket_path("tlog"))
    await client.ask(b"dbgf tlog:name\r", rb'DBF_STRING:\s+"tlog"')  # booted, reading its shell
    log = systemd.ioc_log_path("tlog")
    log.rename(log.with_suffix(".log.1"))  # what logrotate does
    systemd.systemctl("reload", "ioc@tlog.service")
    await client.send(b"dbl\r")
    await client.expect(b"tlog:counter")
    await client.aclose()
    await wait_for_text(log, b"tlog:counter")  # the new log file has it
    assert b"tlog:counter" not in log.with_suffix(".log.1").read_bytes()


# ---------------------------------------------------------------- restart, stop


async def test_restart_replaces_procserv_and_the_ioc_boots_again(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    await manager.start("t1")
    first = await wait_health(manager, "t1", running=True)
    client = await ConsoleClient.connect(systemd.socket_path("t1"))
    await client.expect(TELNET_OFFER)
    await manager.restart("t1")
    await client.expect_eof()  # procServ went away: its clients see EOF
    await client.aclose()
    second = await wait_health(manager, "t1", running=True)
    assert second.main_pid not in (None, first.main_pid)
    assert second.n_restarts == 0  # NRestarts counts automatic restarts only
    client = await ConsoleClient.connect(systemd.socket_path("t1"))
    await client.expect(f"procServ server PID: {second.main_pid}".encode())
    await client.aclose()


async def test_a_dead_procserv_is_restarted_by_systemd_and_counted(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    await manager.start("t1")
    first = await wait_health(manager, "t1", running=True)
    assert first.main_pid is not None
    os.kill(first.main_pid, 9)
    health = first
    what = "systemd to restart the killed ioc@t1 (NRestarts=1; Restart=always, RestartSec=2)"
    with deadline(10, what, lambda: health):
        while (health := (await manager.show(["t1"]))["t1"]).n_restarts != 1:
            await trio.sleep(0.1)
    health = await wait_health(manager, "t1", running=True)
    assert health.main_pid != first.main_pid


async def test_stop_ends_procserv_and_keeps_the_directory(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    await manager.start("t1")
    await wait_for_path(systemd.socket_path("t1"))
    await manager.stop("t1")
    health = (await manager.show(["t1"]))["t1"]
    assert (health.active_state, health.sub_state, health.main_pid) == ("inactive", "dead", None)
    assert not systemd.socket_path("t1").exists()  # procServ removes it on SIGTERM
    assert systemd.socket_path("t1").parent.is_dir()  # RuntimeDirectoryPreserve=yes


# ---------------------------------------------------------------- discovery, autostart, poll


async def test_instances_lists_loaded_ioc_units_only_while_loaded(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1", "t2")
    await manager.start("t1")
    await manager.start("t2")
    assert await manager.instances() == {"t1", "t2"}
    await manager.stop("t2")
    # A stopped instance is unloaded by the manager: discovery sees running ones.
    found: set[str] = set()
    with deadline(5, "instances() to be {'t1'} once ioc@t2 is stopped", lambda: found):
        while (found := await manager.instances()) != {"t1"}:
            await trio.sleep(0.05)


async def test_autostart_starts_what_is_down_once(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1", "t2")
    await manager.start("t1")
    assert await manager.autostart(["t1", "t2"]) == ["t2"]
    assert await manager.autostart(["t1", "t2"]) == []
    assert (await wait_health(manager, "t2", running=True)).running


async def test_poll_forever_fills_health(systemd: SystemdUser) -> None:
    manager = iocs(systemd, "t1")
    manager.poll_interval = 0.05
    await manager.start("t1")
    async with trio.open_nursery() as nursery:
        with deadline(10, "the first health poll of ioc@t1"):
            await nursery.start(manager.poll_forever, lambda: ["t1"])
        assert manager.health["t1"].active_state in ("active", "activating")
        await manager.stop("t1")
        what = "the poller to see ioc@t1 inactive after a stop"
        with deadline(10, what, lambda: manager.health["t1"]):
            while manager.health["t1"].active_state != "inactive":
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------- refusals and failures


@pytest.mark.parametrize("name", ["../t1", "t1 t2", "-t1", "t1;reboot", "*", ""])
async def test_a_bad_name_instantiates_nothing(systemd: SystemdUser, name: str) -> None:
    manager = iocs(systemd)
    # units stopped by earlier tests are unloaded soon after
    with deadline(5, "no ioc@ unit loaded (those of earlier tests unloaded)", systemd.units):
        while systemd.units("ioc@*"):
            await trio.sleep(0.05)
    for action in (manager.start, manager.restart, manager.stop):
        with pytest.raises(InvalidName):
            await action(name)
    assert systemd.units("ioc@*") == []


async def test_an_ioc_without_env_file_fails_with_a_clear_message(systemd: SystemdUser) -> None:
    manager = iocs(systemd)
    with pytest.raises(SystemctlError) as caught:
        await manager.start("nosuch")
    assert str(caught.value) == (
        "systemctl start ioc@nosuch.service failed: Job for ioc@nosuch.service failed"
        " because of unavailable resources or another system error. (exit 1)"
    )


async def test_a_missing_template_fails_with_a_clear_message(systemd: SystemdUser) -> None:
    manager = IocManager(Systemctl("user", env=systemd.env), "nosuch@{name}.service")
    with pytest.raises(SystemctlError) as caught:
        await manager.start("t1")
    assert str(caught.value) == (
        "systemctl start nosuch@t1.service failed: Failed to start nosuch@t1.service:"
        " Unit nosuch@t1.service not found. (exit 5)"
    )


async def test_systemctl_without_a_manager_fails_with_a_clear_message(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "XDG_RUNTIME_DIR": str(tmp_path)}
    manager = IocManager(Systemctl("user", env=env), "ioc@{name}.service")
    with pytest.raises(SystemctlError, match=r"failed: Failed to connect to bus: .* \(exit 1\)$"):
        await manager.show(["t1"])


# ---------------------------------------------------------------- consrv.service's sandbox

SANDBOX_SKIP = {  # [Service] settings that are not sandboxing, or that need a system manager
    "Type", "NotifyAccess", "ExecStartPre", "ExecStart", "ExecReload", "Restart",
    "RestartSec", "TimeoutStopSec", "WatchdogSec", "FileDescriptorStoreMax",
    "User", "Group", "SupplementaryGroups",  # no consrv user or ioc group on test hosts
}  # fmt: skip


def sandbox_properties(systemd: SystemdUser) -> list[str]:
    """consrv.service's sandbox as ``systemd-run -p`` settings, adapted to the test host.

    - ProtectHome=tmpfs instead of yes, plus read-only binds of this Python's prefix,
      the venv and the checkout: they may live under /root (pyenv) or /tmp (a CI
      checkout); an installed consrv does not.
    - A read-only bind of the manager's base directory: these hosts have /run on the
      root file system, not a tmpfs mount, and a sandbox gets an empty /run then (a
      real host's /run is always a mount and stays visible, read-only).
    """
    properties = []
    section = ""
    for line in CONSRV_UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            properties.append(line.replace("ProtectHome=yes", "ProtectHome=tmpfs"))
    properties = [p for p in properties if p.split("=", 1)[0] not in SANDBOX_SKIP]
    # The interpreter, the venv and the checkout: any of them may live under /tmp (a CI
    # checkout), which PrivateTmp= hides, or under /root, which ProtectHome= hides.
    prefix = Path(sys.executable).resolve().parents[1]
    paths = dict.fromkeys(str(p) for p in (prefix, Path(sys.prefix), REPO, systemd.base))
    properties.append(f"BindReadOnlyPaths={' '.join(paths)}")
    return properties


def probe_main(argv: list[str]) -> int:
    """Inside the sandbox: what consrv does, as JSON on stdout (``argv``: socket, IOC name)."""
    console, name = argv
    result = {
        "ssh": asyncio.run(_ssh_round_trip()),
        "console": _banner(console),
        "systemctl": trio.run(_show_and_restart, name),
        "state": _try_write(Path(os.environ["STATE_DIRECTORY"]) / "x"),
        "logs": _try_write(Path(os.environ["LOGS_DIRECTORY"]) / "x"),
        "elsewhere": _try_write(REPO / ".sandbox-probe"),
    }
    print(json.dumps(result))
    return 0


async def _ssh_round_trip() -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")

    def answer(process: asyncssh.SSHServerProcess[str]) -> None:
        process.stdout.write("pong\n")
        process.exit(0)

    class NoAuth(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return False

    server = await asyncssh.create_server(
        NoAuth, "127.0.0.1", 0, server_host_keys=[key], process_factory=answer
    )
    port = server.sockets[0].getsockname()[1]
    async with asyncssh.connect("127.0.0.1", port, known_hosts=None, username="u") as conn:
        result = await conn.run("ping")
    server.close()
    return str(result.stdout).strip()


def _banner(path: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(path)
        data = b""
        while TELNET_OFFER not in data and (chunk := sock.recv(4096)):
            data += chunk
    return data.split(b"\r\n")[0].decode()


async def _show_and_restart(name: str) -> list[object]:
    manager = IocManager(Systemctl("user"), "ioc@{name}.service")
    before = (await manager.show([name]))[name]
    await manager.restart(name)
    after = (await manager.show([name]))[name]
    return [before.active_state, after.main_pid != before.main_pid]


def _try_write(path: Path) -> str:
    try:
        path.write_text("x")
    except OSError as exc:
        return str(exc.strerror)
    return "ok"


async def test_consrv_works_inside_its_sandbox(systemd: SystemdUser) -> None:
    """SSH (crypto under MemoryDenyWriteExecute and the syscall filter), procServ's socket
    on a read-only /run, systemctl through the manager's socket, writable state and log
    directories and a read-only everything else, all under consrv.service's settings."""
    await iocs(systemd, "t1").start("t1")
    await wait_for_path(systemd.info_path("t1"))
    argv = ["systemd-run", "--user", "--wait", "--pipe", "--quiet"]
    for setting in sandbox_properties(systemd):
        argv += ["-p", setting]
    argv += ["-p", "StateDirectory=consrv", "-p", "LogsDirectory=consrv"]
    argv += ["-p", f"WorkingDirectory={REPO}", "-E", f"XDG_RUNTIME_DIR={systemd.runtime_dir}"]
    code = (
        "import sys; from tests.integration.test_systemd import probe_main;"
        " sys.exit(probe_main(sys.argv[1:]))"
    )
    argv += [sys.executable, "-c", code, str(systemd.socket_path("t1")), "t1"]
    with deadline(60, "the sandbox probe under systemd-run --wait to finish"):
        result = await trio.run_process(
            argv, env=systemd.env, capture_stdout=True, capture_stderr=True, check=False
        )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert json.loads(result.stdout) == {
        "ssh": "pong",
        "console": "@@@ Welcome to procServ (procServ Process Server 2.7.0)",
        "systemctl": ["active", True],
        "state": "ok",
        "logs": "ok",
        "elsewhere": "Read-only file system",
    }
    assert "MemoryDenyWriteExecute=yes" in sandbox_properties(systemd)
    assert not (REPO / ".sandbox-probe").exists()
