"""A peer's console in a gateway's browser view: one WebSocket fed by the gateway's link.

Owns the stream of a console on another host: the gateway (through the
`contracts.FleetView` the daemon wired, never by importing fleet/) runs a read-only
attach on the console's own host under the user's per-hop identity, so that host
judges (its roles, revocation, audit with ``via``; a reload there that takes the
user's right away ends the stream). Its output goes into a bounded queue: when the
browser falls behind by more than the bound, the peer's channel is paused (only
this stream's: the link and the other users go on) and resumed once the browser has
taken it. A browser that takes no frame for `send_timeout` seconds is dropped as on a
host (`stream.Stream`: 1013 "too slow: not reading", counted by `dropped`). Any frame
from the browser closes the stream (1008). Knows nothing of asyncssh or routing.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio
from starlette.websockets import WebSocket, WebSocketDisconnect

from consrv.contracts import FleetView, Input, Login
from consrv.web.stream import CLOSE_POLICY, CLOSE_TIMEOUT, CLOSE_TOO_SLOW, RECHECK, QueueSink

logger = logging.getLogger(__name__)

CLOSE_NORMAL = 1000


class RemoteSink(QueueSink):
    """`session.Channel` for the gateway's bridge: output queued for the browser; the
    bridge pauses the peer while `buffered()` is over its mark, and `drained()` (on the
    reader it hands over) resumes it."""

    def __init__(self) -> None:
        super().__init__()
        self.reader: Input | None = None

    def pause_reading(self) -> None:
        pass  # the browser sends nothing: there is no input to pause

    def resume_reading(self) -> None:
        pass


@dataclass(frozen=True)
class Pace:
    """How long a frame may take (``web.limits.send_timeout``, as the listener's
    ``TCP_USER_TIMEOUT``) and where bytes sent and drops are counted (web/stats.py)."""

    send_timeout: float
    sent: Callable[[int], None]
    dropped: Callable[[str], None]


async def serve_remote(
    websocket: WebSocket,
    fleet: FleetView,
    login: Login,
    target: str,
    allowed: Callable[[], bool],
    pace: Pace,
) -> None:
    """Stream `target` from its host until the host ends it, the browser goes or stops
    reading, or `allowed()` (still signed in, by the gateway's config) turns false."""
    sink = RemoteSink()
    ended = trio.Event()

    def take_reader(reader: Input) -> None:
        sink.reader = reader

    async def run() -> None:
        status = await fleet.fleet_stream(login, target, sink, take_reader)
        logger.info("web: %s's stream of %s ended (status %d)", login.user, target, status)
        ended.set()

    end: tuple[int, str] | None = None  # how to close (none if closed by a task below)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        nursery.start_soon(_close_on_frame, websocket, nursery.cancel_scope)
        nursery.start_soon(_recheck, allowed, websocket, nursery.cancel_scope)
        end = await _send(websocket, sink, ended, pace)
        nursery.cancel_scope.cancel()
    if end is not None:
        if end[0] == CLOSE_TOO_SLOW:
            logger.info("%s: web stream of %s closed: %s", target, login.user, end[1])
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            with trio.move_on_after(CLOSE_TIMEOUT):  # a browser not reading gets none
                await websocket.close(*end)


async def _send(
    websocket: WebSocket, sink: RemoteSink, ended: trio.Event, pace: Pace
) -> tuple[int, str] | None:
    """Frames out until the host ends the stream; how to close (None: the browser went)."""
    while True:
        if not sink.buffered():
            if sink.reader is not None:
                sink.reader.drained()  # the peer may send again
            if ended.is_set():
                return CLOSE_NORMAL, "ended by its host"
            with trio.move_on_after(RECHECK):
                await sink.ready.wait()
            continue
        data, started, gone = sink.take(), trio.current_time(), False
        try:  # as Stream._send: the kernel ends a write hypercorn shields from the timeout
            with trio.move_on_after(pace.send_timeout):
                await websocket.send_bytes(data)
        except (WebSocketDisconnect, OSError, RuntimeError):
            gone = True
        if trio.current_time() - started >= pace.send_timeout:
            pace.dropped("not_reading")
            return CLOSE_TOO_SLOW, "too slow: not reading"
        if gone:
            return None
        pace.sent(len(data))


async def _close_on_frame(websocket: WebSocket, scope: trio.CancelScope) -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await websocket.receive()  # a frame (there is no input path) or the browser going
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(CLOSE_POLICY, "read-only")
    scope.cancel()


async def _recheck(
    allowed: Callable[[], bool], websocket: WebSocket, scope: trio.CancelScope
) -> None:
    while True:  # nothing signals a sign-out or an expiry: it is looked at every RECHECK s
        await trio.sleep(RECHECK)
        if not allowed():
            break
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(CLOSE_POLICY, "no longer shown")
    scope.cancel()
