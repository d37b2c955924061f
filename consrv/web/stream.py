"""One browser watching one console over a WebSocket: read-only, bounded, re-checked.

Owns the stream's life: the console's scrollback first, then its output as it
comes (subscribed as a read-only `Viewer` in the same step as the scrollback is
taken, so nothing is missed or shown twice), consrv's notices (down/up) in the
same byte stream, a bounded send queue (a browser that falls behind by more than
its bound is dropped, and its page reconnects: the console never waits for it),
and the end: any frame from the browser closes the stream (1008: there is no
input path), and so does losing the right to see the console (checked against
the config in force every `RECHECK` seconds, and at once on a reload that evicts).
Knows nothing of HTTP routing or pages.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from consrv.access import Role
from consrv.console import Console, Viewer

logger = logging.getLogger(__name__)

RECHECK = 0.5  # seconds between two checks of the user's right to see the console
CLOSE_POLICY = 1008  # a frame from the browser, or no right to see the console
CLOSE_TOO_SLOW = 1013  # the browser fell behind: try again (the page reconnects)
CLOSE_GOING_AWAY = 1001
MAX_FRAME = 64 << 10
CLOSE_TIMEOUT = 1.0  # seconds the closing frame may take (a browser not reading gets none)


class QueueSink:
    """A viewer's sink: bytes queued for one WebSocket, never blocking the console."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._preloaded = 0  # scrollback still queued: not held against the bound
        self.ready = trio.Event()

    def preload(self, data: bytes) -> None:
        """The scrollback, queued first; only what comes after it counts as falling behind."""
        self.write(data)
        self._preloaded += len(data)

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        self.ready.set()

    def write_notice(self, data: bytes) -> None:
        self.write(data)

    def buffered(self) -> int:
        return self._size - self._preloaded

    def take(self, limit: int = MAX_FRAME) -> bytes:
        """Up to about `limit` queued bytes, oldest first (whole chunks)."""
        taken: list[bytes] = []
        size = 0
        while self._chunks and (not taken or size + len(self._chunks[0]) <= limit):
            chunk = self._chunks.popleft()
            taken.append(chunk)
            size += len(chunk)
        self._size -= size
        self._preloaded = max(0, self._preloaded - size)
        if not self._chunks:
            self.ready = trio.Event()
        return b"".join(taken)


class Stream:
    """The live view of `console` for `user`; `allowed()` asks the config in force."""

    def __init__(
        self,
        websocket: WebSocket,
        console: Console,
        *,
        user: str,
        peer: str,
        limit: int,
        send_timeout: float,
        allowed: Callable[[], Awaitable[bool]],
        sent: Callable[[int], None],
        dropped: Callable[[str], None],
    ) -> None:
        self.websocket, self.console, self.allowed, self.sent = websocket, console, allowed, sent
        self.send_timeout, self.dropped = send_timeout, dropped
        self.sink = QueueSink()
        self.viewer = Viewer(self.sink, user=user, role=Role.RO, limit=limit, login="web")
        self.viewer.peer = peer
        self.ended: tuple[int, str] | None = None
        self.viewer.on_evict = lambda: self.end(CLOSE_POLICY, "no longer shown")

    def end(self, code: int, reason: str) -> None:
        if self.ended is None:
            self.ended = (code, reason)
        self.sink.ready.set()

    async def run(self) -> None:
        """Serve until the browser leaves, sends anything, is too slow or loses access."""
        # Attach and snapshot with no checkpoint between: the scrollback holds exactly
        # what came before this viewer's first delivered byte.
        self.console.attach(self.viewer)
        self.sink.preload(self.console.scrollback.data())
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._listen)
                nursery.start_soon(self._recheck)
                await self._send_loop()
                nursery.cancel_scope.cancel()
        finally:
            self.console.detach(self.viewer)
        code, reason = self.ended or (CLOSE_GOING_AWAY, "")
        if code != CLOSE_GOING_AWAY:
            logger.info(
                "%s: web stream of %s closed: %s", self.console.name, self.viewer.user, reason
            )
        await self._close(code, reason)

    async def _send_loop(self) -> None:
        while self.ended is None:
            if self.viewer.dropped_total or self.viewer.notices_dropped:
                self.end(CLOSE_TOO_SLOW, "too slow: dropped")
                self.dropped("behind")
                break
            with trio.move_on_after(RECHECK):
                await self.sink.ready.wait()
            data = self.sink.take()
            if data and self.ended is None:
                if not await self._send(data):
                    break
                self.sent(len(data))

    async def _recheck(self) -> None:
        """Every RECHECK s: may the user still see the console? (Asking the directory may
        take a while: the send loop does not wait for it.)"""
        while self.ended is None:
            await trio.sleep(RECHECK)
            if not await self.allowed():
                self.end(CLOSE_POLICY, "no longer shown")

    async def _send(self, data: bytes) -> bool:
        """One frame out; False if the browser is gone or stopped reading (the end is set).

        hypercorn shields its socket writes from cancellation, so the timeout here
        cannot interrupt a write to a browser that stopped reading: the kernel does,
        with ``TCP_USER_TIMEOUT`` set to the same time on the listener (server.py),
        and a write that took that long counts as "not reading" however it ended.
        """
        started = trio.current_time()
        gone = False
        try:
            with trio.move_on_after(self.send_timeout):
                await self.websocket.send_bytes(data)
        except (WebSocketDisconnect, OSError):  # the browser went away meanwhile
            gone = True
        if trio.current_time() - started >= self.send_timeout:
            self.ended = (CLOSE_TOO_SLOW, "too slow: not reading")  # over a disconnect seen
            self.dropped("not_reading")
            return False
        if gone:
            self.end(CLOSE_GOING_AWAY, "")
            return False
        return self.ended is None or self.ended[0] != CLOSE_GOING_AWAY

    async def _listen(self) -> None:
        """Any frame from the browser ends the stream (1008); a disconnect ends it quietly."""
        try:
            message = await self.websocket.receive()
        except WebSocketDisconnect:
            message = {"type": "websocket.disconnect"}
        if message["type"] == "websocket.disconnect":
            self.end(CLOSE_GOING_AWAY, "")
        else:
            self.end(CLOSE_POLICY, "the console view takes no input")

    async def _close(self, code: int, reason: str) -> None:
        # Bounded: a browser that stopped reading takes no closing frame either.
        with (
            trio.move_on_after(CLOSE_TIMEOUT),
            contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect),  # already gone
        ):
            await self.websocket.close(code, reason)
