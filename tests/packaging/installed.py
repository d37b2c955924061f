"""The installed package, driven as root: apt-get, and consrv run as its unit says.

No systemd runs as PID 1 where the tests run, so `UnitProcess` does what systemd
would for ``consrv.service``: it reads the installed unit file and runs its
``ExecStartPre=`` then ``ExecStart=`` with the unit's ``User=``, ``Group=``,
``SupplementaryGroups=``, ``UMask=`` and ``NoNewPrivileges=`` (through util-linux's
``setpriv``), with a real ``NOTIFY_SOCKET`` (the unit is ``Type=notify``). The
sandboxing options (``ProtectSystem=`` ...) are not applied: they need PID 1.
"""

from __future__ import annotations

import contextlib
import grp
import os
import re
import shlex
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from consrv.demo import ProcServ
from tests.sshclients import PtySSH
from tests.waits import wait_until

REPO = Path(__file__).resolve().parent.parent.parent
APT_ENV = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
# apt-get waits this long for another apt-get on the machine instead of failing at once.
APT_LOCK_TIMEOUT = 300
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(argv: list[str], timeout: float = 600, **kwargs: object) -> str:
    """Run ``argv``; its output, or AssertionError with the command and all it printed."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL, check=False, **kwargs)  # type: ignore[call-overload]  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(
            f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return str(result.stdout) + str(result.stderr)


def apt_get(*args: str) -> str:
    """``apt-get -y ARGS`` as a facility would run it (no recommends: no downloads here)."""
    return run(["apt-get", "-y", "-q", "--no-install-recommends",
                "-o", f"DPkg::Lock::Timeout={APT_LOCK_TIMEOUT}", *args], env=APT_ENV)  # fmt: skip


def package_status(name: str = "consrv") -> str:
    """dpkg's status of ``name`` ("install ok installed", "deinstall ok config-files"), or ""."""
    result = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", name],
                            capture_output=True, text=True, check=False)  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


PACKAGES = ("consrv-pva", "consrv")  # consrv-pva first: it depends on consrv


def build_packages(outdir: Path, release: int, keep_stage: bool = False) -> dict[str, Path]:
    """``packaging/build.sh`` into ``outdir``: what it made, by name (``consrv.deb``,
    ``consrv.rpm``, ``consrv-pva.deb``, ``consrv-pva.rpm``)."""
    run([str(REPO / "packaging" / "build.sh"), "-r", str(release), "-o", str(outdir),
         *(["-k"] if keep_stage else [])])  # fmt: skip
    made = {}
    for name in PACKAGES:
        (made[f"{name}.deb"],) = outdir.glob(f"{name}_*-{release}_amd64.deb")
        (made[f"{name}.rpm"],) = outdir.glob(f"{name}-[0-9]*-{release}.x86_64.rpm")
    return made


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """The ``[Service]`` section of ``unit``: each key's values, in order."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


class UnitProcess:
    """``consrv.service`` run the way its unit file says (see the module docstring)."""

    def __init__(self, unit: Path, workdir: Path, runtime: Path) -> None:
        """``workdir``: where consrv's stderr goes; ``runtime``: a directory the unit's
        user can traverse, for the notify socket (PID 1's is /run/systemd/notify)."""
        self.settings = unit_settings(unit)
        self.stderr_path = workdir / "consrv.stderr"
        self.notify_path = runtime / "notify"
        self.process: subprocess.Popen[bytes] | None = None
        self._notify: socket.socket | None = None

    def one(self, key: str) -> str:
        (value,) = self.settings[key]
        return value

    def as_user(self, command_line: str) -> list[str]:
        """A unit's command line under the unit's user, groups and NoNewPrivileges=."""
        argv = ["setpriv", f"--reuid={self.one('User')}", f"--regid={self.one('Group')}",
                f"--groups={','.join(self.one('SupplementaryGroups').split())}"]  # fmt: skip
        if self.one("NoNewPrivileges") == "yes":
            argv.append("--no-new-privs")
        return [*argv, "--", *shlex.split(command_line)]

    def env(self) -> dict[str, str]:
        user = self.one("User")
        home = run(["getent", "passwd", user]).split(":")[5]
        return {"PATH": SYSTEM_PATH, "USER": user, "LOGNAME": user, "HOME": home,
                "NOTIFY_SOCKET": str(self.notify_path)}  # fmt: skip

    def start(self) -> UnitProcess:
        """ExecStartPre= (must succeed), then ExecStart= in the background."""
        umask = int(self.one("UMask"), 8)
        for pre in self.settings.get("ExecStartPre", []):
            run(self.as_user(pre), env=self.env(), umask=umask)
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(str(self.notify_path))
        self.notify_path.chmod(0o666)  # the unit's user sends to it, as to PID 1's
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                self.as_user(self.one("ExecStart")), env=self.env(), umask=umask,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")

    def wait_ready(self, timeout: float = 60) -> int:
        """Wait for READY=1 on the notify socket; the SSH port from consrv's log."""
        assert self._notify is not None
        self._notify.settimeout(0.1)
        seen: list[bytes] = []

        def ready() -> bool:
            with contextlib.suppress(TimeoutError):
                seen.append(self._notify.recv(4096) if self._notify else b"")
            assert self.process is not None
            assert self.process.poll() is None, f"consrv exited:\n{self.stderr()}"
            return any(b"READY=1" in message.split(b"\n") for message in seen)

        wait_until(ready, "READY=1 from consrv run as its unit", timeout,
                   interval=0, seen=lambda: (seen, self.stderr()))  # fmt: skip
        match = re.search(r"ssh listening on [\d.]+:(\d+)", self.stderr())
        assert match is not None, self.stderr()
        return int(match.group(1))

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, as systemd stops it (SIGKILL after ``timeout``)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._notify is not None:
            self._notify.close()
            self.notify_path.unlink(missing_ok=True)
            self._notify = None


@contextlib.contextmanager
def running_unit(unit: Path, workdir: Path, runtime: Path) -> Iterator[tuple[UnitProcess, int]]:
    """consrv started as ``unit`` says, ready; stopped on exit. (process, SSH port)."""
    process = UnitProcess(unit, workdir, runtime)
    try:
        port = process.start().wait_ready()
        yield process, port
    finally:
        process.stop()


def start_ioc(name: str, root: Path) -> ProcServ:
    """procServ with a soft IOC, its socket directory ``root:ioc 0750`` as ioc@ makes it."""
    procserv = ProcServ(name, root)
    procserv.directory.mkdir(parents=True)
    os.chown(procserv.directory, 0, grp.getgrnam("ioc").gr_gid)
    procserv.directory.chmod(0o750)
    return procserv


async def attach(port: int, key: Path, known_hosts: Path, console: str) -> None:
    """The real OpenSSH client attaches to the console, with the host key checked."""
    argv = ["ssh", "-tt", "-p", str(port), "-i", str(key), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR",
            "console@127.0.0.1", console]  # fmt: skip
    ssh = await PtySSH(argv).start()
    try:
        await ssh.expect(rb"attached to " + console.encode() + rb": you write", timeout=20)
        await ssh.send(f"dbgf {console}:name\r".encode())
        await ssh.expect(rb'DBF_STRING:\s+"' + console.encode() + rb'"', timeout=20)
        await ssh.send(b"\x05c.")  # ^Ec. detaches
        assert await ssh.wait(timeout=20) == 0, ssh.output
    finally:
        await ssh.aclose()
