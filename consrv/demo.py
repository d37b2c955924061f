"""The demo: real procServ + EPICS soft IOCs with consrv in front; and the pieces tests reuse.

``python -m consrv.demo`` starts a few soft IOCs (``consrv.softioc``), each under its
own procServ on a UNIX socket in ESS's layout (``<root>/procServ/<NAME>/control``),
writes a consrv config and SSH keys into a work directory, runs ``consrv serve`` and
prints the ``ssh`` commands to try. Ctrl-C (or SIGTERM) stops everything.

Reusable by integration tests: `ProcServ` (one procServ instance, argv lists only,
never a shell), `make_demo_config`, `ensure_client_key`, `stop_process`.

procServ 2.7 facts this relies on (measured): ``-f`` keeps procServ in the
foreground so the pid we hold is the server's (with stdin not a tty it adds no
console of its own); ``--holdoff N`` is the minimum time between two child
*starts* (default 15 s), so a child that ran longer than N s is restarted about
0.5 s after it exits; SIGTERM kills the child and removes the socket and info file;
a new procServ replaces a stale socket file. The child runs with SIGHUP and SIGTERM
blocked (an inherited signal mask), so it survives a SIGKILLed procServ: `kill`
therefore kills the child too.

Must not know: consrv's internals (it talks to consrv only as a subprocess and a config file).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType

import yaml

from consrv.names import validate_console_name
from consrv.ssh.keys import write_new_key

__all__ = [
    "PROCSERV",
    "ProcServ",
    "ProcServError",
    "children_of",
    "ensure_client_key",
    "main",
    "make_demo_config",
    "pid_alive",
    "socket_path",
    "softioc_command",
    "stop_process",
    "tail",
    "wait_tcp",
]

PROCSERV = "procServ"
DEFAULT_PORT = 2222
DEFAULT_METRICS_PORT = 9750
DEFAULT_WORKDIR = Path("demo-run")
POLL = 0.05
# How often `ProcServ.wait_ioc` asks the IOC its question again.
PROBE_INTERVAL = 1.0
# IAC WILL ECHO: what procServ sends right after its banner (PROCSERV.md).
# What the soft IOC prints once booted (the demo waits for it in consrv's console log).
BOOTED = b"iocRun: All initialization complete"
TELNET_OFFER = b"\xff\xfb\x01"


class ProcServError(RuntimeError):
    """procServ did not start or become ready; the message carries its output."""


def socket_path(root: Path, name: str) -> Path:
    """The control socket of console ``name`` in ESS's layout under ``root``."""
    return root / "procServ" / validate_console_name(name) / "control"


