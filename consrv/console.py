"""One console per IOC: its upstream connection, scrollback, viewers and log.

Owns the reader task that drains procServ continuously, and the fan-out to
viewers. Fan-out never awaits a viewer: a viewer whose sink is backed up loses
data (and is told how much), it never slows the console, the log or the others.
Knows nothing of SSH: viewers write into a ``Sink``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

import trio

from consrv.access import Role
from consrv.audit import NO_AUDIT, AuditLog
from consrv.consolelog import ConsoleLog
from consrv.contracts import Sink, notice_bytes
from consrv.pathwatch import PathWatcher
from consrv.protocol import procserv
from consrv.protocol.procserv import ProcServParser
from consrv.protocol.telnet import TelnetDecoder
from consrv.recording import Recording
from consrv.scrollback import Scrollback
from consrv.upstream import Backoff, Target, UnixTarget, connect, path_identity, wait_retry
from consrv.writelock import Change, Kind, WriterLock

logger = logging.getLogger(__name__)

# Up to this much per read: when consrv is behind an IOC printing flat out, each
# pass through the per-chunk path (telnet, viewers, scrollback, log) carries more,
# and costs less per byte. A slow viewer's channel may take one read beyond its bound.
READ_SIZE = 256 << 10
# A read this large means the IOC is printing a lot: wait BATCH_WAIT for more before
# passing it on, so viewers get fewer, bigger SSH packets (a keystroke's echo, a
# few bytes, never waits). A read of BATCH_ENOUGH (one full SSH packet) or more
# goes on at once: consrv is behind, more is queued, and a trio.sleep costs
# ~55 us of CPU (docs/performance.md, "Log-only ingest").
BATCH_FROM = 2048
BATCH_ENOUGH = 32 << 10
BATCH_WAIT = 0.001
# Viewers served between two checkpoints during fan-out.
FAN_OUT_SLICE = 4
# A connection that lasted this long resets the backoff.
STABLE_AFTER = 1.0
# While connected, the socket path is checked this often for a new socket (by
# the registry, for all consoles in one task: an idle console costs no wakeups).
PATH_CHECK_INTERVAL = 1.0


class Observer(Protocol):
    """Told of changes a front may publish (consrv/pva/); called in the trio thread, never awaited.

    ``what``: "state" (up/down), "child" (the IOC's pid or running), "writer", "viewers",
    "output" (new output, possibly pattern matches: coalesce, it comes per read),
    "patterns" (the configured patterns changed). It must be cheap and must not raise.
    """

    def console_added(self, console: Console) -> None: ...

    def console_removed(self, console: Console) -> None: ...

    def console_changed(self, console: Console, what: str) -> None: ...


def _read_ready(stream: trio.SocketStream, size: int) -> bytes:
    """What ``stream`` holds now, up to ``size`` bytes, without waiting (b"" if none).

    An end of file or an error is left for the next ``receive_some`` to report.
    """
    try:
        return os.read(stream.socket.fileno(), size)
    except OSError:
        return b""


class Viewer:
    """One attached user as the console sees it: a bounded sink that may drop."""

    def __init__(
        self,
        sink: Sink,
        *,
        user: str,
        role: Role,
        limit: int,
        pty: bool = True,
        login: str = "",
        peer: str = "",
    ) -> None:
        self.sink, self.user, self.role, self.limit = sink, user, role, limit
        self.pty, self.login, self.peer = pty, login, peer
        self.since = time.time()
        self.last_input: float | None = None  # wall-clock time of the last keystroke
        # Called when the console sends this viewer away (removed by a reload, access changed).
        self.on_evict: Callable[[], None] | None = None
        self.dropped = 0  # dropped since the last notice
        self.dropped_total = 0
        self.notices_dropped = 0  # consrv's own messages dropped since the last notice

    def deliver(self, data: bytes) -> int:
        """Write `data`, or drop it when the sink is full; returns the bytes dropped."""
        if self.sink.buffered() >= self.limit:
            self.dropped += len(data)
            self.dropped_total += len(data)
            return len(data)
        self.flush_drop_notice()
        self.sink.write(data)
        return 0

    def flush_drop_notice(self) -> None:
        """Tell the user how much they missed, once their sink has room again."""
        if not (self.dropped or self.notices_dropped) or self.sink.buffered() >= self.limit:
            return
        missed = [f"{self.dropped} bytes"] if self.dropped else []
        if self.notices_dropped:
            missed.append(f"{self.notices_dropped} consrv message(s)")
        self.dropped = self.notices_dropped = 0
        self.sink.write_notice(notice_bytes(" and ".join(missed) + " dropped", pty=self.pty))

    def notice(self, text: str) -> None:
        """A consrv message for this user; dropped (and counted) like output while their
        sink is over its bound, so messages cannot grow a stalled viewer's buffer."""
        if self.sink.buffered() >= self.limit:
            self.notices_dropped += 1
            return
        self.flush_drop_notice()
        self.sink.write_notice(notice_bytes(text, pty=self.pty))


@dataclass(frozen=True)
class ProcServKeys:
    """The keys procServ acts on for this connection, from its greeting (None: disabled).

    Until the greeting says otherwise, procServ's defaults (^X kill, ^T toggle).
    """

    kill: int | None = 0x18
    toggle: int | None = 0x14
    logout: int | None = None

    def guarded(self, *, child_down: bool) -> frozenset[int]:
        """The bytes procServ would act on: always the kill, toggle and logout keys;
        while no child runs also ^R (restart) and ^Q (quit procServ)."""
        keys = {self.kill, self.toggle, self.logout}
        if child_down:
            keys |= {procserv.RESTART_KEY, procserv.QUIT_KEY}
        return frozenset(key for key in keys if key is not None)

    def describe(self, key: int) -> str:
        """``^K (kill/restart)``: the key as procServ writes it and what it does."""
        what = {
            self.kill: "kill/restart",
            self.toggle: "toggle auto-restart",
            self.logout: "log out of procServ",
        }.get(key) or {procserv.RESTART_KEY: "restart", procserv.QUIT_KEY: "quit procServ"}.get(
            key, "a procServ key"
        )
        return f"{procserv.key_name(key)} ({what})"


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
    # ("exit", code) or ("signal", number) -> count
    exits: Counter[tuple[str, int]] = field(default_factory=Counter)
    viewer_bytes_dropped: int = 0  # over all viewers, also those that left
    # Wall-clock time of the last change of state (connected, disconnected, the child
    # started or ended); at first, when consrv took the console on.
    state_since: float | None = None


@dataclass(frozen=True)
class WhoEntry:
    """One attached user, for `who` and ``^Ecw``."""

    user: str
    mode: Literal["writer", "queued", "watching", "read-only"]
    since: float  # wall-clock
    idle: float | None  # seconds since the last keystroke; None if none yet
    login: str
    peer: str


class Console:
    """A procServ console: drained always, fanned out to every viewer."""

    def __init__(
        self,
        name: str,
        target: Target,
        *,
        scrollback: int,
        log: ConsoleLog | None = None,
        write: Literal["exclusive", "shared"] = "exclusive",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name, self.target, self.log, self._clock = name, target, log, clock
        self.scrollback = Scrollback(scrollback)
        self.viewers: set[Viewer] = set()
        self.lock: WriterLock[Viewer] = WriterLock(write)
        self.matcher: _Matcher | None = None
        self.audit: AuditLog = NO_AUDIT
        self.recording: Recording | None = None  # output with timing, beside the log
        self._idle_for = 0.0  # the idle time of the last idle release, for its notice
        self.stats = ConsoleStats(state_since=clock())
        self.up = False
        self.child_pid: int | None = None
        self.child_running: bool | None = None  # None until procServ has said
        self.auto_restart: str | None = None
        self.keys = ProcServKeys()  # what procServ's greeting said on this connection
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._last_error: str | None = None
        # Tells a down console when its socket path changes (None: the path is polled).
        self.watcher: PathWatcher | None = None
        # While connected to a UNIX socket: the connection's scope and the socket's identity.
        self._serving: tuple[trio.CancelScope, tuple[int, int, int]] | None = None
        # A restart hands the connection to the next consrv process (handover.py): a
        # connection to take over before connecting (`adopt`), and, once set, whom to
        # give the connection and its decoder states to when the reader task ends.
        self._adopted: tuple[trio.SocketStream, TelnetDecoder, ProcServParser] | None = None
        self.release: Release | None = None
        # Who is told of changes (the registry's list, shared by all its consoles).
        self.observers: list[Observer] = []

    def changed(self, what: str) -> None:
        """Tell every `Observer` that ``what`` changed."""
        for observer in self.observers:
            observer.console_changed(self, what)

    # -- viewers and the write lock --------------------------------------
    def attach(self, viewer: Viewer, *, write: bool = False, force: bool = False) -> None:
        """Add a viewer; a read-write one takes the free lock (`write`) or forces it."""
        self.viewers.add(viewer)
        rw = viewer.role is Role.RW
        self.log_event(f"attach {viewer.user} {viewer.role.value}")
        self.audit_event("attach", viewer, role=viewer.role.value)
        joined = self.lock.join(viewer, rw=rw, write=write, now=self._clock())
        self._announce_change(joined, skip=viewer)  # the attach header tells them
        if force and rw:
            self.force_write(viewer)
        self.changed("viewers")

    def detach(self, viewer: Viewer) -> None:
        if viewer not in self.viewers:
            return
        self.viewers.discard(viewer)
        self.log_event(f"detach {viewer.user}")
        self.audit_event("detach", viewer)
        self._announce_change(self.lock.leave(viewer, self._clock()))
        self.changed("viewers")

    def evict(self, viewer: Viewer, reason: str) -> None:
        """Send one viewer away: told why, detached, its session ended."""
        if viewer not in self.viewers:
            return
        viewer.notice(reason)
        self.detach(viewer)
        if viewer.on_evict is not None:
            viewer.on_evict()

    def evict_all(self, reason: str) -> None:
        for viewer in list(self.viewers):
            self.evict(viewer, reason)

    def request_write(self, viewer: Viewer) -> None:
        """``^Eca``: write now if free, else queue."""
        if self.lock.may_write(viewer):
            viewer.notice("you already write" if not self.lock.shared else "shared: you write")
            return
        self._announce_change(self.lock.request(viewer, self._clock()))

    def force_write(self, viewer: Viewer) -> None:
        """``^Ecf``: take write; the old writer watches and both are told."""
        if self.lock.may_write(viewer):
            viewer.notice("you already write")
            return
        self._announce_change(self.lock.force(viewer, self._clock()))

    def spy(self, viewer: Viewer) -> None:
        """``^Ecs``: stop writing or waiting, keep watching."""
        queued = self.lock.position(viewer) > 0
        change = self.lock.spy(viewer, self._clock())
        if change is None:
            viewer.notice("left the write queue; watching" if queued else "watching")
        self._announce_change(change)

    def idle_release(self, viewer: Viewer, idle_seconds: float) -> None:
        self._idle_for = idle_seconds
        self._announce_change(self.lock.idle(viewer, self._clock()))

    def who(self, *, now: float | None = None) -> list[WhoEntry]:
        now = self._clock() if now is None else now
        return [self._who_entry(viewer, now) for viewer in self._ordered_viewers()]

    def _ordered_viewers(self) -> list[Viewer]:
        return sorted(self.viewers, key=lambda v: (v is not self.lock.writer, v.since, v.user))

    def _who_entry(self, viewer: Viewer, now: float) -> WhoEntry:
        idle = None if viewer.last_input is None else max(0.0, now - viewer.last_input)
        return WhoEntry(
            viewer.user, self.mode_of(viewer), viewer.since, idle, viewer.login, viewer.peer
        )

    def mode_of(self, viewer: Viewer) -> Literal["writer", "queued", "watching", "read-only"]:
        if viewer.role is not Role.RW:
            return "read-only"
        if self.lock.may_write(viewer):
            return "writer"
        return "queued" if self.lock.position(viewer) else "watching"

    def writer_name(self) -> str | None:
        if self.lock.shared:
            return None
        return self.lock.writer.user if self.lock.writer is not None else None

    def announce(self, text: str) -> None:
        """A consrv message to every viewer (not into the console output)."""
        self._each_viewer(lambda viewer: viewer.notice(text))

    def _announce_change(self, change: Change[Viewer] | None, skip: Viewer | None = None) -> None:
        if change is None:
            return
        self.changed("writer")
        self.log_event(_log_text(change))
        self.audit_event(
            "write",
            kind=change.kind.value,
            writer=change.writer.user if change.writer is not None else None,
            previous=change.previous.user if change.previous is not None else None,
            who=change.who.user if change.who is not None else None,
        )
        for viewer in list(self.viewers):
            if viewer is skip:
                continue
            text = _change_text(change, viewer, self._idle_for)
            if text:
                self._each_viewer(functools.partial(Viewer.notice, text=text), only=viewer)

    def log_event(self, text: str) -> None:
        if self.log is not None:
            self.log.write_event(text)
        if self.recording is not None:
            self.recording.write_marker(text)

    def audit_event(self, event: str, viewer: Viewer | None = None, **fields: object) -> None:
        """One audit record about this console (and the user behind `viewer`)."""
        if viewer is not None:
            fields = {"user": viewer.user, "from": viewer.peer, "login": viewer.login, **fields}
        self.audit.record(event, console=self.name, **fields)

    # -- input -----------------------------------------------------------
    def may_send_now(self) -> bool:
        """True when `send_now` may be used: connected, and no `send_input` under way."""
        return self._stream is not None and not self._send_lock.locked()

    def send_now(self, data: bytes) -> int:
        """Send what procServ's socket takes at once, without waiting; the bytes sent.

        Only when `may_send_now`. 0 when the socket is full or broken: the caller
        queues the rest for `send_input`, which then finds out which.
        """
        assert self._stream is not None
        try:
            sent = os.write(self._stream.socket.fileno(), data)
        except OSError:  # BlockingIOError: full; anything else: broken
            return 0
        self.stats.bytes_in += sent
        return sent

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
    def adopt(
        self, stream: trio.SocketStream, decoder: TelnetDecoder, parser: ProcServParser
    ) -> None:
        """Take over a connection the previous consrv process held (before `run`):
        `run` drains it first, from the decoders' states, without a new greeting."""
        self._adopted = (stream, decoder, parser)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, drain, reconnect with backoff; forever (cancel to stop)."""
        task_status.started()
        backoff = Backoff()
        if self._adopted is not None:
            adopted, self._adopted = self._adopted, None
            await self._serve(*adopted)
        while True:
            seen = self._identity()
            try:
                stream = await connect(self.target)
            except OSError as exc:
                self._connect_failed(exc)
                await self._wait_retry(backoff, seen)
                continue
            started = trio.current_time()
            await self._serve(stream)
            if trio.current_time() - started >= STABLE_AFTER:
                backoff.reset()
            await self._wait_retry(backoff, self._identity())

    async def _wait_retry(self, backoff: Backoff, seen: tuple[int, int, int] | None) -> None:
        """Wait before the next try; a new socket on the path starts the backoff again,
        so the next tries come quickly (it may be bound but not yet listening)."""
        if await wait_retry(self.target, backoff.next_delay(), seen, self.watcher):
            backoff.reset()

    def _identity(self) -> tuple[int, int, int] | None:
        if isinstance(self.target, UnixTarget):
            return path_identity(self.target.path)
        return None

    def _connect_failed(self, exc: OSError) -> None:
        text = exc.strerror or str(exc)
        if text != self._last_error:
            logger.warning("%s: cannot connect to %s: %s", self.name, self.target, text)
            self._last_error = text

    async def _serve(
        self,
        stream: trio.SocketStream,
        decoder: TelnetDecoder | None = None,
        parser: ProcServParser | None = None,
    ) -> None:
        identity = self._identity()
        adopted = decoder is not None
        decoder, parser = decoder or TelnetDecoder(), parser or ProcServParser()
        async with stream:
            self._set_up(stream, adopted=adopted)
            try:
                with trio.CancelScope() as scope:
                    if identity is not None:
                        self._serving = (scope, identity)
                    await self._drain(stream, decoder, parser)
            except (trio.BrokenResourceError, OSError) as exc:
                logger.info("%s: connection lost: %s", self.name, exc)
            finally:
                self._serving = None
                if self.release is not None:  # a restart: the next process goes on from here
                    self.release(self, stream, decoder, parser)
                self._set_down(quiet=self.release is not None)

    def check_path(self) -> None:
        """While connected: if another socket has taken our path (a new procServ), move to it.

        A path that is merely gone keeps the connection (the old procServ still runs).
        The registry calls this when the path changes (and every PATH_CHECK_INTERVAL
        where nothing watches paths).
        """
        if self._serving is None:
            return
        scope, identity = self._serving
        now = self._identity()
        if now is not None and now != identity:
            logger.info("%s: %s is a new socket: reconnecting", self.name, self.target)
            self._serving = None
            scope.cancel()

    async def _drain(
        self, stream: trio.SocketStream, decoder: TelnetDecoder, parser: ProcServParser
    ) -> None:
        # Cancelled only while waiting for a read (trio's receive is atomic): a chunk
        # once read is decoded, shown and logged whole, so a restart that hands the
        # connection on (handover.py) leaves nothing read and not logged.
        while data := await stream.receive_some(READ_SIZE):
            with trio.CancelScope(shield=True):
                if BATCH_FROM <= len(data) < BATCH_ENOUGH:
                    await trio.sleep(BATCH_WAIT)
                    data += _read_ready(stream, READ_SIZE)
                output = decoder.receive_data(data)
                if output:
                    await self._on_output(output)
                    for event in parser.receive_data(output):
                        self._on_event(event)

    def _set_up(self, stream: trio.SocketStream, *, adopted: bool = False) -> None:
        self._stream, self.up, self._last_error = stream, True, None
        self.stats.state_since = self._clock()
        self.stats.connects += 1
        if adopted:  # the keys and the child's state came with it; no line in the log
            logger.info("%s: took over the connection to %s", self.name, self.target)
            return
        self.keys = ProcServKeys()
        logger.info("%s: connected to %s", self.name, self.target)
        self.log_event(f"upstream up ({self.target})")
        self.announce(f"{self.name} up")
        self.changed("state")

    def _set_down(self, *, quiet: bool = False) -> None:
        self._stream, self.up = None, False
        self.stats.state_since = self._clock()
        self.stats.disconnects += 1
        if quiet:  # handed over: an event line could split the line the IOC is printing
            return
        self.child_running = None
        logger.info("%s: disconnected from %s", self.name, self.target)
        self.log_event("upstream down")
        self.announce(f"{self.name} down")
        self.changed("state")

    async def _on_output(self, data: bytes) -> None:
        stats = self.stats
        stats.bytes_out += len(data)
        stats.last_output = self._clock()
        # Scrollback before the fan-out (a copy into the ring, nothing that waits): a
        # viewer attached during the fan-out's checkpoints does not get this chunk
        # delivered, so the scrollback it takes on attaching must already hold it.
        self.scrollback.append(data)
        # Viewers next: a keystroke's echo waits for nothing else. Between every
        # few viewers, let other tasks run: a keystroke on another console does not
        # wait for a busy console's whole fan-out.
        for i, viewer in enumerate(list(self.viewers)):
            if i and not i % FAN_OUT_SLICE:
                await trio.lowlevel.checkpoint()
            try:
                stats.viewer_bytes_dropped += viewer.deliver(data)
            except Exception:  # noqa: BLE001 (one broken sink must not stop the console)
                self._viewer_failed(viewer)
        if self.log is not None:
            self.log.write_output(data)
        if self.recording is not None:
            self.recording.write_output(data)
        if self.matcher is not None:
            self.matcher.feed(data)
        if self.observers:
            self.changed("output")

    def _each_viewer(self, action: Callable[[Viewer], object], only: Viewer | None = None) -> None:
        for viewer in [only] if only is not None else list(self.viewers):
            try:
                action(viewer)
            except Exception:  # noqa: BLE001 (one broken sink must not stop the console)
                self._viewer_failed(viewer)

    def _viewer_failed(self, viewer: Viewer) -> None:
        logger.exception("%s: viewer %s failed; detaching it", self.name, viewer.user)
        self.viewers.discard(viewer)
        self.lock.leave(viewer, self._clock())
        self.changed("viewers")

    def _on_event(self, event: procserv.Event) -> None:
        if isinstance(event, procserv.ChildStarted | procserv.ChildShutDown | procserv.ChildExited):
            self.stats.state_since = self._clock()
        match event:
            case procserv.ChildRunning(pid=pid) | procserv.ChildStarted(pid=pid):
                self.child_pid, self.child_running = pid, True
                if isinstance(event, procserv.ChildStarted):
                    self.stats.child_starts += 1
            case procserv.ChildShutDown():
                self.child_pid, self.child_running = None, False
            case procserv.ChildExited():
                self.child_pid, self.child_running = None, False
                self.stats.child_exits += 1
                self.stats.last_exit = event
                if event.signal is not None:
                    self.stats.exits["signal", event.signal] += 1
                else:
                    self.stats.exits["exit", event.exit_code or 0] += 1
            case procserv.AutoRestartMode(mode=mode):
                self.auto_restart = mode
            case procserv.ControlKeys(kill=kill, toggle=toggle, mode=mode):
                self.auto_restart = mode
                self.keys = dataclasses.replace(self.keys, kill=kill, toggle=toggle)
            case procserv.LogoutKey(key=key):
                self.keys = dataclasses.replace(self.keys, logout=key)
            case _:
                pass
        if isinstance(event, _CHILD_EVENTS):
            self.changed("child")


_CHILD_EVENTS = (
    procserv.ChildRunning, procserv.ChildStarted, procserv.ChildShutDown, procserv.ChildExited,
)  # fmt: skip


class Release(Protocol):
    """Takes a console's connection when a restart hands it on (handover.py): called
    as the reader task ends, before the stream is closed (so: dup the descriptor)."""

    def __call__(
        self,
        console: Console,
        stream: trio.SocketStream,
        decoder: TelnetDecoder,
        parser: ProcServParser,
    ) -> None: ...


class _Matcher(Protocol):
    """Counts pattern matches over output lines (patterns.LineMatcher)."""

    def feed(self, data: bytes) -> None: ...

    @property
    def counts(self) -> Mapping[str, int]: ...


def _log_text(change: Change[Viewer]) -> str:
    """The log line of a lock change: ``write: forced bob (from alice)``."""
    writer = change.writer.user if change.writer is not None else "nobody"
    previous = change.previous.user if change.previous is not None else ""
    match change.kind:
        case Kind.GRANTED:
            return f"write: {writer} writes"
        case Kind.QUEUED:
            who = change.who.user if change.who is not None else "?"
            return f"write: {who} queued (#{change.position}) behind {writer}"
        case Kind.FORCED:
            return f"write: {writer} forced write from {previous}"
        case _:
            return f"write: {previous} {change.kind.value}; {writer} writes"


def _change_text(change: Change[Viewer], viewer: Viewer, idle_for: float) -> str:
    """What `viewer` is told about a lock change ("" = nothing)."""
    you = viewer is change.writer
    writer = "you" if you else (change.writer.user if change.writer else "")
    match change.kind:
        case Kind.GRANTED:
            return "you now write" if you else f"{writer} now writes"
        case Kind.QUEUED:
            assert change.who is not None
            if viewer is change.who:
                return (
                    f"{writer} writes; you are number {change.position} in the write queue"
                    " (you will write when they stop)"
                )
            return f"{change.who.user} asks for write"
        case Kind.FORCED:
            assert change.previous is not None
            if you:
                return f"you now write (forced from {change.previous.user})"
            if viewer is change.previous:
                return f"{change.writer.user if change.writer else '?'} forced write; you now watch"
            return f"{writer} forced write from {change.previous.user}"
        case _:
            return _release_text(change, viewer, writer, idle_for)


def _release_text(change: Change[Viewer], viewer: Viewer, writer: str, idle_for: float) -> str:
    previous = change.previous.user if change.previous is not None else "?"
    if viewer is change.previous:
        previous = "you"
    what = {
        Kind.RELEASED: f"{previous} stopped writing",
        Kind.LEFT: f"{previous} left",
        Kind.IDLE: f"{previous} idle for {_duration(idle_for)}: write released",
    }[change.kind]
    if change.writer is None:
        return f"{what}; nobody writes"
    return f"{what}; {'you now write' if viewer is change.writer else writer + ' now writes'}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return (
        f"{minutes} min"
        if minutes and not secs
        else (f"{minutes}m{secs:02d}s" if minutes else f"{secs} s")
    )
