"""Real SSH clients for integration tests: OpenSSH through a pty, asyncssh scripted.

Both are driven from trio. OpenSSH runs as a real process on a real pty (so
``ssh -tt`` behaves as in a terminal); asyncssh runs in trio-asyncio's loop.
"""

from __future__ import annotations

import os
import pty
import re
import signal
from pathlib import Path

import trio

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
        with trio.fail_after(timeout):
            while (match := regex.search(self.output)) is None:
                if not await self._read_more():
                    raise EOFError(f"ssh ended before {pattern!r}; got {bytes(self.output)!r}")
            return match

    async def send(self, data: bytes) -> None:
        assert self._stream is not None
        await self._stream.send_all(data)

    async def wait(self, timeout: float = 10) -> int:
        """Read to the end; the ssh exit status."""
        assert self.process is not None
        with trio.fail_after(timeout):
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