def softioc_command(name: str, python: str = sys.executable) -> list[str]:
    """argv of a soft IOC whose records are named ``<name>:...``."""
    return [python, "-m", "consrv.softioc", "--prefix", f"{name}:"]


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the ")" that ends the command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def children_of(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (scans /proc; no /proc/PID/task/*/children here)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return sorted(found)


def _kill_pids(pids: Sequence[int], timeout: float) -> None:
    """SIGKILL ``pids`` (not our children) and wait until they are gone or ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(POLL)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a text file ("" if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ProcServ:
    """One procServ instance on a UNIX socket under ``root``, like an ``ioc@NAME`` unit.

    Files: ``<root>/procServ/<name>/`` holds ``control`` (the socket), ``info``
    (``--info-file``) and ``procServ.out`` (procServ's own stdout/stderr). The child is
    ``command`` (default: the soft IOC with prefix ``<name>:``). As a context manager
    it starts and waits until ready on entry, and stops on exit.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        command: Sequence[str] | None = None,
        *,
        holdoff: int = 1,
        procserv: str = PROCSERV,
        env: Mapping[str, str] | None = None,
        endpoint: str | None = None,
    ) -> None:
        self.name = validate_console_name(name)
        self.socket = socket_path(root, name)
        self.directory = self.socket.parent
        self.info_file = self.directory / "info"
        self.output_file = self.directory / "procServ.out"
        self.command = list(command) if command is not None else softioc_command(name)
        self.holdoff = holdoff
        self.procserv = procserv
        self.env = dict(env) if env is not None else None
        # procServ's --port: its socket in any form procServ knows, e.g.
        # unix:USER:GROUP:MODE:PATH (PATH must be `socket`).
        self.endpoint = endpoint if endpoint is not None else f"unix:{self.socket}"
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        """procServ's argv (its options, then the child's command line)."""
        return [
            self.procserv,
            "-f",  # foreground: the pid we hold is procServ's; stop it with SIGTERM
            f"--name={self.name}",
            f"--port={self.endpoint}",
            "--ignore=^C^D",  # as in ioc@.service: ^C must not kill a soft IOC
            f"--info-file={self.info_file}",
            f"--holdoff={self.holdoff}",  # min. seconds between child starts (default 15)
            *self.command,
        ]

    @property
    def pid(self) -> int | None:
        """procServ's pid, or None before `start`."""
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def child_pids(self) -> list[int]:
        """The pids of procServ's live children (the IOC, when it runs)."""
        return children_of(self._proc.pid) if self.running() and self._proc else []

    def start(self) -> None:
        """Start procServ (argv list, own session, stdin /dev/null, output to a file)."""
        if self._proc is not None:
            raise ProcServError(f"procServ {self.name} already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.output_file.open("ab") as out:
            self._proc = subprocess.Popen(  # noqa: S603 - an argv list, no shell
                self.argv(),
                cwd=self.directory,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is the demo's to handle
            )

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the control socket accepts a connection and the child runs.

        procServ starts its child about 0.5 s after the socket appears; input
        sent before that is lost. ProcServError if not ready within `timeout`.
        """
        deadline = time.monotonic() + timeout
        accepted = False
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise ProcServError(f"procServ {self.name} is not running\n{self._output()}")
            # Probe the socket only until it accepts: procServ puts off starting its
            # child while clients keep connecting.
            accepted = accepted or self._accepts()
            if accepted and self.child_pids():
                return
            if time.monotonic() > deadline:
                raise ProcServError(f"procServ {self.name}: {self.socket} not ready")
            time.sleep(POLL)

    def wait_ioc(self, timeout: float = 30.0) -> None:
        """Wait until the soft IOC (the default child) answers a question on its shell.

        Its boot line ("iocRun: All initialization complete") is printed once: a
        client that connects after it can never see it, and how long the IOC takes
        to boot depends on the page cache. An answer to a question asked now cannot
        be missed: ``dbgf NAME:name`` is typed every `PROBE_INTERVAL` until
        ``DBF_STRING: "NAME"`` comes back (the echo of the typed line does not
        match). Returns with the IOC booted and reading its shell; ProcServError
        naming the question and what came back if not within `timeout`.
        """
        question = f"dbgf {self.name}:name\r".encode()
        answer = re.compile(rb'DBF_STRING:\s+"' + re.escape(self.name.encode()) + rb'"')
        deadline = time.monotonic() + timeout
        seen = b""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(PROBE_INTERVAL)
            probe.connect(str(self.socket))
            next_ask = time.monotonic()
            while not answer.search(seen):
                now = time.monotonic()
                if now > deadline or not self.running():
                    raise ProcServError(
                        f"procServ {self.name}: no answer to {question!r} within {timeout} s"
                        f" (procServ {'running' if self.running() else 'exited'});"
                        f" the IOC said: {seen[-400:]!r}\n{self._output()}"
                    )
                if now >= next_ask:
                    probe.sendall(question)
                    next_ask = now + PROBE_INTERVAL
                with contextlib.suppress(TimeoutError):
                    chunk = probe.recv(65536)
                    if not chunk:
                        raise ProcServError(f"procServ {self.name} closed the probe: {seen!r}")
                    seen += chunk

    def _accepts(self) -> bool:
        return banner_read(self.socket)

    def _output(self) -> str:
        return tail(self.output_file)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM procServ (it kills its child), wait, then SIGKILL; no process is left."""
        if self._proc is None:
            return
        children = self.child_pids()
        stop_process(self._proc, timeout)
        _kill_pids([pid for pid in children if pid_alive(pid)], timeout)

    def kill(self) -> None:
        """SIGKILL procServ, as a crash would: the socket and info files stay behind.

        The child is killed too (it would survive: its SIGHUP/SIGTERM are blocked).
        """
        if self._proc is None:
            return
        children = self.child_pids()
        self._proc.kill()
        self._proc.wait()
        _kill_pids(children, 5.0)

    def __enter__(self) -> ProcServ:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------- config and keys


def ensure_client_key(path: Path, comment: str) -> str:
    """An ed25519 key pair at ``path`` (0600) and ``path.pub``, made if missing.

    Returns the public key line (``ssh-ed25519 AAAA... comment``).
    """
    if not path.exists():
        write_new_key(path, comment)
    return path.with_name(path.name + ".pub").read_text().strip()


def make_demo_config(
    workdir: Path,
    names: list[str],
    port: int,
    users: Mapping[str, Sequence[str]],
    *,
    rw: Sequence[str] = ("demo",),
    ro: Sequence[str] = ("*",),
    metrics_port: int | None = None,
    web: bool = False,
) -> Path:
    """Write ``<workdir>/consrv.yaml`` and return its path.

    ``users`` maps a user name to their public key lines; ``rw`` / ``ro`` are the
    default ACLs for all consoles; every name in ``names`` is a console on its
    socket ``<workdir>/procServ/<name>/control``. The host key
    (``<workdir>/ssh_host_ed25519_key``) is made by consrv on first start.
    ``metrics_port``: serve ``/metrics`` on ``127.0.0.1:PORT`` (None: no metrics).
    ``web``: the browser view on a free loopback port (plain HTTP: loopback only).
    """
    workdir = workdir.resolve()
    config = {
        "ssh": {
            "listen": [f"127.0.0.1:{port}"],
            "host_key": str(workdir / "ssh_host_ed25519_key"),
        },
        "log_dir": str(workdir / "logs"),
        "users": {user: {"keys": list(keys)} for user, keys in users.items()},
        "defaults": {"rw": list(rw), "ro": list(ro)},
        "consoles": {name: {"socket": str(socket_path(workdir, name))} for name in names},
    }
    if metrics_port is not None:
        config["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    if web:  # any free port on loopback: `ssh ... web` prints the link with it
        config["web"] = {"listen": "127.0.0.1:0"}
    path = workdir / "consrv.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, width=1000), encoding="utf-8")
    return path


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_booted(log: Path, offset: int, server: ProcServ, timeout: float = 60.0) -> None:
    """Wait until consrv's log of the console shows the IOC's boot line past `offset`
    (what the log held before this run); ProcServError if not within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if log.exists():
            with log.open("rb") as stream:
                stream.seek(offset)
                if BOOTED in stream.read():
                    return
        if time.monotonic() > deadline or not server.running():
            raise ProcServError(
                f"procServ {server.name}: no {BOOTED.decode()!r} in {log} within {timeout} s"
                f" (procServ {'running' if server.running() else 'exited'})\n{server._output()}"
            )
        time.sleep(POLL)


def wait_tcp(host: str, port: int, timeout: float, alive: subprocess.Popen[bytes]) -> bool:
    """Wait until ``host:port`` accepts TCP; False if ``alive`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive.poll() is None:
        if _tcp_accepts(host, port):
            return True
        time.sleep(POLL)
    return False


def banner_read(path: Path) -> bool:
    """Connect to procServ at ``path``, read its banner up to the telnet offer, close.

    Closing before procServ has written its banner makes it log
    "Got a sigPipe signal" into the console, so the probe reads it all.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
            received = b""
            while TELNET_OFFER not in received:
                chunk = probe.recv(4096)
                if not chunk:
                    return False
                received += chunk
        except OSError:
            return False
    return True


def _tcp_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# ---------------------------------------------------------------- the demo


class _Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Further signals are ignored: the clean-up that follows is bounded in time.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop(signum)


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _ssh_line(port: int, key: Path, known_hosts: Path, login: str, name: str) -> str:
    return (
        f"ssh -t -p {port} -i {_shown(key)} -o UserKnownHostsFile={_shown(known_hosts)}"
        f" -o StrictHostKeyChecking=accept-new {login}@127.0.0.1 {name}"
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m consrv.demo",
        description="Run EPICS soft IOCs under procServ with consrv in front of them.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="SSH port (%(default)s)")
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="work directory (%(default)s)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help="Prometheus /metrics port on 127.0.0.1 (%(default)s)",
    )
    parser.add_argument("--iocs", type=int, default=3, help="number of IOCs (%(default)s)")
    args = parser.parse_args(argv)
    if not 1 <= args.iocs <= 20:
        parser.error("--iocs must be 1-20")
    for option, port in (("--port", args.port), ("--metrics-port", args.metrics_port)):
        if not 1 <= port <= 65535:
            parser.error(f"{option} must be 1-65535")
    if args.port == args.metrics_port:
        parser.error("--port and --metrics-port must differ")
    return args


def _stop_all(servers: Sequence[ProcServ]) -> None:
    for server in servers:
        server.stop()


def _demo_users(workdir: Path) -> dict[str, list[str]]:
    return {
        "demo": [ensure_client_key(workdir / "id_demo", "demo")],
        "watcher": [ensure_client_key(workdir / "id_watcher", "watcher")],
    }


def _start_consrv(workdir: Path, config: Path) -> subprocess.Popen[bytes]:
    log = workdir / "consrv.log"
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - an argv list, no shell
            [sys.executable, "-m", "consrv", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # SIGINT from the terminal goes to the demo only
        )


def _run(args: argparse.Namespace, stack: contextlib.ExitStack) -> int:
    workdir: Path = args.workdir.resolve()
    port: int = args.port
    names = [f"demo-ioc{i}" for i in range(1, args.iocs + 1)]
    if shutil.which(PROCSERV) is None:
        print(f"{PROCSERV} not found: install it (Debian: apt-get install procserv)")
        return 2
    for option, taken in (("--port", port), ("--metrics-port", args.metrics_port)):
        if _tcp_accepts("127.0.0.1", taken):
            print(f"port {taken} is already in use: choose another with {option}")
            return 2
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"consrv demo in {_shown(workdir)}/")
    servers = [ProcServ(name, workdir) for name in names]
    stack.callback(_stop_all, servers)  # the exit stack unwinds: consrv first, then procServ
    config = make_demo_config(
        workdir, names, port, _demo_users(workdir), metrics_port=args.metrics_port, web=True
    )
    consrv = _start_consrv(workdir, config)
    stack.callback(stop_process, consrv, 10.0)
    if not wait_tcp("127.0.0.1", port, 30.0, consrv):
        return _consrv_failed(consrv, workdir)
    print(f"  consrv listening on 127.0.0.1:{port} (config {_shown(config)})")
    # procServ after consrv: consrv is connected when each IOC boots, so the console
    # logs and scrollback hold the boot output. Booted is read there, not asked: a
    # probe that typed into the IOC would sit in every log and scrollback, from nobody.
    logs = {server.name: workdir / "logs" / f"{server.name}.log" for server in servers}
    seen = {name: _size(path) for name, path in logs.items()}
    for server in servers:
        server.start()
    for server in servers:
        server.wait_ready()
    for server in servers:
        wait_booted(logs[server.name], seen[server.name], server)
    print(f"  {len(names)} soft IOCs under procServ: {' '.join(names)}")
    _print_instructions(workdir, port, args.metrics_port, names[0])
    return _wait(consrv, workdir)


def _print_instructions(workdir: Path, port: int, metrics_port: int, name: str) -> None:
    known_hosts = workdir / "known_hosts"
    print()
    print("Read-write (user demo):")
    print("  " + _ssh_line(port, workdir / "id_demo", known_hosts, "console", name))
    print("Read-only (user watcher):")
    print("  " + _ssh_line(port, workdir / "id_watcher", known_hosts, "observer", name))
    print("In a browser, read-only (open the link it prints within a minute):")
    web = _ssh_line(port, workdir / "id_watcher", known_hosts, "observer", "web")
    print("  " + web.replace("ssh -t ", "ssh ", 1))
    print("Prometheus metrics:")
    print(f"  curl -s http://127.0.0.1:{metrics_port}/metrics | grep '^consrv_console_up{{'")
    print(f"Console logs: {_shown(workdir / 'logs')}/   consrv's log: {_shown(workdir)}/consrv.log")
    print("Ctrl-C stops everything.")
    sys.stdout.flush()


def _wait(consrv: subprocess.Popen[bytes], workdir: Path) -> int:
    try:
        while consrv.poll() is None:
            time.sleep(0.2)
    except _Stop as stop:
        if stop.args[0] == signal.SIGINT and sys.stdout.isatty():
            print()  # end the terminal's "^C" line
        return 0
    return _consrv_failed(consrv, workdir)


def _consrv_failed(consrv: subprocess.Popen[bytes], workdir: Path) -> int:
    status = consrv.poll()
    if status is None:
        what = "did not start listening"
    elif status < 0:
        what = f"was killed by signal {-status}"
    else:
        what = f"exited with status {status}"
    print(f"consrv {what}; the end of {_shown(workdir)}/consrv.log:")
    print(tail(workdir / "consrv.log"))
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        with contextlib.ExitStack() as stack:
            status = _run(args, stack)
    except _Stop:
        status = 0  # a signal during start-up: everything started is stopped
    except ProcServError as exc:
        print(f"procServ failed: {exc}")
        status = 1
    if status == 0:
        print("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
