"""One console per IOC: its upstream connection, scrollback, viewers and log.

Owns the reader task that drains procServ continuously, and the fan-out to
viewers. Fan-out never awaits a viewer: a viewer whose sink is backed up loses
data (and is told how much), it never slows the console, the log or the others.
Knows nothing of SSH: viewers write into a ``Sink``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from consrv.access import Role
from consrv.consolelog import ConsoleLog
from consrv.protocol import procserv
from consrv.protocol.procserv import ProcServParser
from consrv.protocol.telnet import TelnetDecoder
from consrv.scrollback import Scrollback
from consrv.upstream import Backoff, Target, UnixTarget, connect, path_identity, wait_retry

logger = logging.getLogger(__name__)

READ_SIZE = 65536
# A connection that lasted this long resets the backoff.
STABLE_AFTER = 1.0


class Sink(Protocol):
    """Where a viewer's bytes go (an SSH channel, or a test's buffer)."""

    def write(self, data: bytes) -> None:
        """Queue bytes; never blocks."""

    def write_notice(self, data: bytes) -> None:
        """Queue a consrv message (stderr for SSH); never blocks."""

    def buffered(self) -> int:
        """Bytes queued and not yet taken by the peer."""


def notice_bytes(text: str, *, pty: bool) -> bytes:
    """A consrv message on a line of its own (a terminal may be mid-line)."""
    message = b"[consrv: " + text.encode() + b"]"
    return b"\r\n" + message + b"\r\n" if pty else message + b"\n"


class Viewer:
    """One attached user as the console sees it: a bounded sink that may drop."""

    def __init__(self, sink: Sink, *, user: str, role: Role, limit: int, pty: bool = True) -> None:
        self.sink, self.user, self.role, self.limit = sink, user, role, limit
        self.pty = pty
        self.since = time.time()
        self.dropped = 0  # dropped since the last notice
        self.dropped_total = 0

    def deliver(self, data: bytes) -> None:
        if self.sink.buffered() >= self.limit:
            self.dropped += len(data)
            self.dropped_total += len(data)
            return
        self.flush_drop_notice()
        self.sink.write(data)

    def flush_drop_notice(self) -> None:
        """Tell the user how much they missed, once their sink has room again."""
        if self.dropped and self.sink.buffered() < self.limit:
            count, self.dropped = self.dropped, 0
            self.notice(f"{count} bytes dropped")

    def notice(self, text: str) -> None:
        self.sink.write_notice(notice_bytes(text, pty=self.pty))


@dataclass
class ConsoleStats:
    """Counters kept for status and metrics."""

    connects: int = 0
    disconnects: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    last_output: float | None = None  # wall-clock time of the last output byte
    child_starts: int = 0
    child_exits: int = 0
    last_exit: procserv.ChildExited | None = None


class Console:
    """A procServ console: drained always, fanned out to every viewer."""

    def __init__(
        self,
        name: str,
        target: Target,
        *,
        scrollback: int,
        log: ConsoleLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.target, self.log, self._clock = name, target, log, clock
        self.scrollback = Scrollback(scrollback)
        self.viewers: set[Viewer] = set()
        self.stats = ConsoleStats()
        self.up = False
        self.child_pid: int | None = None
        self.auto_restart: str | None = None
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._last_error: str | None = None

    # -- viewers ---------------------------------------------------------
    def attach(self, viewer: Viewer) -> None:
        self.viewers.add(viewer)

    def detach(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)

    def announce(self, text: str) -> None:
        """A consrv message to every viewer (not into the console output)."""
        self._each_viewer(lambda viewer: viewer.notice(text))

    def log_event(self, text: str) -> None:
        if self.log is not None:
            self.log.write_event(text)

    # -- input -----------------------------------------------------------
    async def send_input(self, data: bytes) -> bool:
        """Send already-encoded bytes to procServ; False when the console is down."""
        stream = self._stream
        if stream is None:
            return False
        async with self._send_lock:
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return False
        self.stats.bytes_in += len(data)
        return True

    # -- the reader task -------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, drain, reconnect with backoff; forever (cancel to stop)."""
        task_status.started()
        backoff = Backoff()
        while True:
            seen = self._identity()
            try:
                stream = await connect(self.target)
            except OSError as exc:
                self._connect_failed(exc)
                await wait_retry(self.target, backoff.next_delay(), seen)
                continue
            started = trio.current_time()
            await self._serve(stream)
            if trio.current_time() - started >= STABLE_AFTER:
                backoff.reset()
            await wait_retry(self.target, backoff.next_delay(), self._identity())

    def _identity(self) -> tuple[int, int, int] | None:
        if isinstance(self.target, UnixTarget):
            return path_identity(self.target.path)
        return None

    def _connect_failed(self, exc: OSError) -> None:
        text = exc.strerror or str(exc)
        if text != self._last_error:
            logger.warning("%s: cannot connect to %s: %s", self.name, self.target, text)
            self._last_error = text

    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            self._set_up(stream)
            try:
                await self._drain(stream)
            except (trio.BrokenResourceError, OSError) as exc:
                logger.info("%s: connection lost: %s", self.name, exc)
            finally:
                self._set_down()

    async def _drain(self, stream: trio.SocketStream) -> None:
        decoder, parser = TelnetDecoder(), ProcServParser()
        while data := await stream.receive_some(READ_SIZE):
            output = decoder.receive_data(data)
            if output:
                self._on_output(output)
                for event in parser.receive_data(output):
                    self._on_event(event)

    def _set_up(self, stream: trio.SocketStream) -> None:
        self._stream, self.up, self._last_error = stream, True, None
        self.stats.connects += 1
        logger.info("%s: connected to %s", self.name, self.target)
        self.log_event(f"upstream up ({self.target})")
        self.announce(f"{self.name} up")

    def _set_down(self) -> None:
        self._stream, self.up = None, False
        self.stats.disconnects += 1
        logger.info("%s: disconnected from %s", self.name, self.target)
        self.log_event("upstream down")
        self.announce(f"{self.name} down")

    def _on_output(self, data: bytes) -> None:
        self.stats.bytes_out += len(data)
        self.stats.last_output = self._clock()
        self.scrollback.append(data)
        if self.log is not None:
            self.log.write_output(data)
        self._each_viewer(lambda viewer: viewer.deliver(data))

    def _each_viewer(self, action: Callable[[Viewer], None]) -> None:
        for viewer in list(self.viewers):
            try:
                action(viewer)
            except Exception:
                logger.exception("%s: viewer %s failed; detaching it", self.name, viewer.user)
                self.viewers.discard(viewer)

    def _on_event(self, event: procserv.Event) -> None:
        match event:
            case procserv.ChildRunning(pid=pid) | procserv.ChildStarted(pid=pid):
                self.child_pid = pid
                if isinstance(event, procserv.ChildStarted):
                    self.stats.child_starts += 1
            case procserv.ChildShutDown():
                self.child_pid = None
            case procserv.ChildExited():
                self.child_pid = None
                self.stats.child_exits += 1
                self.stats.last_exit = event
            case procserv.AutoRestartMode(mode=mode):
                self.auto_restart = mode
            case _:
                pass
