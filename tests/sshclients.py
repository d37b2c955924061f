"""Real SSH clients for integration tests: OpenSSH through a pty, asyncssh scripted.

Both are driven from trio. OpenSSH runs as a real process on a real pty (so
``ssh -tt`` behaves as in a terminal); asyncssh runs in trio-asyncio's loop.
"""

from __future__ import annotations

import os
import pty
import re
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncssh
import trio
import trio_asyncio

from tests.waits import deadline

SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=5",
)  # fmt: skip


def ssh_argv(port: int, key: Path, login: str, *command: str, tty: bool = True) -> list[str]:
    """The ``ssh`` command line a user would type, made non-interactive for tests."""
    flags = ["-tt"] if tty else ["-T"]
    return ["ssh", *flags, "-p", str(port), "-i", str(key), *SSH_OPTIONS, f"{login}@127.0.0.1",
            *command]  # fmt: skip


class PtySSH:
    """The OpenSSH client on a pseudo-terminal, as a person would run it."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.output = bytearray()
        self.process: trio.Process | None = None
        self._master = -1
        self._stream: trio.lowlevel.FdStream | None = None

    async def start(self) -> PtySSH:
        master, slave = pty.openpty()
        try:
            self.process = await trio.lowlevel.open_process(
                self.argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        finally:
            os.close(slave)
        self._stream = trio.lowlevel.FdStream(master)
        return self

    async def _read_more(self) -> bool:
        assert self._stream is not None
        try:
            data = await self._stream.receive_some(65536)
        except (OSError, trio.BrokenResourceError):  # EIO once the process is gone
            return False
        self.output += data
        return bool(data)

    async def expect(self, pattern: bytes, timeout: float = 10) -> re.Match[bytes]:
        """Wait until ``pattern`` (a regex) appears in the output so far."""
        regex = re.compile(pattern)
        with deadline(timeout, f"{pattern!r} from {self._who()}", lambda: self.output):
            while (match := regex.search(self.output)) is None:
                if not await self._read_more():
                    raise EOFError(f"ssh ended before {pattern!r}; got {bytes(self.output)!r}")
            return match

    def _who(self) -> str:
        """``ssh LOGIN@HOST COMMAND``, as a failed wait names this client."""
        at = next((i for i, word in enumerate(self.argv) if "@" in word), 0)
        return " ".join(["ssh", *self.argv[at:]])

    async def send(self, data: bytes) -> None:
        assert self._stream is not None
        await self._stream.send_all(data)

    async def wait(self, timeout: float = 10) -> int:
        """Read to the end; the ssh exit status."""
        assert self.process is not None
        with deadline(timeout, f"{self._who()} to exit", lambda: self.output):
            while await self._read_more():
                pass
            return await self.process.wait()

    async def aclose(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(5):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        if self._stream is not None:
            await self._stream.aclose()


class _Collector(asyncssh.SSHClientSession[bytes]):
    """Keeps everything the server sends; runs in trio-asyncio's loop (the trio thread)."""

    def __init__(self) -> None:
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.exit_status: int | None = None
        self.closed = trio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self.stderr if datatype == asyncssh.EXTENDED_DATA_STDERR else self.stdout).extend(data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


class ScriptedSSH:
    """A scripted SSH client (asyncssh), as a program driving consrv would be."""

    def __init__(self, conn: asyncssh.SSHClientConnection, chan: asyncssh.SSHClientChannel[bytes],
                 collector: _Collector, who: str = "asyncssh") -> None:  # fmt: skip
        self.conn, self.chan, self.collector = conn, chan, collector
        self.who = who  # "asyncssh LOGIN COMMAND": named in a failed wait

    @property
    def stdout(self) -> bytearray:
        return self.collector.stdout

    @property
    def stderr(self) -> bytearray:
        return self.collector.stderr

    def send(self, data: bytes) -> None:
        self.chan.write(data)

    def _seen(self) -> str:
        return f"stdout {bytes(self.stdout[-400:])!r}, stderr {bytes(self.stderr[-200:])!r}"

    async def expect(self, pattern: bytes, timeout: float = 10, stderr: bool = False) -> None:
        regex = re.compile(pattern)
        buffer = self.stderr if stderr else self.stdout
        where = f"{'stderr' if stderr else 'stdout'} of {self.who}"
        with deadline(timeout, f"{pattern!r} on {where}", lambda: buffer):
            while not regex.search(buffer):
                if self.collector.closed.is_set():
                    raise EOFError(f"channel closed before {pattern!r}; got {bytes(buffer)!r}")
                await trio.sleep(0.01)

    async def wait_closed(self, timeout: float = 10) -> int | None:
        with deadline(timeout, f"the server to close {self.who}", self._seen):
            await self.collector.closed.wait()
        return self.collector.exit_status


@asynccontextmanager
async def scripted_ssh(
    port: int, key: Path, login: str, command: str, *, pty: bool = False
) -> AsyncIterator[ScriptedSSH]:
    """Connect with asyncssh and open one session; needs trio_asyncio.open_loop() around it."""
    conn = await trio_asyncio.aio_as_trio(asyncssh.connect)(
        "127.0.0.1", port, username=login, client_keys=[str(key)], known_hosts=None,
        agent_path=None, connect_timeout=5,
    )  # fmt: skip
    try:
        chan, collector = await trio_asyncio.aio_as_trio(conn.create_session)(
            _Collector, command, encoding=None,
            term_type="xterm" if pty else None, term_size=(80, 24) if pty else None,
        )  # fmt: skip
        yield ScriptedSSH(conn, chan, collector, f"asyncssh {login} {command}")
    finally:
        conn.close()
        await trio_asyncio.aio_as_trio(conn.wait_closed)()
