"""A private systemd user manager for tests: real ``systemctl --user`` on hosts without systemd.

These machines do not boot systemd, yet ``/lib/systemd/systemd --user`` runs fine as
root once ``/run/systemd/system`` exists (systemctl's "booted with systemd" check).
`SystemdUser` gives the manager a private world under one base directory:
``XDG_RUNTIME_DIR`` (mode 0700: the private socket, ``%t/procServ/NAME/``),
``XDG_CONFIG_HOME`` (``systemd/user/`` units, ``consrv/ioc/NAME.env``, ``log/``
= ``%L``), ``XDG_STATE_HOME``, ``XDG_CACHE_HOME``, ``XDG_DATA_HOME``, so ``~/.config``
and ``/run/user`` are never touched. ``systemctl --user`` needs only
``XDG_RUNTIME_DIR``: it talks to ``$XDG_RUNTIME_DIR/systemd/private`` (no D-Bus).

Facts found by running it (systemd 252, cgroup v1 + unified hybrid):
- A manager started in the root cgroup takes the root as its own and moves every
  process of the machine into ``init.scope``. So the manager is started inside a cgroup
  of its own (``consrv-test.PID`` in the ``name=systemd`` and unified hierarchies,
  what a delegated ``user@.service`` would get): it then moves only itself.
- Sandboxing options (ProtectHome=, ProtectKernelLogs=, ...) need
  ``/run/systemd/inaccessible/``, which PID 1 creates on a booted system: created
  here too, the way systemd does.
- The manager's own log goes to ``manager.log`` in the base directory
  (``--log-target=console``); with no journald, units' stdout goes nowhere.

Teardown: ``systemctl --user exit`` (stops every unit), then SIGKILL for the manager
and anything left in its cgroup, then the cgroups are removed: nothing outlives it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from consrv.migrate.envfile import format_env_file, quote_exec_words

REPO = Path(__file__).resolve().parent.parent
IOC_UNIT = REPO / "systemd" / "ioc@.service"
CONSRV_UNIT = REPO / "systemd" / "consrv.service"
SYSTEMD = Path("/lib/systemd/systemd")
CGROUP_ROOT = Path("/sys/fs/cgroup")
INACCESSIBLE = Path("/run/systemd/inaccessible")
POLL = 0.05


class SystemdUserError(RuntimeError):
    """The user manager did not start or a systemctl call failed; the message says why."""


def softioc_cmd(name: str) -> list[str]:
    """argv of a real EPICS soft IOC with records ``<name>:...`` (consrv.softioc)."""
    return [sys.executable, "-m", "consrv.softioc", "--prefix", f"{name}:"]


def _base_parent() -> str:
    """Where the base directory goes: /run like a real runtime dir, if writable."""
    return "/run" if os.access("/run", os.W_OK) else tempfile.gettempdir()


def _cgroup_mounts() -> list[Path]:
    """The hierarchies systemd tracks processes in: cgroup2, and v1 ``name=systemd``."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, options = after.split()[:3]
        mount_point = Path(before.split()[4])
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            mounts.append(mount_point)
    return mounts


def _make_inaccessible_nodes() -> None:
    """/run/systemd/inaccessible/{reg,dir,fifo,sock,chr,blk}, mode 0, as PID 1 makes them."""
    INACCESSIBLE.mkdir(mode=0o755, parents=True, exist_ok=True)
    kinds = {
        "reg": stat.S_IFREG,
        "fifo": stat.S_IFIFO,
        "sock": stat.S_IFSOCK,
        "chr": stat.S_IFCHR,
        "blk": stat.S_IFBLK,
    }
    with contextlib.suppress(FileExistsError):
        (INACCESSIBLE / "dir").mkdir(mode=0)
    for name, kind in kinds.items():
        with contextlib.suppress(FileExistsError):
            os.mknod(INACCESSIBLE / name, kind | 0, os.makedev(0, 0))


def _kill_cgroup(directory: Path) -> None:
    """SIGKILL every process in ``directory`` and below, then remove the cgroups."""
    for procs in sorted(directory.rglob("cgroup.procs"), key=lambda p: -len(p.parts)):
        for pid in procs.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 5
    for cgroup in sorted(
        (p.parent for p in directory.rglob("cgroup.procs")), key=lambda p: -len(p.parts)
    ):
        while True:
            try:
                cgroup.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:  # EBUSY until the killed processes are reaped
                if time.monotonic() > deadline:
                    raise SystemdUserError(
                        f"gave up after 5 s waiting for the killed processes in {cgroup}"
                        f" to be reaped so it can be removed: {exc}"
                    ) from exc
                time.sleep(POLL)


