"""A direct client of procServ: what it sees is what the IOC really got and said.

Tests check what reached an IOC through a witness, not through consrv. A witness
sees only what is said after it connects: wait for a console to be ready with
``ProcServ.wait_ioc`` (a question and its answer), never for a one-time boot line.

A witness types through `Witness.send`, never through its raw socket: procServ 2.7
greets a client only when it gets round to accepting it, and if the client has
closed by then the greeting's write fails (procServ tells every client "@@@ Got a
sigPipe signal: Did the child close its tty?") and procServ drops the client before
reading what it sent. `send` waits for the greeting first. tests/test_witness.py
shows both and keeps raw sends out of the suite.
"""

from __future__ import annotations

import re
import select
import socket
import time
from pathlib import Path
from types import TracebackType

import trio

from consrv.demo import TELNET_OFFER
from tests.waits import WaitTimeout, deadline


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
        self._greeted = False

    def greeted(self) -> bool:
        """True once procServ has accepted this witness: its greeting (the banner, ended
        by the telnet offer) has arrived."""
        self._greeted = self._greeted or TELNET_OFFER in self.read()
        return self._greeted

    def wait_greeted(self, timeout: float = 10) -> None:
        """Block until `greeted` (normally at once: procServ greets within milliseconds).

        Sync, so sync tests and fixtures can use it; `WaitTimeout` naming the socket."""
        end = time.monotonic() + timeout
        while not self.greeted():
            left = end - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"gave up after {timeout:g} s waiting for procServ at {self.path} to greet"
                    f" a witness (accept it); seen: {self.read()[-300:]!r}"
                )
            select.select([self.sock], [], [], min(left, 0.1))
            time.sleep(0.005)  # not a spin if procServ closed on us (EOF stays readable)

    def send(self, data: bytes, timeout: float = 10) -> None:
        """Type ``data`` to the IOC as a procServ client; once procServ has greeted this
        witness, so that closing right after cannot make procServ drop what was sent."""
        self.wait_greeted(timeout)
        self.sock.sendall(data)

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
