"""Serving ``/metrics``: hypercorn's trio HTTP/1.1 server behind a slowloris guard.

Owns the metrics listener (``metrics.listen``: its own address and server, whether
or not the web view is on), one request per connection, the limits below, and
serving again after a failure (as the web view does, server.py). Knows no metric:
it serves the ASGI app daemon.py gives it (`consrv.metrics.MetricsApp`). Here, not
in metrics/, because the web stack stays in the web front.

The limits: at most `MAX_CONNECTIONS` at once, a new connection taking the place of
the oldest one still sending its request head (a scraper sends its request at once;
only a slowloris is still at it); `HEAD_TIMEOUT` for a head; `REQUEST_TIMEOUT` for
all. tests/security/test_metrics_slowloris.py holds them.

Why a guard in front of hypercorn rather than its settings: hypercorn has no cap on
connections, let alone one that evicts, and its ``read_timeout`` is per read (a head
sent a line every 0.5 s never ends). Its ``serve`` takes no per-connection hook, so
`_Guard` accepts each connection and hands it, wrapped in `_Connection` (which
knows when the head has ended), to hypercorn's own per-connection server
(``hypercorn.trio.tcp_server.TCPServer``, what ``serve`` runs for each one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import cast

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import Framework
from hypercorn.utils import wrap_app
from starlette.types import ASGIApp

from consrv.config import Endpoint

logger = logging.getLogger("consrv.metrics")

MAX_REQUEST = 8192  # bytes of a request head
# A scraper sends its whole request at once: one that takes longer is a slowloris.
HEAD_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0  # head, collecting and sending, all told
MAX_CONNECTIONS = 64
RESTART_DELAY = 1.0
HEAD_END = re.compile(rb"\n\r?\n")  # where h11 ends a head


class _Connection(trio.abc.HalfCloseableStream):
    """One accepted connection as hypercorn reads it, under its own cancel scope:
    ``HEAD_TIMEOUT`` until its request head has ended, then ``REQUEST_TIMEOUT`` from
    its start; evicting it cancels the scope. Sends have a deadline of their own
    (hypercorn shields them from cancellation)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = stream.socket  # hypercorn reads the addresses from it
        self.started = trio.current_time()
        self.scope = trio.CancelScope(deadline=self.started + HEAD_TIMEOUT)
        self.head_done = False
        self._tail = b""  # the last bytes read, for a head end split across reads

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self.stream.receive_some(max_bytes)
        if not self.head_done:
            seen = self._tail + data
            self._tail = seen[-2:]
            if not data or HEAD_END.search(seen) is not None:
                self.head_done = True
                self.scope.deadline = self.started + REQUEST_TIMEOUT
        return data

    def evict(self) -> None:
        self.scope.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with trio.CancelScope(deadline=self.started + REQUEST_TIMEOUT):
            await self.stream.send_all(data)
            return
        raise trio.BrokenResourceError("the client is not reading")

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


ServeConnection = Callable[[_Connection], Awaitable[None]]


class _Guard:
    """Admits connections: at most `MAX_CONNECTIONS`, evicting the oldest still
    sending its head for a new one; none longer than `REQUEST_TIMEOUT`."""

    def __init__(self, serve_connection: ServeConnection) -> None:
        self.serve_connection = serve_connection
        self.active = 0
        self.reading: dict[_Connection, None] = {}  # oldest first
        self.evicted = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.active >= MAX_CONNECTIONS and not self._evict_oldest():
            await stream.aclose()  # every place is answering a request
            return
        connection = _Connection(stream)
        self.active += 1
        self.reading[connection] = None
        try:
            with connection.scope:
                await self.serve_connection(connection)
        finally:
            self.active -= 1
            self.reading.pop(connection, None)
            await stream.aclose()  # hypercorn closes it too, but not when cancelled

    def _evict_oldest(self) -> bool:
        """Evict the connection that has been sending its head longest; False if none is."""
        while self.reading:
            oldest = next(iter(self.reading))
            del self.reading[oldest]
            if not oldest.head_done:
                oldest.evict()
                self.evicted += 1
                return True
        return False


def hypercorn_config() -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    errors = logging.getLogger("consrv.metrics.http")
    errors.setLevel(logging.WARNING)
    config.errorlog = errors
    config.keep_alive_max_requests = 1  # one request per connection: "Connection: close"
    config.h11_max_incomplete_size = MAX_REQUEST
    config.include_server_header = False
    return config


class MetricsServer:
    """Serves an ASGI app on the metrics listener until cancelled; a failure is logged
    and serving starts again on the same address after `RESTART_DELAY`."""

    def __init__(self, app: ASGIApp, serve_connection: ServeConnection | None = None) -> None:
        self.config = hypercorn_config()
        # Starlette's ASGIApp is hypercorn's ASGIFramework with looser types
        self.app = wrap_app(cast("Framework", app), self.config.wsgi_max_body_size, "asgi")
        self.context = WorkerContext(None)
        self.serve_connection = serve_connection or self._hypercorn
        self.restarts = 0

    async def _hypercorn(self, connection: _Connection) -> None:
        stream = cast("trio.SSLStream[trio.SocketStream]", connection)  # it reads .socket
        await TCPServer(self.app, self.config, self.context, {}, stream).run()

    async def serve(
        self,
        endpoint: Endpoint,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``endpoint`` (an OSError if it cannot); started() gets the bound address."""
        listeners = await trio.open_tcp_listeners(endpoint.port, host=endpoint.host)
        host, port = listeners[0].socket.getsockname()[:2]
        logger.info("metrics on http://%s/metrics", Endpoint(host, port))
        task_status.started((host, port))
        while True:
            try:
                # serve_listeners closes them when it ends: bound again on the very port
                listeners = listeners or await trio.open_tcp_listeners(port, host=endpoint.host)
                await trio.serve_listeners(_Guard(self.serve_connection).handle, listeners)
            except Exception:  # any failure of serving, or of binding again: logged, retried
                self.restarts += 1
                logger.exception("metrics failed; serving them again in %g s", RESTART_DELAY)
            listeners = []
            await trio.sleep(RESTART_DELAY)


async def serve_metrics(
    endpoint: Endpoint,
    app: ASGIApp,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` (``GET /metrics``) on ``endpoint`` until cancelled."""
    await MetricsServer(app).serve(endpoint, task_status=task_status)
