"""Paramiko (a blocking Python client) through consrv.

Paramiko runs in a worker thread (``trio.to_thread``); every blocking call has a
timeout of its own (connect, banner, auth, channel reads), so no wait is unbounded.
Host key checking: ``RejectPolicy`` with consrv's key added to the client's keys.
"""

from __future__ import annotations

import base64
import re
import time

import paramiko
import pytest
import trio

from tests.interop.clients import DETACH, type_line
from tests.interop.conftest import CONSOLE, Interop, got

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


def connect(interop: Interop, login: str) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key_type, key_data = interop.host_key.read_text().split()[:2]
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
    client.get_host_keys().add(f"[127.0.0.1]:{interop.port}", key_type, host_key)
    client.connect(
        "127.0.0.1", interop.port, username=login, key_filename=str(interop.keys["alice"].private),
        look_for_keys=False, allow_agent=False, timeout=TIMEOUT, banner_timeout=TIMEOUT,
        auth_timeout=TIMEOUT, channel_timeout=TIMEOUT,
    )  # fmt: skip
    return client


class Session:
    """One channel; what it received (stdout and stderr together, as on a terminal)."""

    def __init__(self, client: paramiko.SSHClient, command: str, *, pty: bool) -> None:
        transport = client.get_transport()
        assert transport is not None
        self.chan = transport.open_session(timeout=TIMEOUT)
        self.chan.settimeout(0.2)
        self.chan.set_combine_stderr(True)
        if pty:
            self.chan.get_pty(term="xterm", width=80, height=24)
        self.chan.exec_command(command)
        self.output = bytearray()

    def expect(self, pattern: bytes) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not re.search(pattern, self.output):
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} from paramiko; got {bytes(self.output)!r}")
            self._read()

    def exit_status(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        while not self.chan.exit_status_ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"paramiko: no exit status; got {bytes(self.output)!r}")
            self._read()
        while self._read():
            pass
        return self.chan.recv_exit_status()

    def _read(self) -> bool:
        try:
            data = self.chan.recv(65536)
        except TimeoutError:
            return True
        self.output += data
        return bool(data)


def run_list(interop: Interop) -> tuple[int, bytes]:
    with connect(interop, "console") as client:
        session = Session(client, "list", pty=False)
        return session.exit_status(), bytes(session.output)


def attach(interop: Interop, marker: str) -> int:
    with connect(interop, "console") as client:
        session = Session(client, CONSOLE, pty=True)
        session.expect(rb"attached to cat-ioc: you write")
        session.chan.sendall(f"{marker}-before\r".encode())
        session.expect(got(f"{marker}-before"))
        session.chan.resize_pty(width=132, height=43)
        session.chan.sendall(f"{marker}-after\r".encode())
        session.expect(got(f"{marker}-after"))
        session.chan.sendall(DETACH)
        session.expect(rb"detached from cat-ioc")
        return session.exit_status()


def tail(interop: Interop) -> tuple[int, bytes]:
    with connect(interop, "observer") as client:
        session = Session(client, f"tail {CONSOLE} -n 50", pty=False)
        return session.exit_status(), bytes(session.output)


def test_paramiko_is_a_release() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", paramiko.__version__)


async def test_list(interop: Interop) -> None:
    status, output = await trio.to_thread.run_sync(run_list, interop)
    assert status == 0, output
    assert CONSOLE.encode() in output


async def test_attach_on_a_pty_with_a_window_change(interop: Interop) -> None:
    assert await trio.to_thread.run_sync(attach, interop, "paramiko") == 0


async def test_observer_tail(interop: Interop) -> None:
    await type_line(interop, "paramiko-observed")
    status, output = await trio.to_thread.run_sync(tail, interop)
    assert status == 0, output
    assert b"got:paramiko-observed" in output
