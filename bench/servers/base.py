"""What every console server under test offers the bench, and helpers they share.

Owns: the `Server` protocol (start with a set of consoles, stop, the client
command lines for an interactive user, a read-only viewer and a login), the
OpenSSH client command line, free loopback ports, waiting for a log line.

Must not know: what is measured.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from bench.procs import Reaper

HOST = "127.0.0.1"
SSH_OPTIONS = (
    "-F", "/dev/null",  # no user or system client config
    "-e", "none",  # no escape character: every byte is the console's
    "-o", "BatchMode=yes",
    "-o", "IdentitiesOnly=yes",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "StrictHostKeyChecking=no",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "ControlMaster=no",
    "-o", "ControlPath=none",
)  # fmt: skip


class ServerProcess:
    """The part every server shares: one main process, a log, a port, stop with a grace."""

    stop_grace = 5.0  # seconds between SIGTERM and SIGKILL

    def __init__(self, workdir: Path, reaper: Reaper, log_name: str) -> None:
        self.workdir, self.reaper = workdir, reaper
        self.log = workdir / log_name
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    def stop(self) -> None:
        if self._proc is not None:
            self.reaper.stop([self._proc.pid], grace=self.stop_grace)
            self._proc.wait()
            self._proc = None


class PythonServer(ServerProcess):
    """A server that is a Python program on this venv (consrv, the floor), logged in
    with the bench's key, and that may run under a wrapper (valgrind, say)."""

    def __init__(
        self,
        workdir: Path,
        reaper: Reaper,
        log_name: str,
        key: Path,
        public_key: str,
        wrapper: Sequence[str] = (),
    ) -> None:
        super().__init__(workdir, reaper, log_name)
        self.key, self.public_key = key, public_key
        self.wrapper = list(wrapper)

    def start_bound(self) -> float:
        """Seconds to wait for it to listen: valgrind makes startup ~50 times slower."""
        return 600.0 if self.wrapper else 60.0


class ServerError(RuntimeError):
    """A server did not start; the message holds the end of its log."""


@dataclass(frozen=True)
class Ready:
    """What a viewer's client prints once it is attached, and on which stream."""

    pattern: bytes
    stream: Literal["stdout", "stderr"]


class Server(Protocol):
    """A console server as the bench drives it."""

    label: str
    viewer_ready: Ready
    holds_connections: bool  # False: connects to a console only while a user is on it
    connect_at_once: int  # how many clients may attach concurrently

    @property
    def pid(self) -> int:
        """The server's main process (its tree is what CPU and memory are counted over)."""

    def start(self, consoles: Mapping[str, Path]) -> None:
        """Start serving these consoles (name -> procServ socket); returns when it listens."""

    def stop(self) -> None:
        """Stop the server and every process it started."""

    def interactive_argv(self, console: str) -> list[str]:
        """A read-write user's client, to run on a pty."""

    def viewer_argv(self, console: str) -> list[str]:
        """A read-only viewer's client; the console's bytes come on its stdout."""

    def login_argv(self) -> list[str]:
        """One non-interactive login that does as little as the server allows."""

    def version(self) -> str:
        """The server's version, for the report."""


def program(name: str) -> str:
    """The absolute path of a program on PATH (ServerError if missing)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise ServerError(f"{name} not found (bench/run installs it)")
    return path


def ssh_argv(port: int, key: Path, login: str, command: str, *, tty: bool) -> list[str]:
    """The OpenSSH client command line: ``ssh -tt`` (a pty) or ``ssh -T``."""
    flags = ["-tt"] if tty else ["-T"]
    return [program("ssh"), *flags, *SSH_OPTIONS, "-p", str(port), "-i", str(key),
            f"{login}@{HOST}", command]  # fmt: skip


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_log(
    path: Path, pattern: bytes, proc: subprocess.Popen[bytes], timeout: float
) -> re.Match[bytes]:
    """Wait until ``pattern`` appears in the log file ``path``; ServerError if not."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and (match := regex.search(path.read_bytes())):
            return match
        time.sleep(0.05)
    raise ServerError(f"no {pattern!r} in {path}:\n{tail(path)}")


def wait_tcp(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until loopback ``port`` accepts; ServerError if the server exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"port {port} not listening; the end of {log}:\n{tail(log)}")


def command_output(argv: list[str], cwd: Path | None = None) -> str:
    """stdout and stderr of a short command (for versions)."""
    done = subprocess.run(argv, capture_output=True, check=False, timeout=10, cwd=cwd)  # noqa: S603
    return (done.stdout + done.stderr).decode(errors="replace").strip()
