"""One user on one console: the bridge between an SSH channel and a Console.

Owns the input path of one session. Every byte the user types goes through the
``^Ec`` escape parser first; what is left is console input, queued only while
this session may write (the console's write lock) and never for a read-only
user. procServ's keys (^X, ^T, and ^R/^Q while the child is down) follow the
console's ``procserv_keys`` policy and are written to the console log with the
user. Queued input is encoded for procServ and sent with back-pressure (the
channel is paused while the queue is full, so a large paste flows at
procServ's pace and loses nothing). Knows nothing of asyncssh: it talks to the
channel through the small ``Channel`` protocol.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import ClassVar, Protocol

import trio

from consrv import questions, views
from consrv.access import Role
from consrv.config import ConsoleConfig
from consrv.console import Console, Sink, Viewer, text_bytes
from consrv.protocol import escape, procserv
from consrv.protocol.escape import EscapeParser, format_prefix
from consrv.protocol.telnet import InputEncoder
from consrv.ratelimit import MessageBudgets

logger = logging.getLogger(__name__)

# The input queue is paused above HIGH bytes and resumed below LOW.
INPUT_HIGH = 64 * 1024
INPUT_LOW = 16 * 1024
SEND_CHUNK = 4096
# A lone ^E (the escape's first byte) is passed on after this long without a
# second byte, so readline's ^E (end of line) works without typing on.
PREFIX_TIMEOUT = 0.5
REPLAY_SHORT, REPLAY_LONG = 20, 60
# Queued input that has not moved for this long means procServ takes no input.
STALL_TIMEOUT = 2.0

IOC_VERBS = ("restart", "start", "stop")


class Channel(Sink, Protocol):
    """What a session needs of its SSH channel."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class IocControl(Protocol):
    """An IOC's unit, as a session may act on it (see ``service``)."""

    @property
    def may_operate(self) -> bool:
        """Whether the user may operate the unit, by the config in force now."""

    async def act(self, verb: str) -> str:
        """Start/stop/restart; returns a message, raises ActionFailed.

        The request and its outcome are announced to every viewer of the console
        (this session's too) and written to its log.
        """

    def describe(self) -> views.ConsoleView:
        """The console with its unit's health, for ``^Eci``."""


class MessagePolicy(Protocol):
    """How many broadcasts and notes a user may send, and how long (``ratelimit``)."""

    @property
    def max_length(self) -> int: ...

    def take(self, user: str, now: float, kind: str = "message") -> float:
        """0.0 if `user` may send one now (counted), else the seconds to wait;
        ``kind="lock"`` for write-lock changes, which have a budget of their own."""


class ActionFailed(Exception):
    """An IOC action that did not happen; str() is the message for the user."""


