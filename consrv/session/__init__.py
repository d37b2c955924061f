"""One user on one console: the bridge between an SSH channel and a Console.

Owns a session's life: attaching (the header, a replay, an offer to start a
stopped IOC), the user's input (every byte goes through the ``^Ec`` escape parser
first), its timers (a lone ``^E`` passed on after `PREFIX_TIMEOUT`; the writer's
idle release) and detaching. Three nouns do the rest, each in its module:

- `InputPump` (``pump.py``): console input, queued only while this session may
  write (never for a read-only user), sent to procServ with back-pressure;
- `EscapeInterpreter` (``escapes.py``): what each escape event does, procServ's
  guarded keys, [y/N] questions;
- `SessionActions` (``actions.py``): IOC actions, broadcasts and notes.

Knows nothing of asyncssh: it talks to the channel through ``contracts.Channel``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

from consrv.access import Role
from consrv.config import ConsoleConfig
from consrv.console import Console, Viewer
from consrv.contracts import Channel, text_bytes
from consrv.protocol import escape
from consrv.protocol.escape import EscapeParser, format_prefix
from consrv.ratelimit import MessageBudgets
from consrv.session.actions import SessionActions
from consrv.session.base import IocActions, MessagePolicy
from consrv.session.escapes import EscapeInterpreter
from consrv.session.pump import InputPump

__all__ = ["IocActions", "MessagePolicy", "Session"]

# A lone ^E (the escape's first byte) is passed on after this long without a
# second byte, so readline's ^E (end of line) works without typing on.
PREFIX_TIMEOUT = 0.5


class Session:
    """A user attached to a console until they leave, the channel closes, or it is cancelled."""

    def __init__(
        self,
        console: Console,
        channel: Channel,
        *,
        user: str,
        role: Role,
        settings: ConsoleConfig,
        pty: bool,
        login: str = "",
        peer: str = "",
        ioc: IocActions | None = None,
        messages: MessagePolicy | None = None,
        current: Callable[[], ConsoleConfig | None] | None = None,
    ) -> None:
        self.console, self.channel, self.user, self.role = console, channel, user, role
        self.settings, self.pty, self.ioc = settings, pty, ioc
        self.messages: MessagePolicy = messages if messages is not None else MessageBudgets()
        self._current = current  # the console's settings in force now (a reload changes them)
        self.viewer = Viewer(
            channel,
            user=user,
            role=role,
            limit=settings.viewer_buffer,
            pty=pty,
            login=login,
            peer=peer,
        )
        self.viewer.on_evict = self._evicted
        self.parser = EscapeParser(settings.escape)
        self.prefix = format_prefix(settings.escape)
        self._wakeup = trio.Event()
        self._eof = self.detached = False
        self.told: set[str] = set()  # what tell_once said already
        self._prefix_deadline: float | None = None
        self._last_input = trio.current_time()
        self.pump = InputPump(self)
        self.escapes = EscapeInterpreter(self)
        self.actions = SessionActions(self)

    @property
    def live(self) -> ConsoleConfig:
        """The console's settings in force now: procServ keys, idle timeout and input
        auditing follow a reload at once (the escape and replay stay as attached)."""
        current = self._current() if self._current is not None else None
        return current if current is not None else self.settings

    @property
    def ended(self) -> bool:
        return self._eof or self.detached

    # The pump's queue, for tests and diagnostics.
    @property
    def _inbox(self) -> bytearray:
        return self.pump.inbox

    @property
    def _unsent(self) -> tuple[bytes, bytes] | None:
        return self.pump.unsent

    # -- called from the SSH layer (synchronous, never blocks) -----------
    def feed(self, data: bytes) -> None:
        """Input from the user."""
        if self.detached:
            return
        now = trio.current_time()
        self._last_input = now
        self.viewer.last_input = time.time()
        self.escapes.typed(data)
        self.parser.receive_data(data)
        self._process()
        self._prefix_deadline = (
            now + PREFIX_TIMEOUT if self.parser.state is escape.State.PREFIX else None
        )
        self._wakeup.set()

    def eof(self) -> None:
        """The user closed their input: send what is queued, then end."""
        self._eof = True
        self._wakeup.set()

    def drained(self) -> None:
        """The channel's output buffer has room again."""
        self.viewer.flush_drop_notice()

    def _evicted(self) -> None:
        """The console sent us away (it was removed, or our access changed)."""
        self.escapes.evicted()
        self.detached = True
        self._wakeup.set()

    def detach(self) -> None:
        """``^Ec.``: leave now (what was typed before still goes, if it can)."""
        self.detached = True
        self.notice(f"detached from {self.console.name}")
        self.pump.cancel_send()  # a send stuck on a hung IOC must not keep us
        self._wakeup.set()

    def wake(self) -> None:
        self._wakeup.set()

    # -- the session task --------------------------------------------------
    def attach(self, *, write: bool = True, force: bool = False) -> None:
        """Join the console: the header, an optional replay, then its output from now on."""
        console = self.console
        if self.settings.replay:
            self.escapes.replay(self.settings.replay)
        console.attach(self.viewer, write=write, force=force)
        self.notice(self._header())
        if self.ioc is not None and self.actions.offer_start():
            return
        if not console.up:
            self.notice(f"{console.name} is down; waiting for it")

    def _header(self) -> str:
        console = self.console
        mode = {
            "writer": "you write",
            "queued": "read-write, waiting for write",
            "watching": f"read-write, watching ({self.prefix}a to write)",
            "read-only": "read-only",
        }[console.mode_of(self.viewer)]
        if console.lock.shared and self.role is Role.RW:
            mode = "read-write (shared: everyone may write)"
        writer = console.writer_name()
        others = (
            f"{writer} writes, " if writer and writer is not None and mode != "you write" else ""
        )
        watching = len(console.viewers) - 1
        return (
            f"attached to {console.name}: {mode}; {others}{watching} other(s) attached;"
            f" {self.prefix}? for help"
        )

    async def run(self) -> int:
        """After ``attach()``: pump input until EOF or ``^Ec.``, then detach. Exit status 0."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.pump.watch_stall)
                nursery.start_soon(self.escapes.watch_questions)
                await self.pump.run()
                nursery.cancel_scope.cancel()
        finally:
            self.console.detach(self.viewer)
        return 0

    async def wait_for_input(self) -> None:
        """Until the user typed (or a timer is due); then the timers are checked."""
        with trio.move_on_at(self._deadline()):
            await self._wakeup.wait()
        self._wakeup = trio.Event()
        self._check_timers()

    def _deadline(self) -> float:
        deadlines = [self._prefix_deadline or math.inf]
        timeout = self.live.writer_idle_timeout
        if timeout is not None and self.console.lock.writer is self.viewer:
            deadlines.append(self._last_input + timeout)
        return min(deadlines)

    def _check_timers(self) -> None:
        now = trio.current_time()
        if self._prefix_deadline is not None and now >= self._prefix_deadline:
            self._prefix_deadline = None
            held = self.parser.flush_pending()
            if held and held[0] in self._guarded():  # the prefix's key is one of procServ's
                self.parser.expect_answer()
                self.escapes.on_guarded(escape.Guarded(held[0]))
            else:
                self.escapes.on_data(escape.Data(held))
        timeout = self.live.writer_idle_timeout
        idle = now - self._last_input
        if timeout is not None and self.console.lock.writer is self.viewer and idle >= timeout:
            self.console.idle_release(self.viewer, idle)

    # -- parsing the user's input -----------------------------------------
    def _process(self) -> None:
        while True:
            guarded = self._guarded()
            if guarded != self.parser.guarded:
                self.parser.guarded = guarded
            event = self.parser.next_event()
            if event is None or self.detached:
                return
            self.escapes.handle(event)

    def _guarded(self) -> frozenset[int]:
        """The keys procServ acts on now (its greeting names them), for a writer."""
        if not self.console.lock.may_write(self.viewer):
            return frozenset()
        return self.console.keys.guarded(child_down=self.console.child_running is False)

    # -- output to this user ------------------------------------------------
    def notice(self, text: str) -> None:
        self.viewer.notice(text)

    def text(self, text: str) -> None:
        self.channel.write_notice(text_bytes(text, pty=self.pty))

    def line_start(self) -> bytes:
        return b"\r\n" if self.pty else b""

    def tell_once(self, what: str, text: str) -> None:
        if what not in self.told:
            self.told.add(what)
            self.notice(text)
