"""Restarts that lose no console output: the hand-over to the next consrv process.

Owns what crosses a restart and how: each connected console's procServ socket and each
SSH listening socket go into systemd's file descriptor store (``FDSTORE=1``, kept by
``FileDescriptorStoreMax=`` in consrv.service), with a memfd holding the state the next
process needs to go on from the next byte (JSON, below). systemd gives them all to the
next process of the unit (``LISTEN_FDS``, ``LISTEN_FDNAMES``), which takes them over,
tells systemd to drop its copies (``FDSTOREREMOVE=1``) and reads on. Meanwhile the
kernel holds what procServ wrote and the connections users made.

Facts checked under systemd 252 (Debian 12) with a user manager (docs/operations.md,
"Upgrades"): the store survives ``systemctl restart`` and automatic restarts
(Restart=), and is emptied by ``systemctl stop``; a stored descriptor that reports
POLLHUP (a procServ that exited) is dropped by systemd on its own.

When: only at a restart. On SIGTERM `is_restart` asks systemd whether the job that
stops this unit is a restart (``systemctl list-jobs UNIT``); a plain stop hands over
nothing (systemd would only close it all). On SIGUSR2 the same goes to a successor
started beside this process instead (successor.py: no gap while it imports). Users are
told ``restarting for an upgrade``.

The state (version 1), keyed by console name; each console's socket is found among the
descriptors named ``console`` by its (st_dev, st_ino)::

    {"version": 1, "pid": 123, "released_at": 1733456789.123,
     "consoles": {"NAME": {"socket": [DEV, INO], "target": "unix:/run/procServ/NAME/control",
                           "telnet": {...}, "parser": {...}, "log_at_line_start": true,
                           "keys": {"kill": 24, "toggle": 20, "logout": null},
                           "child_pid": 4242, "child_running": true, "auto_restart": "ON"}}}

A console whose entry, socket or target does not match is connected afresh (its socket
closed): never a stream without the decoder state it belongs to.

Must not know: SSH (the SSH front asks for its listeners by address), the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import trio

from consrv.console import Console, ProcServKeys
from consrv.protocol.procserv import ProcServParser
from consrv.protocol.telnet import TelnetDecoder
from consrv.sdnotify import Notifier
from consrv.successor import Successor

__all__ = ["FAREWELL", "Handover", "unit_of_cgroup"]

logger = logging.getLogger(__name__)

VERSION = 1
STATE_NAME = "consrv-state"
CONSOLE_NAME = "console"
LISTENER_NAME = "ssh-listen"
FIRST_FD = 3  # SD_LISTEN_FDS_START
# What users are told when consrv stops for a restart.
FAREWELL = "restarting for an upgrade"
# Asking systemd which job stops us: bounded (TimeoutStopSec=10), a stop must not hang.
JOB_QUERY_TIMEOUT = 5.0

Identity = tuple[int, int]


def unit_of_cgroup(text: str) -> str | None:
    """The service unit a process runs in, from ``/proc/self/cgroup``'s text (or None)."""
    for line in text.splitlines():
        path = line.rsplit(":", 1)[-1]
        leaf = path.rstrip("/").rsplit("/", 1)[-1]
        if leaf.endswith(".service"):
            return leaf
    return None


def _identity(fd: int) -> Identity:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _received(environ: Mapping[str, str]) -> dict[str, list[int]]:
    """The descriptors systemd passed to this process, by name (LISTEN_FDNAMES)."""
    if environ.get("LISTEN_PID", "") != str(os.getpid()):
        return {}
    count = int(environ.get("LISTEN_FDS", "0") or 0)
    names = environ.get("LISTEN_FDNAMES", "").split(":")
    found: dict[str, list[int]] = {}
    for i in range(count):
        fd = FIRST_FD + i
        os.set_inheritable(fd, False)  # never into systemctl or anything else we start
        found.setdefault(names[i] if i < len(names) else "unknown", []).append(fd)
    return found


