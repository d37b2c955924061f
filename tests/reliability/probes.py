"""What the reliability tests look at from outside: processes, replies, recorded input.

Owns small read-only probes (a process's RSS and open descriptors from /proc, the
files under a directory, one SSH command's reply, OpenSSH command lines) and the
child commands the tests put under procServ. Must not know consrv's internals:
everything here is what an operator could see with ``ps``, ``ls``, ``ssh`` or ``curl``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.sshclients import SSH_OPTIONS, scripted_ssh
from tests.waits import deadline

# procServ's children. The recorder writes every byte procServ hands it to a file
# (raw mode, no echo: nothing is translated and nothing comes back).
CAT = ["/bin/cat"]


def recorder(out: Path) -> list[str]:
    """A child that records its input, byte for byte, in ``out``."""
    return ["/bin/sh", "-c", 'stty raw -echo; exec cat > "$1"', "recorder", str(out)]


def booting(tag: str) -> list[str]:
    """A child that says it booted (``BOOT <tag> <pid>``) at once, then echoes its input."""
    return ["/bin/sh", "-c", f'echo "BOOT {tag} $$"; exec cat']


def status_field(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    assert match is not None, f"no {field} in /proc/{pid}/status"
    return int(match.group(1))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def files_under(root: Path) -> set[Path]:
    """Every path below ``root`` (files, sockets, directories)."""
    return set(root.rglob("*"))


@dataclass(frozen=True)
class Reply:
    """What one non-interactive SSH command gave back."""

    status: int | None
    stdout: bytes
    stderr: bytes


async def run_command(
    port: int, key: Path, login: str, command: str, *, timeout: float = 15
) -> Reply:
    """``ssh LOGIN@host COMMAND`` with asyncssh (needs trio_asyncio.open_loop() around it)."""
    with deadline(timeout, f"ssh {login}@127.0.0.1:{port} {command!r} to connect, run and close"):
        async with scripted_ssh(port, key, login, command) as ssh:
            ssh.chan.write_eof()
            status = await ssh.wait_closed(timeout)
            return Reply(status, bytes(ssh.stdout), bytes(ssh.stderr))


def openssh(
    port: int, key: Path, login: str, *options: str, command: tuple[str, ...] = (),
    log_level: str = "ERROR",
) -> list[str]:  # fmt: skip
    """An OpenSSH command line without a tty: ``options`` before the host, then ``command``."""
    base = list(SSH_OPTIONS)
    base[base.index("LogLevel=ERROR")] = f"LogLevel={log_level}"
    return ["ssh", "-T", "-p", str(port), "-i", str(key), *base, *options, f"{login}@127.0.0.1",
            *command]  # fmt: skip


def run_openssh(
    argv: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    """Run an OpenSSH command (ssh, sftp, scp) to its end, no input, output captured."""
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        check=False, env=env,
    )  # fmt: skip
