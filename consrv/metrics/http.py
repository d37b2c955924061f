"""Serving ``/metrics``: a small trio HTTP/1.1 responder with slowloris limits.

Owns answering one request per connection: collecting in the trio thread (no
object is read while a task changes it), formatting in a worker thread, at most
`MAX_CONNECTIONS` at once (a new connection takes the place of the oldest one still
sending its request head), and `HEAD_TIMEOUT` for a head, `REQUEST_TIMEOUT` for all.
Knows no metric: it serves a `CollectorRegistry`.

Why not hypercorn (already in the process for web/) or prometheus-client's server:
neither has these two limits (hypercorn's ``read_timeout`` is per read, so a head
sent a line every 0.5 s never ends; it has no cap with eviction), and
tests/security/test_metrics_slowloris.py holds them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from consrv.config import Endpoint

logger = logging.getLogger("consrv.metrics")

MAX_REQUEST = 8192
# A scraper sends its whole request at once: one that takes longer is a slowloris.
HEAD_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0  # head, collecting and sending, all told
MAX_CONNECTIONS = 64
INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    accept: str


def parse_request(head: bytes) -> Request | None:
    """The request line and Accept header of an HTTP/1.x request head; None if malformed."""
    lines = head.decode("latin-1").splitlines()
    parts = lines[0].split() if lines else []
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    accept = ""
    for line in lines[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == "accept":
            accept = value.strip()
    return Request(parts[0], parts[1].partition("?")[0], accept)


def http_response(status: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _text(status: str, text: str) -> bytes:
    return http_response(status, "text/plain; charset=utf-8", text.encode() + b"\n")


class _Snapshot:
    """Families collected already: formatting them needs no live object."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


class _Responder:
    """Answers one request per connection: collects in the trio thread, formats in a worker.

    Slow clients cannot keep a scrape out: at ``MAX_CONNECTIONS`` a new connection
    takes the place of the oldest one still sending its request head (a scraper
    sends its request at once; only a slowloris is still at it), and no head may
    take longer than ``HEAD_TIMEOUT``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.active = 0
        self.reading: dict[trio.CancelScope, None] = {}  # oldest first
        self.evicted = 0

    async def respond(self, head: bytes) -> bytes:
        request = parse_request(head)
        if request is None:
            return _text("400 Bad Request", "bad request")
        if request.method == "GET" and request.path == "/metrics":
            return await self._metrics(request.accept)
        if request.method == "GET" and request.path == "/":
            return http_response("200 OK", "text/html; charset=utf-8", INDEX)
        return _text("404 Not Found", "not found: try /metrics")

    async def _metrics(self, accept: str) -> bytes:
        encoder, content_type = choose_encoder(accept)
        try:
            snapshot = _Snapshot(list(self.registry.collect()))
            body = await trio.to_thread.run_sync(encoder, snapshot)
        except Exception:
            logger.exception("metrics: collecting failed")
            return _text("500 Internal Server Error", "collecting metrics failed")
        return http_response("200 OK", content_type, body)

    async def handle(self, stream: trio.SocketStream) -> None:
        if self.active >= MAX_CONNECTIONS and not self._evict_slowest():
            await stream.aclose()  # every place is answering a request
            return
        self.active += 1
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                head = await self._read_head(stream)
                if head is not None:
                    await stream.send_all(await self.respond(head))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the scraper went away
        finally:
            self.active -= 1
            await stream.aclose()

    async def _read_head(self, stream: trio.SocketStream) -> bytes | None:
        scope = trio.CancelScope(deadline=trio.current_time() + HEAD_TIMEOUT)
        self.reading[scope] = None
        try:
            with scope:
                return await _read_head(stream)
            return None  # too slow, or evicted for a newer connection
        finally:
            self.reading.pop(scope, None)

    def _evict_slowest(self) -> bool:
        """Cancel the connection that has been sending its request longest; False if none is."""
        if not self.reading:
            return False
        oldest = next(iter(self.reading))
        del self.reading[oldest]
        oldest.cancel()
        self.evicted += 1
        return True


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head (up to the blank line); None at EOF or when it is too long."""
    buf = b""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_REQUEST:
            return None
        data = await stream.receive_some(4096)
        if not data:
            return None
        buf += data
    return buf


async def serve_metrics(
    endpoint: Endpoint,
    registry: CollectorRegistry,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``endpoint`` until cancelled; started() gets the bound address.

    A small trio responder rather than prometheus_client's threaded server: the
    collectors then read consoles in the trio thread, never while a task changes
    them; only turning the collected families into text (the larger part of a
    scrape) runs in a worker thread.
    """
    listeners = await trio.open_tcp_listeners(endpoint.port, host=endpoint.host)
    host, port = listeners[0].socket.getsockname()[:2]
    logger.info("metrics on http://%s/metrics", Endpoint(host, port))
    task_status.started((host, port))
    await trio.serve_listeners(_Responder(registry).handle, listeners)
