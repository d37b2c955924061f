"""The soft IOC and the procServ launcher, with real parts: procServ 2.7, an EPICS IOC.

Policy: no mocks. A plain blocking socket talks to procServ's UNIX control socket,
every read has a deadline, every test stops what it started and checks that no
process is left (procServ's pid and each IOC pid it ever had).
"""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from consrv.config import load_config
from consrv.demo import ProcServ, ensure_client_key, make_demo_config, pid_alive

BOOTED = b"iocRun: All initialization complete"
PROMPT = b"epics> "
RECORDS = (b"temperature", b"counter", b"name")
BOOT_TIMEOUT = 20.0


class Console:
    """A blocking client of a procServ control socket that reads up to patterns."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(0.2)
        self.sock.connect(str(path))
        self.received = bytearray()
        self.pos = 0  # patterns are looked for after the previous match

    def expect(self, pattern: bytes, timeout: float = BOOT_TIMEOUT) -> bytes:
        """Read until ``pattern`` appears; return the bytes up to its end."""
        deadline = time.monotonic() + timeout
        while (found := self.received.find(pattern, self.pos)) < 0:
            if time.monotonic() > deadline:
                tail = bytes(self.received[-2000:]).decode(errors="replace")
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; got:\n{tail}")
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            assert chunk, f"procServ closed the connection while waiting for {pattern!r}"
            self.received += chunk
        start, self.pos = self.pos, found + len(pattern)
        return bytes(self.received[start : self.pos])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def assert_gone(pids: list[int], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if pid_alive(pid)] == []


@pytest.mark.integration
def test_soft_ioc_under_procserv_boots_answers_and_restarts_on_ctrl_x(tmp_path: Path) -> None:
    server = ProcServ("testioc", tmp_path)
    with server:
        assert server.socket == tmp_path / "procServ" / "testioc" / "control"
        console = Console(server.socket)
        try:
            banner = console.expect(b"\xff\xfb\x01")  # the banner ends at IAC WILL ECHO
            assert b"@@@ Welcome to procServ" in banner
            assert f"@@@ procServ server PID: {server.pid}".encode() in banner

            console.expect(BOOTED)
            console.expect(PROMPT)
            (first_ioc,) = server.child_pids()

            console.send(b"dbl\r")
            listing = console.expect(PROMPT, timeout=10)
            for record in RECORDS:
                assert b"testioc:" + record in listing

            console.send(b"\x18")  # ^X: procServ kills the IOC, restarts it after the holdoff
            console.expect(f"sigChild for process {first_ioc}".encode(), timeout=10)
            restarted = console.expect(BOOTED)
            assert b"@@@ Restarting child" in restarted
            match = re.search(rb'The PID of new child "testioc" is: (\d+)', restarted)
            assert match is not None
            second_ioc = int(match[1])
            console.expect(PROMPT)
            assert server.child_pids() == [second_ioc] != [first_ioc]
        finally:
            console.close()
    assert server.pid is not None
    assert_gone([server.pid, first_ioc, second_ioc])
    assert not server.socket.exists()  # procServ removes it on SIGTERM


@pytest.mark.integration
def test_kill_leaves_a_stale_socket_that_a_new_procserv_replaces(tmp_path: Path) -> None:
    # procServ is ready once its child runs, so the child keeps saying it is up.
    child = ["/bin/sh", "-c", "while :; do echo child-up; sleep 0.2; done"]
    crashed = ProcServ("crashy", tmp_path, child)
    with crashed:
        deadline = time.monotonic() + 10
        while not crashed.child_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        children = crashed.child_pids()
        assert len(children) == 1
        crashed.kill()
        assert crashed.pid is not None
        assert_gone([crashed.pid, *children])
        assert crashed.socket.is_socket()  # stale, as after a real crash
        assert crashed.info_file.exists()

    with ProcServ("crashy", tmp_path, child) as again:
        console = Console(again.socket)
        try:
            console.expect(b"child-up", timeout=10)
        finally:
            console.close()
        children = again.child_pids()
    assert again.pid is not None
    assert_gone([again.pid, *children])


@pytest.mark.integration
@pytest.mark.parametrize("ending", [b"exit\n", b""], ids=["exit", "eof"])
def test_softioc_shell_lists_records_and_exits_0(ending: bytes, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "consrv.softioc", "--prefix", "shell:"],
        input=b"dbl\ndbgf shell:name\n" + ending,
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert BOOTED in result.stderr
    for record in RECORDS:
        assert b"shell:" + record in result.stdout
    assert b'"shell"' in result.stdout  # the stringin holds the IOC's name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_softioc_loads_a_given_database(tmp_path: Path) -> None:
    db = tmp_path / "one.db"
    db.write_text('record(ao, "$(P)setpoint") {\n    field(VAL, "4.5")\n}\n')
    result = subprocess.run(
        [sys.executable, "-m", "consrv.softioc", "--db", str(db), "--prefix", "x:"],
        input=b"dbl\ndbgf x:setpoint\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"x:setpoint" in result.stdout
    assert b"4.5" in result.stdout


def test_demo_config_is_valid_for_consrv(tmp_path: Path) -> None:
    demo_key = ensure_client_key(tmp_path / "id_demo", "demo")
    watcher_key = ensure_client_key(tmp_path / "id_watcher", "watcher")
    assert ensure_client_key(tmp_path / "id_demo", "demo") == demo_key  # kept, not remade
    assert stat.S_IMODE((tmp_path / "id_demo").stat().st_mode) == 0o600
    assert (tmp_path / "id_demo").read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert demo_key.startswith("ssh-ed25519 AAAA")
    assert demo_key.endswith(" demo")

    names = ["demo-ioc1", "demo-ioc2"]
    path = make_demo_config(tmp_path, names, 2299, {"demo": [demo_key], "watcher": [watcher_key]})
    config = load_config(path)
    assert sorted(config.consoles) == names
    assert config.consoles["demo-ioc2"].socket == tmp_path / "procServ" / "demo-ioc2" / "control"
    assert [str(endpoint) for endpoint in config.ssh.listen] == ["127.0.0.1:2299"]
    assert config.ssh.host_key == tmp_path / "ssh_host_ed25519_key"
    assert config.log_dir == tmp_path / "logs"
    assert config.defaults.rw == ("demo",)
    assert config.defaults.ro == ("*",)
    assert sorted(config.users) == ["demo", "watcher"]
