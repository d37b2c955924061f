"""A session's escape interpreter: what each event of the ``^Ec`` parser does.

Owns the answers to the user's escapes (detach, help, write lock, who, replay,
info, the prompts of broadcast / note / IOC action), procServ's guarded keys by
the console's ``procserv_keys`` policy (confirm / pass / block, always logged),
and [y/N] questions: only a key typed after a question was shown answers it.
Console bytes go to the session's `InputPump`; actions and messages to its
`SessionActions`. Knows no SSH.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

import trio

from consrv import questions, views
from consrv.access import Role
from consrv.protocol import escape, procserv
from consrv.session.base import SessionCore

REPLAY_SHORT, REPLAY_LONG = 20, 60


class EscapeInterpreter:
    """One session's escape events, each to its handler."""

    _PROMPTS: ClassVar[dict[str, str]] = {
        "b": "broadcast: ",
        "n": "note: ",
        "!": "IOC action (restart, start, stop): ",
    }

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self._on_yes: Callable[[], None] | None = None
        self._no_text = "not sent"  # what answering no to the pending question means
        self._stale: questions.Staleness | None = None  # why the question stopped being true
        self._asked = trio.Event()  # set when a question is asked
        # Typeahead: the pending question, the input chunk it was asked in, the chunk
        # being read now, and whether that chunk holds one key (and an Enter) only.
        self._question = ""
        self._chunk = self._asked_in = 0
        self._lone_key = True
        self._handlers: dict[type[escape.Event], Callable[[escape.Event], None]] = {
            escape.Data: self.on_data,
            escape.Guarded: self.on_guarded,
            escape.Answer: self._on_answer,
            escape.Command: self._on_command,
            escape.LineStart: self._on_line_start,
            escape.Echo: self._on_echo,
            escape.Line: self._on_line,
            escape.Cancelled: self._on_cancelled,
            escape.Unknown: self._on_unknown,
        }

    def typed(self, data: bytes) -> None:
        """A chunk of input arrives (for telling typeahead from an answer)."""
        self._chunk += 1
        self._lone_key = len(data.rstrip(b"\r\n\0")) <= 1

    def handle(self, event: escape.Event) -> None:
        self._handlers[type(event)](event)

    def on_data(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Data)
        if event.data:
            self.s.pump.queue(event.data)

    # -- procServ's keys ---------------------------------------------------------
    def on_guarded(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Guarded)
        s, key = self.s, event.byte
        what = s.console.keys.describe(key)
        policy = s.live.procserv_keys
        if policy == "confirm" and not s.pty:
            policy = "block"  # nobody to ask: a script gets `restart NAME` instead
        if policy != "confirm":
            s.parser.cancel_answer()  # no question is asked
        if policy == "block":
            name = procserv.key_name(key)
            s.notice(f"{name} is not sent: blocked on {s.console.name}")
            s.console.log_event(f"{s.user} sent {name}: blocked")
            self._audit_key(key, "blocked")
        elif policy == "pass":
            self._send_key(key, what)
        else:
            self._on_yes, self._no_text = (lambda: self._send_key(key, what)), "not sent"
            self._stale = questions.procserv_key(s.console, s.viewer, what)
            self.ask(f"Send {what} to IOC {s.console.name}? [y/N]")

    def _send_key(self, key: int, what: str) -> None:
        self.s.console.log_event(f"{self.s.user} sent {what}")
        self._audit_key(key, "sent")
        self.s.pump.queue(bytes([key]))

    def _audit_key(self, key: int, action: str) -> None:
        name = procserv.key_name(key)
        self.s.console.audit_event("procserv_key", self.s.viewer, key=name, action=action)

    # -- questions ---------------------------------------------------------------
    def confirm(
        self,
        question: str,
        on_yes: Callable[[], None],
        no_text: str,
        stale: questions.Staleness | None = None,
    ) -> None:
        """Ask ``question``; ``on_yes`` runs on a y, ``no_text`` is said on anything else;
        ``stale()`` says why the question is no longer true (it is then withdrawn)."""
        self._on_yes, self._no_text, self._stale = on_yes, no_text, stale
        self.s.parser.expect_answer()
        self.ask(question)

    def ask(self, question: str) -> None:
        """Show a [y/N] question; only a key typed after it was shown answers it."""
        self._question, self._asked_in = question, self._chunk
        self._asked.set()
        self.s.channel.write_notice(self.s.line_start() + question.encode() + b" ")

    async def watch_questions(self) -> None:
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
        self.s.parser.cancel_answer()
        lost = f"; the {typed} byte(s) typed as its answer were not sent" if typed else ""
        self.s.notice(f"question withdrawn: {reason}{lost}")

    def evicted(self) -> None:
        """The console sent the user away: a pending question goes with them."""
        if self._on_yes is not None:
            self._on_yes = self._stale = None
            self.s.notice(f"question withdrawn: you left {self.s.console.name}")

    def _typeahead(self) -> bool:
        """The answer came with the input that raised the question, or in the middle
        of more input (a paste): it was typed before the question was shown."""
        return self._chunk == self._asked_in or not self._lone_key

    def _on_answer(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Answer)
        s = self.s
        reason = self._stale() if self._on_yes is not None and self._stale is not None else None
        if reason is not None:
            self._withdraw(reason, typed=1 + s.parser.discard_unread())
            return
        if self._on_yes is not None and self._typeahead():
            dropped = 1 + s.parser.discard_unread()
            s.parser.expect_answer()
            s.channel.write_notice(b"\r\n" if s.pty else b"\n")
            when = (
                "typed before the question was shown"
                if self._chunk == self._asked_in
                else "came together (a paste or typeahead), not one key"
            )
            s.notice(f"{dropped} byte(s) {when}: discarded; press y or n")
            self.ask(self._question)
            return
        on_yes, self._on_yes, self._stale = self._on_yes, None, None
        yes = event.key in ("y", "Y")
        s.channel.write_notice(self._echo_answer(event.key))
        if on_yes is not None and yes:
            on_yes()
        elif on_yes is not None:
            s.notice(self._no_text)

    def _echo_answer(self, key: str) -> bytes:
        shown = key if key.isprintable() else ""
        return shown.encode() + (b"\r\n" if self.s.pty else b"\n")

    # -- escape commands ---------------------------------------------------------
    def _backed_up(self) -> bool:
        """The user is not reading what we send: answer no more commands for now."""
        s = self.s
        if s.channel.buffered() < s.viewer.limit:
            s.told.discard("backed-up")
            return False
        s.tell_once("backed-up", "output backed up: escape commands ignored until you read")
        return True

    def _on_command(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Command)
        key = event.key
        if key != "." and self._backed_up():
            return
        if key == ".":
            self.s.detach()
        elif key == "?":
            self.s.text(self.help_text())
        elif key in "afs":
            self._lock_command(key)
        elif key == "w":
            self._who()
        elif key in "rp":
            self.replay(REPLAY_SHORT if key == "r" else REPLAY_LONG)
        elif key == "i":
            self._info()

    def _lock_command(self, key: str) -> None:
        s = self.s
        console = s.console
        changes = key in "af" or console.lock.writer is s.viewer  # logged and audited
        if s.role is Role.RW and changes and not s.actions.may_change_lock():
            return
        if key == "s":
            console.spy(s.viewer)
        elif s.role is not Role.RW:
            s.notice("read-only: you cannot write to this console")
        elif key == "a":
            console.request_write(s.viewer)
        else:
            console.force_write(s.viewer)

    def _who(self) -> None:
        now = time.time()
        rows = [(self.s.console.name, entry) for entry in self.s.console.who(now=now)]
        self.s.text(views.who_table(rows, now=now, console_column=False))

    def replay(self, lines: int) -> None:
        s = self.s
        data = s.console.scrollback.last_lines(lines)
        s.notice(f"last {lines} lines of {s.console.name}")
        if data:
            s.channel.write(data if data.endswith(b"\n") else data + b"\r\n")
        s.notice("end of replay")

    def _info(self) -> None:
        s = self.s
        view = s.ioc.describe() if s.ioc is not None else views.ConsoleView(s.console)
        you = s.console.mode_of(s.viewer)
        s.text(views.status_text(view, now=time.time()) + f"you       {s.user}, {you}\n")

    def help_text(self) -> str:
        """The escapes this user may use, and only those."""
        s, p = self.s, self.s.prefix
        lines = [f"{p}.  detach", f"{p}?  this help"]
        if s.role is Role.RW and not s.console.lock.shared:
            lines += [f"{p}a  ask for write (queued if taken)", f"{p}f  force write"]
        lines += [f"{p}s  stop writing (spy)"] if s.role is Role.RW else []
        lines += [
            f"{p}w  who is attached",
            f"{p}r  replay the last {REPLAY_SHORT} lines",
            f"{p}p  replay the last {REPLAY_LONG} lines",
            f"{p}i  console and IOC info",
            f"{p}b  broadcast a message to this console's users",
            f"{p}n  write a note into the console log",
        ]
        if s.role is Role.RW:
            lines.append(f"{p}\\ooo  send the byte with octal code ooo")
        if s.ioc is not None and s.ioc.may_operate:
            lines.append(f"{p}!  IOC action: restart, start or stop (asks first)")
        if s.role is Role.RW:
            keys = sorted(s.console.keys.guarded(child_down=False))
            names = " ".join(procserv.key_name(key) for key in keys) or "none"
            lines.append(f"{names}  procServ keys: {self._key_policy_text()}")
        return "".join(line + "\n" for line in lines)

    def _key_policy_text(self) -> str:
        return {
            "confirm": "asks before sending",
            "pass": "sent (and logged)",
            "block": "blocked",
        }[self.s.live.procserv_keys]

    # -- line commands: broadcast, note, IOC action ----------------------------------
    def _on_line_start(self, event: escape.Event) -> None:
        assert isinstance(event, escape.LineStart)
        self.s.channel.write_notice(self.s.line_start() + self._PROMPTS[event.key].encode())

    def _on_echo(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Echo)
        self.s.channel.write_notice(event.data)

    def _on_cancelled(self, event: escape.Event) -> None:
        self.s.channel.write_notice(b"\r\n" if self.s.pty else b"\n")
        self.s.notice("cancelled")

    def _on_line(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Line)
        s = self.s
        s.channel.write_notice(b"\r\n" if s.pty else b"\n")
        text = "".join(c if c.isprintable() else "?" for c in event.text)
        if not text:
            s.notice("cancelled (empty)")
        elif event.key == "!":
            s.actions.ioc_action(text)
        else:
            s.actions.send_message(event.key, text)

    def _on_unknown(self, event: escape.Event) -> None:
        assert isinstance(event, escape.Unknown)
        if self._backed_up():
            return
        p = self.s.prefix
        key = event.key if event.key.isprintable() else f"\\x{ord(event.key[:1] or ' '):02x}"
        self.s.notice(f"unknown escape {p}{key}; {p}? for help")
