"""Driving any SSH client through consrv the same three ways, and checking what came back.

The three things every client in the matrix does (tests/interop/test_*.py):
1. a command without a terminal: ``list``, exit status 0;
2. an interactive attach on a pty: type a line, see the child's answer, change
   the window size, type again, detach with ``^Ec.``, exit status 0;
3. an observer session: while an asyncssh writer types a line, the client as
   ``observer@`` runs ``tail`` and sees it, exit status 0.
Programs (OpenSSH, PuTTY's plink, Dropbear's dbclient) run as real processes on
a real pty; library clients (asyncssh, Paramiko) have their own modules.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import termios
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import trio
import trio_asyncio

from tests.interop.conftest import CONSOLE, Interop, got
from tests.sshclients import PtySSH, scripted_ssh
from tests.waits import deadline

DETACH = b"\x05c."  # ^Ec.


@contextmanager
def within(seconds: float, what: str) -> Iterator[None]:
    """A bounded wait that names what it waited for (`tests.waits.deadline`)."""
    with deadline(seconds, what):
        yield


class PtyClient(PtySSH):
    """Any SSH client program on a pty of 80x24, with its own environment."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        super().__init__(list(argv))
        self.env = dict(env) if env is not None else None

    async def start(self) -> PtyClient:
        master, slave = pty.openpty()
        _set_window(slave, 80, 24)
        try:
            self.process = await trio.lowlevel.open_process(
                self.argv, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, env=self.env,
            )  # fmt: skip
        finally:
            os.close(slave)
        self._stream = trio.lowlevel.FdStream(master)
        return self

    def resize(self, columns: int, rows: int) -> None:
        """Change the terminal's size as a terminal emulator does: new size, then SIGWINCH.

        The client is a session leader without a controlling terminal (so the kernel
        does not signal it), hence the explicit signal."""
        assert self._stream is not None
        assert self.process is not None
        _set_window(self._stream.fileno(), columns, rows)
        self.process.send_signal(signal.SIGWINCH)


def _set_window(fd: int, columns: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


async def run(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 20
) -> tuple[int, str, str]:
    """Run a client without a terminal (stdin empty): exit status, stdout, stderr."""
    with within(timeout, f"{' '.join(argv)} to exit"):
        result = await trio.run_process(
            list(argv), stdin=b"", capture_stdout=True, capture_stderr=True, check=False,
            env=env,
        )  # fmt: skip
    return (
        result.returncode,
        result.stdout.decode(errors="replace"),
        result.stderr.decode(errors="replace"),
    )


async def check_list(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """``list`` through the client: status 0, the console in the table."""
    status, out, err = await run(argv, env)
    assert status == 0, f"{argv[0]} list: status {status}, stdout {out!r}, stderr {err!r}"
    assert CONSOLE in out, out


async def check_attach(client: PtyClient, marker: str) -> None:
    """Attach (the client is started with ``console@ NAME`` and a pty), type, resize,
    type again, detach; the client exits with status 0."""
    try:
        await client.start()
        await client.expect(rb"attached to cat-ioc: you write")
        await client.send(f"{marker}-before\r".encode())
        await client.expect(got(f"{marker}-before"))
        client.resize(132, 43)
        await client.send(f"{marker}-after\r".encode())
        await client.expect(got(f"{marker}-after"))
        await client.send(DETACH)
        await client.expect(rb"detached from cat-ioc")
        status = await client.wait()
        assert status == 0, f"{client.argv[0]} exited {status}: {bytes(client.output)!r}"
    finally:
        await client.aclose()


async def type_line(interop: Interop, line: str) -> None:
    """An asyncssh writer (alice) types ``line`` on the console, sees it answered, detaches."""
    key = interop.keys["alice"].private
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(interop.port, key, "console", CONSOLE, pty=True) as writer,
    ):
        await writer.expect(rb"you write", stderr=True)
        writer.send(f"{line}\r".encode())
        await writer.expect(got(line))
        writer.send(DETACH)
        assert await writer.wait_closed() == 0


async def check_observer_tail(
    interop: Interop, argv: Sequence[str], marker: str, env: Mapping[str, str] | None = None
) -> None:
    """``argv`` is the client running ``observer@ tail cat-ioc``: after a writer typed
    ``marker``, the observer's tail shows the child's answer; status 0."""
    await type_line(interop, marker)
    status, out, err = await run(argv, env)
    assert status == 0, f"{argv[0]} tail: status {status}, stdout {out!r}, stderr {err!r}"
    assert f"got:{marker}" in out, out
