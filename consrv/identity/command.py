"""Running ``ssh.authorized_keys_command`` as sshd runs its AuthorizedKeysCommand.

Owns: expanding the tokens into an argument vector, and one run of it: as
``authorized_keys_command_user`` (setuid through subprocess), without a shell, with
a clean environment, stdin from /dev/null, in its own process group (killed
whole when cancelled), its output read up to a limit. The caller's deadline
(a cancel scope) bounds the run. Must not know: caching, SSH connections.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import re
import signal
import stat
import subprocess
from pathlib import Path

import trio

from consrv.identity.cache import SourceError

logger = logging.getLogger(__name__)

OUTPUT_LIMIT = 256 << 10  # bytes of output read; more is an error
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_TOKEN_RE = re.compile(r"%(.)")


@dataclasses.dataclass(frozen=True)
class KeyFacts:
    """What sshd's tokens can say about the key being checked (%f %t %k)."""

    fingerprint: str = ""  # SHA256:...
    algorithm: str = ""  # ssh-ed25519, ssh-ed25519-cert-v01@openssh.com, ...
    blob: bytes = b""  # the key or certificate as offered


@dataclasses.dataclass(frozen=True)
class Account:
    """The user's NSS entry, for %U and %h (empty without NSS)."""

    uid: str = ""
    home: str = ""


def expand(argv: tuple[str, ...], user: str, key: KeyFacts, account: Account) -> tuple[str, ...]:
    """``argv`` with sshd's tokens replaced (config.identity checked that they are known)."""
    values = {
        "u": user,
        "U": account.uid,
        "h": account.home,
        "f": key.fingerprint,
        "t": key.algorithm,
        "k": base64.b64encode(key.blob).decode(),
        "%": "%",
    }
    return tuple(_TOKEN_RE.sub(lambda m: values[m[1]], arg) for arg in argv)


@dataclasses.dataclass(frozen=True)
class RunAs:
    """``authorized_keys_command_user``, looked up once (off the event loop)."""

    user: str
    gid: int


def program_problem(program: str) -> str | None:
    """Why the keys command's program is unsafe to run, judged as OpenSSH's ``safe_path()``
    judges an AuthorizedKeysCommand: an absolute path; its real path (symbolic links
    resolved) a regular, executable file; that file and every directory above it owned
    by root (or consrv's own user) and writable by neither group nor others. Whoever
    can change the program, or rename a directory above it, makes users. None: safe."""
    if not os.path.isabs(program):
        return f"{program} is not an absolute path"
    try:
        real = Path(os.path.realpath(program, strict=True))
        st = real.stat()
    except OSError as exc:
        return f"{program}: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"{real} is not a regular file"
    if not os.access(real, os.X_OK):
        return f"{real} is not executable"
    for part in (real, *real.parents):
        what = "file" if part == real else "directory"
        st = part.stat()
        if st.st_uid not in (0, os.geteuid()):
            return f"{what} {part} is owned by uid {st.st_uid}, not root or consrv's user"
        if st.st_mode & 0o022:
            mode = stat.S_IMODE(st.st_mode)
            return f"{what} {part} is writable by its group or others (mode {mode:04o})"
    return None


async def run_command(argv: tuple[str, ...], run_as: RunAs | None) -> str:
    """One run: its standard output as text. Raises SourceError if it fails or says too much.

    Cancelling (the caller's timeout) kills its whole process group at once.
    """
    async with trio.open_nursery() as nursery:
        try:
            proc: trio.Process = await nursery.start(_process, argv, run_as)
        except OSError as exc:
            raise SourceError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        assert proc.stdout is not None
        assert proc.stderr is not None
        out, err = bytearray(), bytearray()
        nursery.start_soon(_read, proc.stderr, err, 4096)
        too_much = await _read(proc.stdout, out, OUTPUT_LIMIT)
        if too_much:
            _kill(proc)
    if too_much:
        raise SourceError(f"{argv[0]} printed more than {OUTPUT_LIMIT} bytes")
    if proc.returncode != 0:
        said = err.decode("utf-8", "replace").strip().splitlines()
        detail = f": {said[0][:200]}" if said else ""
        raise SourceError(f"{argv[0]} exited with status {proc.returncode}{detail}")
    return out.decode("utf-8", "replace")


async def _process(
    argv: tuple[str, ...],
    run_as: RunAs | None,
    *,
    task_status: trio.TaskStatus[trio.Process] = trio.TASK_STATUS_IGNORED,
) -> None:
    await trio.run_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
        env=ENV,
        cwd="/",
        user=run_as.user if run_as else None,
        group=run_as.gid if run_as else None,
        extra_groups=[] if run_as is not None and os.geteuid() == 0 else None,
        start_new_session=True,
        deliver_cancel=_kill_group,
        task_status=task_status,
    )


async def _read(stream: trio.abc.ReceiveStream, into: bytearray, limit: int) -> bool:
    """Read ``stream`` to its end into ``into``; True (and stop) past ``limit`` bytes."""
    async for chunk in stream:
        into += chunk
        if len(into) > limit:
            return True
    return False


def _kill(proc: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone already
        os.killpg(proc.pid, signal.SIGKILL)


async def _kill_group(proc: trio.Process) -> None:
    """Cancelled (the timeout): the command and everything it started, at once."""
    _kill(proc)
