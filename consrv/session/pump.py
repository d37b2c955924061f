"""A session's input pump: console input queued, encoded for procServ and sent with
back-pressure on the user's channel.

Owns the queue of one session's console input (only what the session may write
reaches it), the fast path that sends a keystroke from the channel's callback when
nothing is queued, pausing the channel above `INPUT_HIGH` bytes (so a large paste
flows at procServ's pace and loses nothing), and a stalled procServ: the user is
read again and what they type is dropped, so escapes such as ``^Ec.`` still work.
Knows no escapes and no SSH: the session hands it bytes and runs it as a task.
"""

from __future__ import annotations

import trio

from consrv.access import Role
from consrv.protocol.telnet import InputEncoder
from consrv.session.base import SessionCore

# The input queue is paused above HIGH bytes and resumed below LOW.
INPUT_HIGH = 64 * 1024
INPUT_LOW = 16 * 1024
SEND_CHUNK = 4096
# Queued input that has not moved for this long means procServ takes no input.
STALL_TIMEOUT = 2.0


class InputPump:
    """One session's console input, from the user's keystrokes to procServ's socket."""

    def __init__(self, session: SessionCore) -> None:
        self.s = session
        self.inbox = bytearray()
        # Encoded input the fast path could not send whole, and what was typed: goes first.
        self.unsent: tuple[bytes, bytes] | None = None
        self._paused = False
        self._discarding = False  # procServ stalled: typed input is dropped, escapes work
        self._progress = trio.current_time()  # when queued input last moved
        self._send_scope = trio.CancelScope()
        self._encoder = InputEncoder()

    def queue(self, data: bytes) -> None:
        """Console input typed by the user: sent if this session may write, else refused."""
        s = self.s
        if not s.console.lock.may_write(s.viewer):
            self._refuse()
            return
        if self._discarding:
            if self.inbox:
                return
            self._discarding = False  # the queue moved again
        if not self.inbox and self.unsent is None and self._send_at_once(data):
            return
        self.inbox += data
        if len(self.inbox) >= INPUT_HIGH and not self._paused:
            self._paused, self._progress = True, trio.current_time()
            s.channel.pause_reading()

    def _refuse(self) -> None:
        s = self.s
        if s.role is not Role.RW:
            s.tell_once("ro", "read-only: your input is not sent")
        else:
            s.tell_once("watch", f"watching: your input is not sent ({s.prefix}a to write)")

    def cancel_send(self) -> None:
        """A send stuck on a hung IOC must not keep a user who detaches."""
        self._send_scope.cancel()

    async def run(self) -> None:
        """Send what is queued, run confirmed actions, until EOF or detach."""
        s = self.s
        while True:
            await s.wait_for_input()
            while self.unsent or self.inbox:
                with trio.CancelScope() as self._send_scope:
                    if s.detached:  # what was typed before ^Ec. still goes, if it can
                        self._send_scope.deadline = trio.current_time() + 1.0
                    if self.unsent:
                        (encoded, typed), self.unsent = self.unsent, None
                    else:
                        typed = self._take(SEND_CHUNK)
                        encoded = self._encoder.encode(typed)
                    await self._send(encoded, typed)
                if self._send_scope.cancelled_caught:  # detached from a hung IOC
                    self.inbox.clear()
                    break
                self._progress = trio.current_time()
            await s.actions.run_pending()
            if s.ended:
                return

    async def watch_stall(self) -> None:
        """procServ takes no input (a hung IOC): read the user again, so escapes such as
        ``^Ec.`` work, and discard what they type until the queue moves."""
        s = self.s
        while True:
            await trio.sleep(STALL_TIMEOUT / 4)
            stalled = trio.current_time() - self._progress >= STALL_TIMEOUT
            if self._paused and stalled and not self._discarding:
                self._discarding = True
                s.notice(f"{s.console.name} takes no input: discarding what you type")
                self._paused = False
                s.channel.resume_reading()

    def _take(self, size: int) -> bytes:
        chunk = bytes(self.inbox[:size])
        del self.inbox[:size]
        if self._paused and len(self.inbox) < INPUT_LOW:
            self._paused = False
            self.s.channel.resume_reading()
        return chunk

    async def _send(self, encoded: bytes, typed: bytes) -> None:
        if await self.s.console.send_input(encoded):
            self._sent(typed)
        else:
            self.s.tell_once("down", f"{self.s.console.name} is down; input discarded")

    def _send_at_once(self, typed: bytes) -> bool:
        """The fast path, when nothing is queued: send now, from the SSH callback.

        A keystroke then reaches procServ without waiting for the pump task's turn
        (one trio scheduler round less). What the socket does not take goes first
        in the pump's queue. False (nothing done) when a send is under way.
        """
        console = self.s.console
        if len(typed) > SEND_CHUNK or not console.may_send_now():
            return False
        encoded = self._encoder.encode(typed)
        sent = console.send_now(encoded)
        if sent == len(encoded):
            self._progress = trio.current_time()
            self._sent(typed)
        else:
            self.unsent = (encoded[sent:], typed)
        return True

    def _sent(self, typed: bytes) -> None:
        """``typed`` reached procServ."""
        s = self.s
        s.told.discard("down")
        if s.live.audit_input:
            data = typed.decode("utf-8", "backslashreplace")
            s.console.audit_event("input", s.viewer, data=data)
