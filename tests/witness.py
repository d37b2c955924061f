"""A direct client of procServ: what it sees is what the IOC really got and said.

Tests check what reached an IOC through a witness, not through consrv. A witness
sees only what is said after it connects: wait for a console to be ready with
``ProcServ.wait_ioc`` (a question and its answer), never for a one-time boot line.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from types import TracebackType

import trio

from tests.waits import deadline


class Witness:
    """A plain connection to procServ's socket; a context manager that closes it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(path))
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.path = path
        self.seen = bytearray()

    def read(self) -> bytes:
        """Everything seen so far (what is waiting on the socket is read first)."""
        try:
            while data := self.sock.recv(65536):
                self.seen += data
        except BlockingIOError:
            pass
        return bytes(self.seen)

    async def expect(self, pattern: bytes, timeout: float = 10) -> re.Match[bytes]:
        """Wait until ``pattern`` (a regex) is in what procServ sent."""
        regex = re.compile(pattern)
        with deadline(timeout, f"{pattern!r} from procServ at {self.path}", self.read):
            while (match := regex.search(self.read())) is None:
                await trio.sleep(0.02)
        return match

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Witness:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
