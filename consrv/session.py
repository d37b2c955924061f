"""One user on one console: the bridge between an SSH channel and a Console.

Owns the input path of one session: read-only input is dropped here and never
queued; read-write input is queued, encoded for procServ, and sent with
back-pressure (the channel is paused while the queue is full, so a large paste
flows at procServ's pace and loses nothing). Knows nothing of asyncssh: it
talks to the channel through the small ``Channel`` protocol.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from consrv.access import Role
from consrv.console import Console, Sink, Viewer
from consrv.protocol.telnet import InputEncoder

logger = logging.getLogger(__name__)

# The input queue is paused above HIGH bytes and resumed below LOW.
INPUT_HIGH = 64 * 1024
INPUT_LOW = 16 * 1024
SEND_CHUNK = 4096


class Channel(Sink, Protocol):
    """What a session needs of its SSH channel."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Session:
    """A user attached to a console until they leave, the channel closes, or it is cancelled."""

    def __init__(
        self,
        console: Console,
        channel: Channel,
        *,
        user: str,
        role: Role,
        viewer_buffer: int,
        pty: bool,
    ) -> None:
        self.console, self.channel, self.user, self.role = console, channel, user, role
        self.viewer = Viewer(channel, user=user, role=role, limit=viewer_buffer, pty=pty)
        self._inbox = bytearray()
        self._wakeup = trio.Event()
        self._eof = False
        self._paused = False
        self._told_read_only = False
        self._told_down = False
        self._encoder = InputEncoder()

    # -- called from the SSH layer (synchronous, never blocks) -----------
    def feed(self, data: bytes) -> None:
        """Input from the user."""
        if self.role is not Role.RW:
            self._refuse_input()
            return
        self._inbox += data
        self._wakeup.set()
        if len(self._inbox) >= INPUT_HIGH and not self._paused:
            self._paused = True
            self.channel.pause_reading()

    def eof(self) -> None:
        """The user closed their input: send what is queued, then end."""
        self._eof = True
        self._wakeup.set()

    def drained(self) -> None:
        """The channel's output buffer has room again."""
        self.viewer.flush_drop_notice()

    # -- the session task --------------------------------------------------
    def attach(self) -> None:
        """Join the console: the header, then its output from now on."""
        mode = "read-write" if self.role is Role.RW else "read-only"
        self.viewer.notice(f"attached to {self.console.name}, {mode}")
        if not self.console.up:
            self.viewer.notice(f"{self.console.name} is down; waiting for it")
        self.console.attach(self.viewer)
        self.console.log_event(f"attach {self.user} {self.role.value}")

    async def run(self) -> int:
        """After ``attach()``: pump input until EOF, then detach. Returns the exit status."""
        try:
            await self._pump_input()
        finally:
            self.console.detach(self.viewer)
            self.console.log_event(f"detach {self.user}")
        return 0

    async def _pump_input(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while self._inbox:
                await self._send(self._take(SEND_CHUNK))
            if self._eof:
                return

    def _take(self, size: int) -> bytes:
        chunk = bytes(self._inbox[:size])
        del self._inbox[:size]
        if self._paused and len(self._inbox) < INPUT_LOW:
            self._paused = False
            self.channel.resume_reading()
        return chunk

    async def _send(self, chunk: bytes) -> None:
        if await self.console.send_input(self._encoder.encode(chunk)):
            self._told_down = False
        elif not self._told_down:
            self._told_down = True
            self.viewer.notice(f"{self.console.name} is down; input discarded")

    def _refuse_input(self) -> None:
        if not self._told_read_only:
            self._told_read_only = True
            self.viewer.notice("read-only: your input is not sent")
