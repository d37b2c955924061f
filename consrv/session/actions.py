"""What a session's user does to others: IOC actions, broadcasts, notes, and the
budget their messages and write-lock changes are held to.

Owns asking before an IOC action (and offering to start a stopped IOC on attach),
running it once confirmed (from the session's task), and the broadcast (``^Ecb``)
and note (``^Ecn``) a user writes, each within the user's budget (`MessagePolicy`,
shared by all their sessions). Knows no escapes and no SSH.
"""

from __future__ import annotations

import math

import trio

from consrv import questions
from consrv.host.actions import IOC_VERBS, ActionDenied, ActionFailed
from consrv.session.base import SessionCore


class SessionActions:
    """One session's IOC actions and messages."""

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self._pending: list[str] = []  # confirmed IOC actions, run by the session's task

    # -- IOC actions -----------------------------------------------------------
    def offer_start(self) -> bool:
        """An IOC whose unit is stopped: say so, and offer to start it to an operator."""
        s = self.s
        assert s.ioc is not None
        if s.console.up:  # connected to procServ: running, whatever the last poll said
            return False
        state = s.ioc.describe().state
        if state not in ("stopped", "failed"):
            return False
        name = s.console.name
        if s.ioc.may_operate and s.pty:
            s.escapes.confirm(f"IOC {name} is {state}. Start it? [y/N]",
                              lambda: self.schedule("start"), "not started",
                              questions.start_offer(s.console, s.ioc))  # fmt: skip
        elif s.ioc.may_operate:
            s.notice(f"IOC {name} is {state}; ssh ... start {name} starts it")
        else:
            s.notice(f"IOC {name} is {state}; someone in its operate list can start it")
        return True

    def ioc_action(self, verb: str) -> None:
        """``^Ec!VERB``: asks first, runs once confirmed."""
        s = self.s
        verb = verb.strip().lower()
        if verb not in IOC_VERBS:
            s.notice(f"unknown IOC action {verb[:20]!r}: use restart, start or stop")
        elif s.ioc is None:
            s.notice(f"{s.console.name} is not an IOC unit")
        elif not s.ioc.may_operate:
            s.notice(f"you may not operate {s.console.name}")
        else:
            s.escapes.confirm(f"{verb.capitalize()} IOC {s.console.name}? [y/N]",
                              lambda: self.schedule(verb), "cancelled")  # fmt: skip

    def schedule(self, verb: str) -> None:
        self._pending.append(verb)
        self.s.wake()

    async def run_pending(self) -> None:
        while self._pending:
            await self._act(self._pending.pop(0))

    async def _act(self, verb: str) -> None:
        """A confirmed IOC action; this user sees it as everyone attached does."""
        s = self.s
        assert s.ioc is not None
        try:
            await s.ioc.act(verb)
        except ActionDenied as exc:  # never requested: only this user is told
            s.notice(str(exc))
        except ActionFailed:  # announced, as the request was
            pass

    # -- broadcasts and notes ------------------------------------------------------
    def send_message(self, key: str, text: str) -> None:
        """A broadcast (``b``) or a note (``n``), within the user's budget."""
        if self._may_send_message():
            self._message(key, self._cut(text))

    def _cut(self, text: str) -> str:
        limit = self.s.messages.max_length
        if len(text) <= limit:
            return text
        self.s.notice(f"cut to {limit} characters")
        return text[:limit]

    def _message(self, key: str, text: str) -> None:
        """A broadcast (``b``) to everyone attached, or a note (``n``) into the logs."""
        s = self.s
        console = s.console
        if key == "b":
            console.announce(f"{s.user}: {text}")
            console.log_event(f"broadcast from {s.user}: {text}")
            console.audit_event("broadcast", s.viewer, text=text)
            return
        console.log_event(f"note from {s.user}: {text}")
        console.audit_event("note", s.viewer, text=text)
        if console.log is not None:
            s.notice("note written to the log")
        elif console.audit.enabled:
            s.notice("note written to the audit log")
        else:
            s.notice("no log on this console: the note is not kept")

    def _may_send_message(self) -> bool:
        """A broadcast or note within the user's budget (all their sessions share it)."""
        wait = self.s.messages.take(self.s.user, trio.current_time())
        if wait:
            self.s.notice(f"not sent: too many messages; try again in {math.ceil(wait)} s")
        return not wait

    def may_change_lock(self) -> bool:
        """A write-lock change within the user's budget (each is a log and audit record)."""
        wait = self.s.messages.take(self.s.user, trio.current_time(), "lock")
        if wait:
            self.s.notice(
                f"not done: too many write-lock changes; try again in {math.ceil(wait)} s"
            )
        return not wait