class SystemdUser:
    """``systemd --user`` in a private base directory, with the ioc@ template installed."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runtime_dir = base / "run"
        self.config_dir = base / "config"
        self.unit_dir = self.config_dir / "systemd" / "user"
        self.ioc_env_dir = self.config_dir / "consrv" / "ioc"
        self.log_path = base / "manager.log"
        self.env = self._environment()
        self.process: subprocess.Popen[bytes] | None = None
        self._cgroups: list[Path] = []

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "DBUS_"))}
        env.update(
            XDG_RUNTIME_DIR=str(self.runtime_dir),
            XDG_CONFIG_HOME=str(self.config_dir),
            XDG_STATE_HOME=str(self.base / "state"),
            XDG_CACHE_HOME=str(self.base / "cache"),
            XDG_DATA_HOME=str(self.base / "data"),
            SYSTEMD_PAGER="",
            SYSTEMD_COLORS="0",
        )
        return env

    # ------------------------------------------------------------ life cycle

    @classmethod
    @contextlib.contextmanager
    def running(cls, base: Path | None = None) -> Iterator[SystemdUser]:
        """A started manager with ioc@.service installed; stopped (everything) on exit."""
        made = base is None
        root = (
            Path(tempfile.mkdtemp(prefix="consrv-systemd.", dir=_base_parent())) if made else base
        )
        assert root is not None
        manager = cls(root)
        try:
            manager.start()
            manager.install_unit(IOC_UNIT)
            yield manager
        finally:
            manager.stop()
            if made:
                shutil.rmtree(root)

    def start(self, timeout: float = 15) -> None:
        if Path("/proc/1/comm").read_text().strip() == "systemd":
            raise SystemdUserError(
                "PID 1 is systemd: these tests start their own user manager and are meant for"
                " hosts or containers without systemd as PID 1 (CI, DESIGN.md section 4)"
            )
        Path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
        _make_inaccessible_nodes()
        self.runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o700)
        for directory in (self.unit_dir, self.ioc_env_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._cgroups = self._make_cgroups()
        self._spawn()
        self._wait_running(timeout)

    def _make_cgroups(self) -> list[Path]:
        cgroups = []
        for mount in _cgroup_mounts():
            cgroup = mount / f"consrv-test.{os.getpid()}.{self.base.name}"
            cgroup.mkdir()
            cgroups.append(cgroup)
        return cgroups

    def _spawn(self) -> None:
        # sh joins the cgroups, then becomes the manager (same pid): the manager never
        # runs in the root cgroup. The cgroup.procs paths are arguments, not code.
        script = (
            'for f in "$@"; do echo $$ > "$f" || exit 1; done; exec '
            + shlex.quote(str(SYSTEMD))
            + " --user --log-target=console"
        )
        procs = [str(cgroup / "cgroup.procs") for cgroup in self._cgroups]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", script, "sh", *procs],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_running(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise SystemdUserError(f"systemd --user exited: {self.manager_log()}")
            if (self.runtime_dir / "systemd" / "private").is_socket():
                state = self.systemctl("is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(POLL)
        raise SystemdUserError(
            f"gave up after {timeout:g} s waiting for systemd --user to be running"
            f" (is-system-running said {state or 'nothing: no private socket yet'!r}):"
            f" {self.manager_log()}"
        )

    def stop(self, timeout: float = 10) -> None:
        """Stop every unit and the manager; kill whatever is left; remove the cgroups."""
        if self.process is not None and self.process.poll() is None:
            self.systemctl("exit", check=False)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for cgroup in self._cgroups:
            if cgroup.exists():
                _kill_cgroup(cgroup)
        self._cgroups = []

    def manager_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------ systemctl and files

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``systemctl --user ARGS`` against this manager (text output captured)."""
        result = subprocess.run(
            ["systemctl", "--user", "--no-pager", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise SystemdUserError(
                f"systemctl --user {' '.join(args)}: exit {result.returncode}: {result.stderr}"
            )
        return result

    def install_unit(self, source: Path, name: str | None = None) -> Path:
        """Copy a unit file into ``$XDG_CONFIG_HOME/systemd/user/`` and daemon-reload."""
        target = self.unit_dir / (name or source.name)
        target.write_text(source.read_text())
        self.systemctl("daemon-reload")
        return target

    def write_ioc_env(self, name: str, chdir: Path | str, cmd: Sequence[str]) -> Path:
        """``%E/consrv/ioc/NAME.env`` for ioc@NAME: IOC_CHDIR and IOC_CMD, quoted for systemd."""
        path = self.ioc_env_dir / f"{name}.env"
        assignments = [("IOC_CHDIR", str(chdir)), ("IOC_CMD", quote_exec_words(cmd))]
        path.write_text(format_env_file(assignments))
        return path

    def socket_path(self, name: str) -> Path:
        """procServ's console socket of ioc@NAME (``%t/procServ/NAME/control``)."""
        return self.runtime_dir / "procServ" / name / "control"

    def info_path(self, name: str) -> Path:
        return self.runtime_dir / "procServ" / name / "info"

    def ioc_log_path(self, name: str) -> Path:
        """procServ's --logfile of ioc@NAME (``%L/ioc/NAME.log``; %L is $XDG_CONFIG_HOME/log)."""
        return self.config_dir / "log" / "ioc" / f"{name}.log"

    def units(self, pattern: str = "ioc@*.service") -> list[str]:
        """The loaded units matching ``pattern`` (``list-units --all``)."""
        out = self.systemctl("list-units", "--all", "--plain", "--no-legend", "--", pattern).stdout
        return sorted(line.split()[0] for line in out.splitlines() if line.strip())

    def stop_iocs(self) -> None:
        """Stop every ioc@ instance and forget failed ones (between tests)."""
        self.systemctl("stop", "--", "ioc@*.service", check=False)
        self.systemctl("reset-failed", "--", "ioc@*.service", check=False)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.systemctl("show", "-p", ",".join(properties), "--", unit).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
