"""The web front as a trio task: hypercorn's trio worker serving the Starlette app.

Owns the listener (``web.listen``, TLS from ``web.tls``), the base URL that
``ssh ... web`` prints (``web.url``, else the bound address), and the shared state
the routes read (`app.Web`). Started with ``nursery.start`` beside the SSH front;
``task_status`` gets the bound URL once the socket listens.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import ASGIApp

from consrv.audit import NO_AUDIT, AuditLog
from consrv.config import WebConfig
from consrv.contracts import FleetView
from consrv.host import Host
from consrv.logins import LoginTokens
from consrv.web.app import Identify, SecurityHeaders, Web, routes
from consrv.web.auth import Sessions
from consrv.web.replay import ReplayPages
from consrv.web.stats import WebStats

logger = logging.getLogger(__name__)
SHUTDOWN_GRACE = 2.0
RESTART_DELAY = 1.0


def build_app(web: Web) -> ASGIApp:
    """The ASGI app: the routes inside the security headers."""
    pages = ReplayPages(web)
    app = Starlette(routes=routes(pages, [*pages.log_routes(), *pages.replay_routes()]))
    app.router.redirect_slashes = False  # an unknown path is 404, never a redirect to a guess

    async def not_found(request: Request, exc: Exception) -> object:
        return pages.not_found(request)

    async def not_allowed(request: Request, exc: Exception) -> object:
        return pages.refused(request, 405, "This page takes no such request.")

    async def failed(request: Request, exc: Exception) -> object:
        # Logged by the server with its traceback; the browser learns nothing of it.
        return pages.refused(request, 500, "Something went wrong; it is in consrv's log.")

    app.add_exception_handler(404, not_found)  # type: ignore[arg-type]
    app.add_exception_handler(405, not_allowed)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, failed)  # type: ignore[arg-type]
    return SecurityHeaders(Identify(web, app))


def make_web(
    host: Host,
    logins: LoginTokens,
    config: WebConfig,
    audit: AuditLog = NO_AUDIT,
    fleet: FleetView | None = None,
) -> Web:
    sessions = Sessions(ttl=config.session_ttl, capacity=config.limits.sessions)
    web = Web(host, logins, sessions, WebStats(), config, audit, fleet)
    web.stats.sessions = lambda: len(sessions)
    web.stats.streams = lambda: sum(web.streams.values())
    return web


class _Config(HypercornConfig):
    """hypercorn's config whose listeners carry ``TCP_USER_TIMEOUT`` (inherited by every
    connection): the kernel ends a connection whose data has waited unacknowledged
    that long (a browser that stopped reading, or gone from the network). hypercorn
    has no write timeout of its own and shields its writes from cancellation."""

    send_timeout = 10.0

    def create_sockets(self) -> Sockets:
        sockets = super().create_sockets()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                milliseconds = int(self.send_timeout * 1000)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        return sockets


def hypercorn_config(config: WebConfig) -> HypercornConfig:
    hc = _Config()
    hc.send_timeout = config.limits.send_timeout
    hc.bind = [str(config.listen)]
    hc.accesslog = None
    errors = logging.getLogger("consrv.web.http")
    errors.setLevel(logging.WARNING)  # not its "Running on ... (CTRL + C to quit)": ours says it
    hc.errorlog = errors
    hc.graceful_timeout = SHUTDOWN_GRACE
    hc.websocket_max_message_size = 1024  # the browser sends nothing; any frame closes
    # HTTP/1.1 only: the pages need nothing more, and hypercorn's HTTP/2 let a browser's
    # reload end the whole server (KeyError on a stream id, tests/web/test_browser.py).
    hc.alpn_protocols = ["http/1.1"]
    if config.tls is not None:
        hc.certfile, hc.keyfile = str(config.tls.cert), str(config.tls.key)
    return hc


ServeHttp = Callable[..., Awaitable[None]]


class WebFront:
    """Serves `web` until cancelled; the web never takes consrv down with it.

    hypercorn lets an exception from one connection's protocol handling end its
    whole server (trio's serve_listeners does not catch a handler's exceptions; seen
    for real with HTTP/2, now off). Such a failure is logged and the server started
    again on the address it had, after `RESTART_DELAY`: browsers reconnect; the
    consoles, SSH users and logs never notice.
    """

    def __init__(self, web: Web, serve_http: ServeHttp | None = None) -> None:
        self.web = web
        self.app = build_app(web)
        self.serve_http = serve_http or _serve
        self.restarts = 0

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        config = self.web.web
        http = hypercorn_config(config)
        started = False
        while True:
            try:
                async with trio.open_nursery() as nursery:
                    binds: list[str] = await nursery.start(self.serve_http, self.app, http)
                    if not started:
                        base = config.url or reachable(binds[0])
                        self.web.logins.base_url = base
                        logger.info("web view on %s (listening on %s)", base, ", ".join(binds))
                        task_status.started(base)
                        started = True
                        # Again on the very address (port 0 picked one), if it must restart.
                        http.bind = [bind.partition("://")[2] for bind in binds]
            except Exception:  # any failure of the web front: logged, served again
                self.restarts += 1
                logger.exception("web view failed; serving it again in %g s", RESTART_DELAY)
            await trio.sleep(RESTART_DELAY)


async def _serve(
    app: ASGIApp, config: HypercornConfig, *, task_status: trio.TaskStatus[list[str]]
) -> None:
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]


def reachable(bound: str) -> str:
    """``https://0.0.0.0:8443`` names no host a user can open: use this host's name."""
    scheme, _, rest = bound.partition("://")
    host, _, port = rest.rpartition(":")
    if host in ("0.0.0.0", "[::]"):  # noqa: S104 (recognising a wildcard bind, not binding)
        return f"{scheme}://{socket.getfqdn()}:{port}"
    return bound