class ActionDenied(ActionFailed):
    """An IOC action refused before it was requested (the user may not operate any more)."""


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
        ioc: IocControl | None = None,
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
        self._inbox = bytearray()
        # Encoded input the fast path could not send whole, and what was typed: goes first.
        self._unsent: tuple[bytes, bytes] | None = None
        self._wakeup = trio.Event()
        self._eof = self._detached = False
        self._paused = False
        self._discarding = False  # procServ stalled: typed input is dropped, escapes work
        self._progress = trio.current_time()  # when queued input last moved
        self._send_scope = trio.CancelScope()
        self._told: set[str] = set()
        self._encoder = InputEncoder()
        self._on_yes: Callable[[], None] | None = None
        self._no_text = "not sent"  # what answering no to the pending question means
        self._stale: questions.Staleness | None = None  # why the question stopped being true
        self._asked = trio.Event()  # set while a question is pending
        # Typeahead: the pending question, the input chunk it was asked in, the chunk
        # being read now, and whether that chunk holds one key (and an Enter) only.
        self._question = ""
        self._chunk = self._asked_in = 0
        self._lone_key = True
        self._actions: list[str] = []
        self._prefix_deadline: float | None = None
        self._last_input = trio.current_time()
        self._handlers: dict[type[escape.Event], Callable[[escape.Event], None]] = {
            escape.Data: self._on_data,
            escape.Guarded: self._on_guarded,
            escape.Answer: self._on_answer,
            escape.Command: self._on_command,
            escape.LineStart: self._on_line_start,
            escape.Echo: self._on_echo,
            escape.Line: self._on_line,
            escape.Cancelled: self._on_cancelled,
            escape.Unknown: self._on_unknown,
        }

    @property
    def live(self) -> ConsoleConfig:
        """The console's settings in force now: procServ keys, idle timeout and input
        auditing follow a reload at once (the escape and replay stay as attached)."""
        current = self._current() if self._current is not None else None
        return current if current is not None else self.settings

    # -- called from the SSH layer (synchronous, never blocks) -----------
    def feed(self, data: bytes) -> None:
        """Input from the user."""
        if self._detached:
            return
        now = trio.current_time()
        self._last_input = now
        self.viewer.last_input = time.time()
        self._chunk += 1
        self._lone_key = len(data.rstrip(b"\r\n\0")) <= 1
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
        if self._on_yes is not None:
            self._on_yes = self._stale = None
            self.notice(f"question withdrawn: you left {self.console.name}")
        self._detached = True
        self._wakeup.set()

    # -- the session task --------------------------------------------------
    def attach(self, *, write: bool = True, force: bool = False) -> None:
        """Join the console: the header, an optional replay, then its output from now on."""
        console = self.console
        if self.settings.replay:
            self._replay(self.settings.replay)
        console.attach(self.viewer, write=write, force=force)
        self.notice(self._header())
        if self.ioc is not None and self._offer_start():
            return
        if not console.up:
            self.notice(f"{console.name} is down; waiting for it")

    def _offer_start(self) -> bool:
        """An IOC whose unit is stopped: say so, and offer to start it to an operator."""
        assert self.ioc is not None
        if self.console.up:  # connected to procServ: running, whatever the last poll said
            return False
        state = self.ioc.describe().state
        if state not in ("stopped", "failed"):
            return False
        name = self.console.name
        if self.ioc.may_operate and self.pty:
            self._on_yes, self._no_text = (lambda: self._schedule("start")), "not started"
            self._stale = questions.start_offer(self.console, self.ioc)
            self.parser.expect_answer()
            self.ask(f"IOC {name} is {state}. Start it? [y/N]")
        elif self.ioc.may_operate:
            self.notice(f"IOC {name} is {state}; ssh ... start {name} starts it")
        else:
            self.notice(f"IOC {name} is {state}; someone in its operate list can start it")
        return True

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
                nursery.start_soon(self._watch_stall)
                nursery.start_soon(self._watch_question)
                await self._pump()
                nursery.cancel_scope.cancel()
        finally:
            self.console.detach(self.viewer)
        return 0

    async def _pump(self) -> None:
        while True:
            with trio.move_on_at(self._deadline()):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            self._check_timers()
            while self._unsent or self._inbox:
                with trio.CancelScope() as self._send_scope:
                    if self._detached:  # what was typed before ^Ec. still goes, if it can
                        self._send_scope.deadline = trio.current_time() + 1.0
                    if self._unsent:
                        (encoded, typed), self._unsent = self._unsent, None
                    else:
                        typed = self._take(SEND_CHUNK)
                        encoded = self._encoder.encode(typed)
                    await self._send(encoded, typed)
                if self._send_scope.cancelled_caught:  # detached from a hung IOC
                    self._inbox.clear()
                    break
                self._progress = trio.current_time()
            while self._actions:
                await self._act(self._actions.pop(0))
            if self._eof or self._detached:
                return

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
                self._on_guarded(escape.Guarded(held[0]))
            else:
                self._on_data(escape.Data(held))
        timeout = self.live.writer_idle_timeout
        idle = now - self._last_input
        if timeout is not None and self.console.lock.writer is self.viewer and idle >= timeout:
            self.console.idle_release(self.viewer, idle)

    async def _watch_stall(self) -> None:
        """procServ takes no input (a hung IOC): read the user again, so escapes such as
        ``^Ec.`` work, and discard what they type until the queue moves."""
        while True:
            await trio.sleep(STALL_TIMEOUT / 4)
            stalled = trio.current_time() - self._progress >= STALL_TIMEOUT
            if self._paused and stalled and not self._discarding:
                self._discarding = True
                self.notice(f"{self.console.name} takes no input: discarding what you type")
                self._paused = False
                self.channel.resume_reading()

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._inbox[:size])
        del self._inbox[:size]
        if self._paused and len(self._inbox) < INPUT_LOW:
            self._paused = False
            self.channel.resume_reading()
        return chunk

    async def _send(self, encoded: bytes, typed: bytes) -> None:
        if await self.console.send_input(encoded):
            self._sent(typed)
        else:
            self._tell_once("down", f"{self.console.name} is down; input discarded")

    def _send_at_once(self, typed: bytes) -> bool:
        """The fast path, when nothing is queued: send now, from the SSH callback.

        A keystroke then reaches procServ without waiting for the pump task's turn
        (one trio scheduler round less). What the socket does not take goes first
        in the pump's queue. False (nothing done) when a send is under way.
        """
        if len(typed) > SEND_CHUNK or not self.console.may_send_now():
            return False
        encoded = self._encoder.encode(typed)
        sent = self.console.send_now(encoded)
        if sent == len(encoded):
            self._progress = trio.current_time()
            self._sent(typed)
        else:
            self._unsent = (encoded[sent:], typed)
        return True

    def _sent(self, typed: bytes) -> None:
        """``typed`` reached procServ."""
        self._told.discard("down")
        if self.live.audit_input:
            data = typed.decode("utf-8", "backslashreplace")
            self.console.audit_event("input", self.viewer, data=data)

    # -- parsing the user's input -----------------------------------------
    def _process(self) -> None:
        while True:
            guarded = self._guarded()
            if guarded != self.parser.guarded:
                self.parser.guarded = guarded
            event = self.parser.next_event()
            if event is None or self._detached:
                return
            self._handlers[type(event)](event)

    def _guarded(self) -> frozenset[int]:
        """The keys procServ acts on now (its greeting names them), for a writer."""
        if not self.console.lock.may_write(self.viewer):
            return frozenset()
        return self.console.keys.guarded(child_down=self.console.child_running is False)

    def _on_data(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Data)
        if event.data:
            self._queue_input(event.data)

    def _queue_input(self, data: bytes) -> None:
        if not self.console.lock.may_write(self.viewer):
            self._refuse_input()
            return
        if self._discarding:
            if self._inbox:
                return
            self._discarding = False  # the queue moved again
        if not self._inbox and self._unsent is None and self._send_at_once(data):
            return
        self._inbox += data
        if len(self._inbox) >= INPUT_HIGH and not self._paused:
            self._paused, self._progress = True, trio.current_time()
            self.channel.pause_reading()

    def _refuse_input(self) -> None:
        if self.role is not Role.RW:
            self._tell_once("ro", "read-only: your input is not sent")
        else:
            self._tell_once("watch", f"watching: your input is not sent ({self.prefix}a to write)")

    def _on_guarded(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Guarded)
        key = event.byte
        what = self.console.keys.describe(key)
        policy = self.live.procserv_keys
        if policy == "confirm" and not self.pty:
            policy = "block"  # nobody to ask: a script gets `restart NAME` instead
        if policy != "confirm":
            self.parser.cancel_answer()  # no question is asked
        if policy == "block":
            name = procserv.key_name(key)
            self.notice(f"{name} is not sent: blocked on {self.console.name}")
            self.console.log_event(f"{self.user} sent {name}: blocked")
            self._audit_key(key, "blocked")
        elif policy == "pass":
            self._send_key(key, what)
        else:
            self._on_yes, self._no_text = (lambda: self._send_key(key, what)), "not sent"
            self._stale = questions.procserv_key(self.console, self.viewer, what)
            self.ask(f"Send {what} to IOC {self.console.name}? [y/N]")

    def _send_key(self, key: int, what: str) -> None:
        self.console.log_event(f"{self.user} sent {what}")
        self._audit_key(key, "sent")
        self._queue_input(bytes([key]))

    def _audit_key(self, key: int, action: str) -> None:
        name = procserv.key_name(key)
        self.console.audit_event("procserv_key", self.viewer, key=name, action=action)

    def ask(self, question: str) -> None:
        """Show a [y/N] question; only a key typed after it was shown answers it."""
        self._question, self._asked_in = question, self._chunk
        self._asked.set()
        self.channel.write_notice(self._line_start() + question.encode() + b" ")

    async def _watch_question(self) -> None:
        """Withdraw a pending question that stopped being true (``questions``)."""
        while True:
            await self._asked.wait()
            self._asked = trio.Event()
            while self._on_yes is not None:
                reason = self._stale() if self._stale is not None else None
                if reason is not None:
                    self._withdraw(reason)
                    break
                await trio.sleep(questions.RECHECK)

    def _withdraw(self, reason: str, typed: int = 0) -> None:
        """Withdraw the pending question, saying why (and that `typed` bytes taken as
        its answer were not sent): what is typed next goes on as with no question."""
        self._on_yes = self._stale = None
        self.parser.cancel_answer()
        lost = f"; the {typed} byte(s) typed as its answer were not sent" if typed else ""
        self.notice(f"question withdrawn: {reason}{lost}")

    def _typeahead(self) -> bool:
        """The answer came with the input that raised the question, or in the middle
        of more input (a paste): it was typed before the question was shown."""
        return self._chunk == self._asked_in or not self._lone_key

    def _on_answer(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Answer)
        reason = self._stale() if self._on_yes is not None and self._stale is not None else None
        if reason is not None:
            self._withdraw(reason, typed=1 + self.parser.discard_unread())
            return
        if self._on_yes is not None and self._typeahead():
            dropped = 1 + self.parser.discard_unread()
            self.parser.expect_answer()
            self.channel.write_notice(b"\r\n" if self.pty else b"\n")
            when = (
                "typed before the question was shown"
                if self._chunk == self._asked_in
                else "came together (a paste or typeahead), not one key"
            )
            self.notice(f"{dropped} byte(s) {when}: discarded; press y or n")
            self.ask(self._question)
            return
        on_yes, self._on_yes, self._stale = self._on_yes, None, None
        yes = event.key in ("y", "Y")
        self.channel.write_notice(self._echo_answer(event.key))
        if on_yes is not None and yes:
            on_yes()
        elif on_yes is not None:
            self.notice(self._no_text)

    def _echo_answer(self, key: str) -> bytes:
        shown = key if key.isprintable() else ""
        return shown.encode() + (b"\r\n" if self.pty else b"\n")

    # -- escape commands ------------------------------------------------------
    def _backed_up(self) -> bool:
        """The user is not reading what we send: answer no more commands for now."""
        if self.channel.buffered() < self.viewer.limit:
            self._told.discard("backed-up")
            return False
        self._tell_once("backed-up", "output backed up: escape commands ignored until you read")
        return True

    def _on_command(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Command)
        key = event.key
        if key != "." and self._backed_up():
            return
        if key == ".":
            self._detached = True
            self.notice(f"detached from {self.console.name}")
            self._send_scope.cancel()  # a send stuck on a hung IOC must not keep us
            self._wakeup.set()
        elif key == "?":
            self.text(self.help_text())
        elif key in "afs":
            self._lock_command(key)
        elif key == "w":
            self._who()
        elif key in "rp":
            self._replay(REPLAY_SHORT if key == "r" else REPLAY_LONG)
        elif key == "i":
            self._info()

    def _lock_command(self, key: str) -> None:
        console = self.console
        changes = key in "af" or console.lock.writer is self.viewer  # logged and audited
        if self.role is Role.RW and changes and not self._may_change_lock():
            return
        if key == "s":
            console.spy(self.viewer)
        elif self.role is not Role.RW:
            self.notice("read-only: you cannot write to this console")
        elif key == "a":
            console.request_write(self.viewer)
        else:
            console.force_write(self.viewer)

    def _who(self) -> None:
        now = time.time()
        rows = [(self.console.name, entry) for entry in self.console.who(now=now)]
        self.text(views.who_table(rows, now=now, console_column=False))

    def _replay(self, lines: int) -> None:
        data = self.console.scrollback.last_lines(lines)
        self.notice(f"last {lines} lines of {self.console.name}")
        if data:
            self.channel.write(data if data.endswith(b"\n") else data + b"\r\n")
        self.notice("end of replay")

    def _info(self) -> None:
        view = self.ioc.describe() if self.ioc is not None else views.ConsoleView(self.console)
        you = self.console.mode_of(self.viewer)
        self.text(views.status_text(view, now=time.time()) + f"you       {self.user}, {you}\n")

    def help_text(self) -> str:
        """The escapes this user may use, and only those."""
        p = self.prefix
        lines = [f"{p}.  detach", f"{p}?  this help"]
        if self.role is Role.RW and not self.console.lock.shared:
            lines += [f"{p}a  ask for write (queued if taken)", f"{p}f  force write"]
        lines += [f"{p}s  stop writing (spy)"] if self.role is Role.RW else []
        lines += [
            f"{p}w  who is attached",
            f"{p}r  replay the last {REPLAY_SHORT} lines",
            f"{p}p  replay the last {REPLAY_LONG} lines",
            f"{p}i  console and IOC info",
            f"{p}b  broadcast a message to this console's users",
            f"{p}n  write a note into the console log",
        ]
        if self.role is Role.RW:
            lines.append(f"{p}\\ooo  send the byte with octal code ooo")
        if self.ioc is not None and self.ioc.may_operate:
            lines.append(f"{p}!  IOC action: restart, start or stop (asks first)")
        if self.role is Role.RW:
            keys = sorted(self.console.keys.guarded(child_down=False))
            names = " ".join(procserv.key_name(key) for key in keys) or "none"
            lines.append(f"{names}  procServ keys: {self._key_policy_text()}")
        return "".join(line + "\n" for line in lines)

    def _key_policy_text(self) -> str:
        return {
            "confirm": "asks before sending",
            "pass": "sent (and logged)",
            "block": "blocked",
        }[self.live.procserv_keys]

    # -- line commands: broadcast, note, IOC action -----------------------
    _PROMPTS: ClassVar[dict[str, str]] = {
        "b": "broadcast: ",
        "n": "note: ",
        "!": "IOC action (restart, start, stop): ",
    }

    def _on_line_start(self, event: escape.Event) -> None:
        assert isinstance(event, escape.LineStart)
        self.channel.write_notice(self._line_start() + self._PROMPTS[event.key].encode())

    def _on_echo(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Echo)
        self.channel.write_notice(event.data)

    def _on_cancelled(self, event: escape.Event) -> None:
        self.channel.write_notice(b"\r\n" if self.pty else b"\n")
        self.notice("cancelled")

    def _on_line(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Line)
        self.channel.write_notice(b"\r\n" if self.pty else b"\n")
        text = "".join(c if c.isprintable() else "?" for c in event.text)
        if not text:
            self.notice("cancelled (empty)")
        elif event.key == "!":
            self._ioc_action(text)
        elif self._may_send_message():
            self._message(event.key, self._cut(text))

    def _cut(self, text: str) -> str:
        limit = self.messages.max_length
        if len(text) <= limit:
            return text
        self.notice(f"cut to {limit} characters")
        return text[:limit]

    def _message(self, key: str, text: str) -> None:
        """A broadcast (``b``) to everyone attached, or a note (``n``) into the logs."""
        if key == "b":
            self.console.announce(f"{self.user}: {text}")
            self.console.log_event(f"broadcast from {self.user}: {text}")
            self.console.audit_event("broadcast", self.viewer, text=text)
            return
        self.console.log_event(f"note from {self.user}: {text}")
        self.console.audit_event("note", self.viewer, text=text)
        if self.console.log is not None:
            self.notice("note written to the log")
        elif self.console.audit.enabled:
            self.notice("note written to the audit log")
        else:
            self.notice("no log on this console: the note is not kept")

    def _may_send_message(self) -> bool:
        """A broadcast or note within the user's budget (all their sessions share it)."""
        wait = self.messages.take(self.user, trio.current_time())
        if wait:
            self.notice(f"not sent: too many messages; try again in {math.ceil(wait)} s")
        return not wait

    def _may_change_lock(self) -> bool:
        """A write-lock change within the user's budget (each is a log and audit record)."""
        wait = self.messages.take(self.user, trio.current_time(), "lock")
        if wait:
            self.notice(f"not done: too many write-lock changes; try again in {math.ceil(wait)} s")
        return not wait

    def _ioc_action(self, verb: str) -> None:
        verb = verb.strip().lower()
        if verb not in IOC_VERBS:
            self.notice(f"unknown IOC action {verb[:20]!r}: use restart, start or stop")
        elif self.ioc is None:
            self.notice(f"{self.console.name} is not an IOC unit")
        elif not self.ioc.may_operate:
            self.notice(f"you may not operate {self.console.name}")
        else:
            self._on_yes, self._no_text = (lambda: self._schedule(verb)), "cancelled"
            self.parser.expect_answer()
            self.ask(f"{verb.capitalize()} IOC {self.console.name}? [y/N]")

    def _schedule(self, verb: str) -> None:
        self._actions.append(verb)
        self._wakeup.set()

    async def _act(self, verb: str) -> None:
        """A confirmed IOC action; this user sees it as everyone attached does."""
        assert self.ioc is not None
        try:
            await self.ioc.act(verb)
        except ActionDenied as exc:  # never requested: only this user is told
            self.notice(str(exc))
        except ActionFailed:  # announced, as the request was
            pass

    # -- output to this user ------------------------------------------------
    def notice(self, text: str) -> None:
        self.viewer.notice(text)

    def text(self, text: str) -> None:
        self.channel.write_notice(text_bytes(text, pty=self.pty))

    def _line_start(self) -> bytes:
        return b"\r\n" if self.pty else b""

    def _on_unknown(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Unknown)
        if self._backed_up():
            return
        key = event.key if event.key.isprintable() else f"\\x{ord(event.key[:1] or ' '):02x}"
        self.notice(f"unknown escape {self.prefix}{key}; {self.prefix}? for help")

    def _tell_once(self, what: str, text: str) -> None:
        if what not in self._told:
            self._told.add(what)
            self.notice(text)
