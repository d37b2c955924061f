"""An upgrade with no gap: the next consrv process, started beside this one (SIGUSR2).

Owns starting the successor and the socket pair between the two processes. A restart
through systemd (handover.py) leaves the consoles unread while the new process starts
(Python and consrv's imports: about a CPU-second); here the successor starts while this
process still serves, and the consoles change hands only once it is ready:

1. SIGUSR2: this process starts the installed ``consrv`` again with its own arguments and
   one end of a ``SOCK_SEQPACKET`` pair (``CONSRV_HANDOVER_FD``).
2. The successor imports, loads and checks the config, then says ``ready`` and waits.
   If it fails instead (a broken upgrade, a bad config), this process says why and
   keeps serving.
3. This process makes it systemd's main process (``MAINPID=``), stops accepting (the
   listening sockets stay open), tells its users, stops reading each console at a chunk
   boundary and sends the descriptors and the state (the same as for systemd's store),
   then exits. The successor goes on from the next byte.

Must not know: consoles, SSH (what is sent is handover.py's business).
"""

from __future__ import annotations

import array
import logging
import os
import socket
import sys
from pathlib import Path

import trio

__all__ = ["ENV", "Successor", "from_predecessor"]

logger = logging.getLogger(__name__)

ENV = "CONSRV_HANDOVER_FD"
READY = b"ready"
# How long the successor may take to import and load its config before we give up on it.
START_TIMEOUT = 60.0
# How long a successor that closed the pair may take to be reaped.
EXIT_GRACE = 5.0
# How long the successor waits for the descriptors once it said it is ready.
RECEIVE_TIMEOUT = 30.0
MAX_FDS = 250  # per message (the kernel's limit is 253)


def argv() -> list[str]:
    """The command line that started this process, for the successor (the installed
    ``consrv`` program, so an upgraded package's code runs)."""
    program = Path(sys.argv[0])
    if program.name == "consrv" and os.access(program, os.X_OK):
        return [str(program), *sys.argv[1:]]
    return [sys.executable, "-m", "consrv", *sys.argv[1:]]


class Successor:
    """The old process's side: the successor's process and our end of the pair."""

    def __init__(self, process: trio.Process, sock: socket.socket) -> None:
        self.process, self.sock = process, sock

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(cls) -> Successor | None:
        """Start the successor and wait until it is ready; None (logged) if it fails."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = argv()
        # WATCHDOG_PID names us: without it the successor pings systemd's watchdog itself
        # (it becomes the unit's main process).
        env = {key: value for key, value in os.environ.items() if key != "WATCHDOG_PID"}
        env[ENV] = str(theirs.fileno())
        try:
            process = await trio.lowlevel.open_process(command, pass_fds=[theirs.fileno()], env=env)
        except OSError as exc:
            logger.error("upgrade: cannot start %s: %s; still serving", command[0], exc)
            ours.close()
            return None
        finally:
            theirs.close()
        logger.info("upgrade: started pid %d (%s); waiting until it is ready", process.pid, command)
        tsock = trio.socket.from_stdlib_socket(ours)
        answer: bytes | None = None  # None: no answer in time; b"": the pair closed
        with trio.move_on_after(START_TIMEOUT):
            answer = await tsock.recv(64)
        if answer == READY:
            sock = socket.socket(fileno=tsock.detach())
            sock.settimeout(RECEIVE_TIMEOUT)
            return cls(process, sock)
        status = process.poll()
        if status is None and answer == b"":
            # The pair closed (the successor ended) before its exit was reaped: wait
            # for it a little, so the log says how it ended and not the timeout.
            with trio.move_on_after(EXIT_GRACE):
                status = await process.wait()
        if status is None:
            process.kill()
        logger.error(
            "upgrade: the new process (pid %d) did not get ready (%s); still serving",
            process.pid,
            f"exit status {status}" if status is not None else f"{START_TIMEOUT:g} s",
        )
        tsock.close()
        return None

    def send_fds(self, name: str, fds: list[int]) -> bool:
        try:
            for i in range(0, len(fds), MAX_FDS):
                rights = array.array("i", fds[i : i + MAX_FDS]).tobytes()
                self.sock.sendmsg([name.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
        except OSError as exc:
            logger.error("upgrade: sending %s to the new process failed: %s", name, exc)
            return False
        return True

    def confirm(self) -> bool:
        """Close our end: the successor reads to the end of what we sent (it holds dups)."""
        self.sock.close()
        return True

    def __str__(self) -> str:
        return f"the new process (pid {self.process.pid})"


def from_predecessor() -> dict[str, list[int]] | None:
    """In a successor (``CONSRV_HANDOVER_FD`` set): say ``ready``, then take what the old
    process sends, by name. None when not started as a successor."""
    value = os.environ.pop(ENV, None)
    if value is None:
        return None
    received: dict[str, list[int]] = {}
    with socket.socket(fileno=int(value)) as sock:
        sock.settimeout(RECEIVE_TIMEOUT)
        try:
            sock.sendall(READY)
            while True:
                fds = array.array("i")
                message, ancillary, _, _ = sock.recvmsg(
                    256, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
                )
                for level, kind, payload in ancillary:
                    if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                        fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                if not message and not fds:
                    break
                received.setdefault(message.decode(errors="replace"), []).extend(fds)
        except OSError as exc:
            logger.warning("upgrade: the old process did not hand over (%s): starting afresh", exc)
    return received