class Receiver(Protocol):
    """Where a restart leaves the descriptors: systemd's store, or the successor."""

    def send_fds(self, name: str, fds: list[int]) -> bool:
        """Pass duplicates of `fds` under `name`; False if that failed."""

    def confirm(self) -> bool:
        """Wait until the receiver holds everything sent; False if it did not say so."""


class _Systemd:
    """systemd's file descriptor store, through sd_notify."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def send_fds(self, name: str, fds: list[int]) -> bool:
        return self.notifier.store_fds(name, fds)

    def confirm(self) -> bool:
        return self.notifier.barrier()

    def __str__(self) -> str:
        return "systemd"


class _Consoles(Protocol):
    """The registry, as the hand-over sees it."""

    @property
    def consoles(self) -> Mapping[str, Console]: ...


@dataclass
class _Released:
    """What the old process keeps for the next one, gathered as consoles stop."""

    consoles: dict[str, dict[str, Any]] = field(default_factory=dict)
    console_fds: list[int] = field(default_factory=list)
    listener_fds: list[int] = field(default_factory=list)
    released: dict[str, Console] = field(default_factory=dict)  # their logs' line state


class Handover:
    """One process's side of a restart: what it took over, and what it hands on."""

    def __init__(
        self,
        notifier: Notifier,
        *,
        scope: str = "system",
        unit: str | None = None,
        received: dict[str, list[int]] | None = None,
        fd_store: bool = True,
    ) -> None:
        self.notifier, self.scope, self.unit = notifier, scope, unit
        self.fd_store = fd_store  # SIGTERM in a systemd restart leaves all in its store
        self.restarting = False  # set by `arm`: the consoles' connections go on
        self._released = _Released()
        self._state: dict[str, Any] = {}
        self._consoles: dict[Identity, int] = {}  # socket identity -> fd, not yet adopted
        self._listeners: list[socket.socket] = []
        self.adopted: list[str] = []
        self.registry: _Consoles | None = None  # whose consoles a restart hands on
        # Run at a restart before the consoles stop: the SSH front keeps its listeners
        # and tells its users (the daemon wires it: this module knows no SSH).
        self.before_release: Callable[[Handover], Awaitable[None]] | None = None
        self._take(received or {})

    @classmethod
    def from_environ(
        cls,
        notifier: Notifier,
        *,
        fd_store: bool,
        from_predecessor: dict[str, list[int]] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Handover:
        """This process's hand-over: what a predecessor passed (consrv/successor.py), else
        with `fd_store` what systemd passed; our unit and the manager's scope."""
        env = os.environ if environ is None else environ
        unit = None
        with contextlib.suppress(OSError):
            unit = unit_of_cgroup(Path("/proc/self/cgroup").read_text())
        scope = "user" if env.get("MANAGERPID") else "system"
        received = from_predecessor
        if received is None and fd_store:
            received = _received(env)
        handover = cls(notifier, scope=scope, unit=unit, received=received, fd_store=fd_store)
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(key, None)  # not for the processes consrv starts
        return handover

    # -- taking over (the new process) -------------------------------------

    def _take(self, received: dict[str, list[int]]) -> None:
        for fd in received.pop(STATE_NAME, []):
            self._state = self._read_state(fd)
        for fd in received.pop(CONSOLE_NAME, []):
            self._consoles[_identity(fd)] = fd
        for fd in received.pop(LISTENER_NAME, []):
            try:
                self._listeners.append(socket.socket(fileno=fd))
            except OSError as exc:  # not a socket: nothing to listen on
                logger.warning("hand-over: a listener that is not a socket (%s): closed", exc)
                os.close(fd)
        for name, fds in received.items():
            logger.warning("hand-over: %d descriptor(s) named %r: not ours, closed", len(fds), name)
            for fd in fds:
                os.close(fd)
        if self.fd_store and (self._consoles or self._listeners or self._state):
            for name in (STATE_NAME, CONSOLE_NAME, LISTENER_NAME):
                self.notifier.remove_fds(name)  # systemd's copies would hold them open

    @staticmethod
    def _read_state(fd: int) -> dict[str, Any]:
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0)
            state = json.loads(data)
        except (OSError, ValueError) as exc:
            logger.warning("hand-over: the state from the previous process is unreadable: %s", exc)
            return {}
        finally:
            os.close(fd)
        if not isinstance(state, dict) or state.get("version") != VERSION:
            logger.warning("hand-over: state of an unknown version: connecting afresh")
            return {}
        return state

    def adopt(self, console: Console) -> None:
        """Registry.on_add: give `console` its connection back, if one was handed over."""
        entry = self._state.get("consoles", {}).get(console.name)
        if not isinstance(entry, dict):
            return
        dev_ino = entry.get("socket")
        if not isinstance(dev_ino, list) or len(dev_ino) != 2:
            return
        fd = self._consoles.pop((dev_ino[0], dev_ino[1]), None)
        if fd is None:
            return
        if entry.get("target") != str(console.target):
            logger.info("%s: its socket changed in the config: connecting afresh", console.name)
            os.close(fd)
            return
        try:
            decoder = TelnetDecoder.resume(entry["telnet"])
            parser = ProcServParser.resume(entry["parser"])
            keys = ProcServKeys(**entry["keys"])
        except (KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: hand-over state unusable (%s): reconnecting", console.name, exc)
            os.close(fd)
            return
        console.keys, console.auto_restart = keys, entry.get("auto_restart")
        console.child_pid = entry.get("child_pid")
        console.child_running = entry.get("child_running")
        if console.log is not None:
            console.log.at_line_start = bool(entry.get("log_at_line_start", True))
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
        console.adopt(trio.SocketStream(sock), decoder, parser)
        self.adopted.append(console.name)

    def finish_adopting(self) -> None:
        """Once the configured consoles are added: close the connections nobody took."""
        for fd in self._consoles.values():
            os.close(fd)
        if self._consoles:
            logger.info("hand-over: closed %d removed console(s)", len(self._consoles))
        self._consoles = {}
        released = self._state.get("released_at")
        if self.adopted and isinstance(released, int | float):
            logger.info(
                "hand-over: took over %d console(s) from pid %s; unread for %.3f s",
                len(self.adopted),
                self._state.get("pid"),
                time.time() - released,
            )

    def listener(self, host: str, port: int) -> socket.socket | None:
        """The handed-over listening socket for ``host:port`` (any port for port 0)."""
        for sock in self._listeners:
            bound_host, bound_port = sock.getsockname()[:2]
            if bound_host == host and port in (0, bound_port):
                self._listeners.remove(sock)
                since = self._state.get("listeners_released_at")
                if isinstance(since, int | float):
                    logger.info(
                        "hand-over: took over the SSH listener on %s:%d; not accepting for %.3f s",
                        host,
                        bound_port,
                        time.time() - since,
                    )
                return sock
        return None

    def close_unclaimed_listeners(self) -> None:
        for sock in self._listeners:
            sock.close()
        self._listeners = []

    # -- handing on (the old process) ---------------------------------------

    async def is_restart(self) -> bool:
        """Whether to leave the consoles in systemd's store at this SIGTERM: unless systemd
        says its job for this unit is a plain ``stop`` (then it would only close them).
        If systemd cannot be asked, they are left there: losing nothing comes first."""
        if not self.fd_store or not self.notifier.enabled or self.unit is None:
            return False
        job = await self._job()
        logger.info("SIGTERM: systemd's job for %s: %s", self.unit, job or "unknown")
        return job != "stop"

    async def _job(self) -> str | None:
        """systemd's job for our unit (``restart``, ``stop``, ...); None if unknown."""
        assert self.unit is not None
        argv = ["systemctl", "--no-pager", "list-jobs", "--no-legend", "--plain", "--", self.unit]
        if self.scope == "user":
            argv.insert(1, "--user")
        with trio.move_on_after(JOB_QUERY_TIMEOUT):
            try:
                result = await trio.run_process(argv, capture_stdout=True, check=False)
            except OSError as exc:
                logger.warning("hand-over: cannot ask systemd for our job: %s", exc)
                return None
            for line in result.stdout.decode(errors="replace").splitlines():
                words = line.split()  # JOB UNIT TYPE STATE
                if len(words) >= 3 and words[1] == self.unit:
                    return words[2]
            return None
        logger.warning("hand-over: systemctl list-jobs took over %g s", JOB_QUERY_TIMEOUT)
        return None

    async def hand_over(self) -> None:
        """The next process goes on from here: the SSH front keeps its listeners and tells
        its users while the consoles still drain, then each console is armed to hand on
        its connection as its reader ends (the caller cancels the task tree)."""
        assert self.registry is not None
        self.restarting = True
        if self.before_release is not None:
            await self.before_release(self)
        self.arm(self.registry.consoles)

    async def to_successor(self) -> Successor | None:
        """SIGUSR2: start the next consrv beside this one; once it is ready it becomes
        systemd's main process and the consoles go to it (successor.py). None: we stay."""
        if self.registry is None:
            return None
        heir = await Successor.start()
        if heir is None:
            return None
        logger.info("upgrade: pid %d is ready: handing the consoles on to it", heir.pid)
        if self.notifier.notify(MAINPID=heir.pid):
            self.notifier.barrier()
        await self.hand_over()
        return heir

    def arm(self, consoles: Mapping[str, Console]) -> None:
        """A restart: each console hands on its connection as its reader task ends."""
        self.restarting = True
        self._state["released_at"] = time.time()
        for console in consoles.values():
            console.release = self._release

    def _release(
        self,
        console: Console,
        stream: trio.SocketStream,
        decoder: TelnetDecoder,
        parser: ProcServParser,
    ) -> None:
        try:
            fd = os.dup(stream.socket.fileno())
        except OSError as exc:
            logger.warning("%s: cannot keep the connection for the restart: %s", console.name, exc)
            return
        self._released.console_fds.append(fd)
        self._released.consoles[console.name] = {
            "socket": list(_identity(fd)),
            "target": str(console.target),
            "telnet": decoder.snapshot(),
            "parser": parser.snapshot(),
            "keys": dataclasses.asdict(console.keys),
            "child_pid": console.child_pid,
            "child_running": console.child_running,
            "auto_restart": console.auto_restart,
        }
        self._released.released[console.name] = console

    def keep_listener(self, fd: int) -> None:
        """The SSH front, closing for a restart: keep this listening socket open."""
        self._released.listener_fds.append(os.dup(fd))
        self._state["listeners_released_at"] = time.time()

    def store(self, to: Receiver | None = None) -> None:
        """After the task tree ended: give the sockets and the state `to` the successor
        (default: systemd's store), and wait until it has them (BARRIER=1) so none is
        lost as this process exits."""
        to = to or _Systemd(self.notifier)
        released = self._released
        for name, entry in released.consoles.items():  # the line state once all is written
            log = released.released[name].log
            entry["log_at_line_start"] = log.at_line_start if log is not None else True
        state = {
            "version": VERSION,
            "pid": os.getpid(),
            "released_at": self._state.get("released_at", time.time()),
            "listeners_released_at": self._state.get("listeners_released_at"),
            "consoles": released.consoles,
        }
        memfd = os.memfd_create(STATE_NAME, os.MFD_CLOEXEC)
        try:
            os.write(memfd, json.dumps(state).encode())
            stored = all(
                [
                    *(to.send_fds(CONSOLE_NAME, [fd]) for fd in released.console_fds),
                    *(to.send_fds(LISTENER_NAME, [fd]) for fd in released.listener_fds),
                    to.send_fds(STATE_NAME, [memfd]),
                ]
            )
            confirmed = to.confirm()
        finally:
            for fd in (*released.console_fds, *released.listener_fds, memfd):
                os.close(fd)
        logger.info(
            "hand-over: %d console(s) and %d listener(s) given to %s%s",
            len(released.console_fds),
            len(released.listener_fds),
            to,
            "" if stored and confirmed else " (not all confirmed: some output may be lost)",
        )
