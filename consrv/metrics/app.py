"""Answering a scrape: the ASGI app behind ``/metrics``, prometheus-client's own answer.

Owns what a request gets: ``GET /metrics`` answers as
``prometheus_client.make_asgi_app`` does (the format the ``Accept`` header asks
for, gzip when ``Accept-Encoding`` allows it, ``?name[]=`` to restrict), ``GET /``
links it, anything else is 404, a failing collector is a 500 (logged). Knows no
metric (it serves a `CollectorRegistry`) and no socket (web/metrics.py serves it).

Why not ``make_asgi_app`` itself: it collects and formats in the event loop. Here
collecting runs in the trio thread (no object is read while a task changes it) and
formatting, the larger part of a scrape, in a worker thread, so the consoles are
not held up by a scrape of a thousand of them.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric

logger = logging.getLogger("consrv.metrics")

# ASGI, spelt out: the web stack stays in the web front (tests/test_layering.py).
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
INDEX = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'
Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]


class _Snapshot:
    """Families collected already: formatting them needs no live object."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> list[Metric]:
        return self.metrics


def exposition(snapshot: _Snapshot, accept: str, accept_encoding: str) -> tuple[Headers, bytes]:
    """The body and its headers, as prometheus-client's ``_bake_output`` makes them."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(snapshot)
    headers = [(b"content-type", content_type.encode())]
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers.append((b"content-encoding", b"gzip"))
    return headers, body


def _text(status: int, text: str) -> Answer:
    return status, [(b"content-type", b"text/plain; charset=utf-8")], text.encode() + b"\n"


def _header(scope: Scope, name: bytes) -> str:
    """Every value of header ``name``, joined by commas (as prometheus-client reads them)."""
    values = [value for key, value in scope["headers"] if key.lower() == name]
    return b",".join(values).decode("latin-1")


class MetricsApp:
    """The ASGI app: ``/metrics`` from ``registry``, ``/`` a link to it, else 404."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no lifespan, no websocket
        status, headers, body = await self.answer(scope)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def answer(self, scope: Scope) -> Answer:
        if scope["method"] == "GET" and scope["path"] == "/metrics":
            return await self._metrics(scope)
        if scope["method"] == "GET" and scope["path"] == "/":
            return 200, [(b"content-type", b"text/html; charset=utf-8")], INDEX
        return _text(404, "not found: try /metrics")

    async def _metrics(self, scope: Scope) -> Answer:
        names = parse_qs(scope["query_string"].decode("latin-1")).get("name[]")
        accept, encoding = _header(scope, b"accept"), _header(scope, b"accept-encoding")
        try:
            source = self.registry.restricted_registry(names) if names else self.registry
            snapshot = _Snapshot(list(source.collect()))
            headers, body = await trio.to_thread.run_sync(exposition, snapshot, accept, encoding)
        except Exception:
            logger.exception("metrics: collecting failed")
            return _text(500, "collecting metrics failed")
        return 200, headers, body
