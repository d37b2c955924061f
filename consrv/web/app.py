"""The browser view's routes: sign-in, the console list, a console's live page, its logs.

Owns the HTTP surface (Starlette routes, a few lines each), the security headers on
every response, and who may see what on every request: the user comes from the
session cookie or a trusted proxy's header (`auth`), their rights from the config in
force (`host.Host`, as for SSH, always read-only). Console bytes never reach HTML here:
they go to the terminal emulator over the WebSocket (`stream`); names and log text
go through Jinja2's autoescape. Knows nothing of SSH or the fleet.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import trio
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from consrv import views
from consrv.audit import NO_AUDIT, AuditLog
from consrv.config import Config, WebConfig
from consrv.console import Console
from consrv.contracts import FleetView, Login
from consrv.host import Host
from consrv.logins import LoginTokens
from consrv.web import wall
from consrv.web.auth import COOKIE, Sessions, proxy_user, same_origin
from consrv.web.remote import Pace, serve_remote
from consrv.web.stats import WebStats
from consrv.web.stream import CLOSE_POLICY, Stream

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


@dataclasses.dataclass
class Web:
    """What the routes share: the host, sign-in state, counters, limits."""

    host: Host
    logins: LoginTokens
    sessions: Sessions
    stats: WebStats
    settings: WebConfig  # the web section consrv started with (listen, TLS)
    audit: AuditLog = NO_AUDIT
    fleet: FleetView | None = None  # on a gateway: `/` lists the fleet (daemon.py wires it)
    streams: Counter[str] = dataclasses.field(default_factory=Counter)  # user -> open streams
    # Log searches and file views, and downloads, running at once (sized at start).
    searches: trio.CapacityLimiter = dataclasses.field(init=False)
    downloads: trio.CapacityLimiter = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.searches = trio.CapacityLimiter(self.settings.limits.searches)
        self.downloads = trio.CapacityLimiter(self.settings.limits.downloads)

    @property
    def config(self) -> Config:
        return self.host.registry.config

    @property
    def web(self) -> WebConfig:
        """The web section in force (a reload changes all but listen and TLS)."""
        return self.config.web or self.settings

    def user(self, connection: HTTPConnection) -> str | None:
        """Who is asking: a trusted proxy's header, else the session cookie (nobody once a
        reload took the web section away). Whether they are a user is `login_of`'s question."""
        if self.config.web is None:
            return None
        peer = connection.client.host if connection.client else None
        named = proxy_user(self.web, peer, connection.headers)
        return named or self.sessions.user_of(connection.cookies.get(COOKIE))

    async def login_of(self, connection: HTTPConnection) -> Login | None:
        """The asking user as the host sees them now, read-only (the web has no input
        path): a YAML user or, with ``identity.nss``, a Unix user, with their YAML and
        Unix groups, as over SSH (``Host.login_as``). A reload that removes a user, or
        the directory dropping them, signs them out; a proxy cannot bring in a name
        the host does not know (``*`` means them)."""
        user = self.user(connection)
        if user is None:
            return None
        peer = f"{connection.client.host}:{connection.client.port}" if connection.client else ""
        return await self.host.login_as(user, peer=peer, login="web")

    def login(self, connection: HTTPConnection) -> Login | None:
        """The login `Identify` found for this request (before any route ran)."""
        found: Login | None = connection.scope.get("state", {}).get("login")
        return found

    def console(self, login: Login, name: str) -> Console | None:
        """The console `name` if `login` may see it now (else None: 404, names do not leak)."""
        console = self.host.registry.consoles.get(name)
        if console is None or self.host.role(login, name) is None:
            return None
        return console

    def remote(self, login: Login, target: str) -> bool:
        """On a gateway: `target` (``NAME`` or ``NAME@HOST``) is a console on another host
        that the list shows `login` (its host judges again when the stream opens)."""
        if self.fleet is None:
            return False
        return any(
            not row.get("local", True) and target in (row.get("id"), f"{row['name']}@{row['host']}")
            for row in self.fleet.fleet_rows(login)
        )

    def same_origin(self, connection: HTTPConnection) -> bool:
        return same_origin(
            connection.headers.get("origin"),
            connection.url.scheme,
            connection.headers.get("host"),
            self.web.url,
        )


class Identify:
    """Who asks, found once per request before any route runs (asking the directory may
    wait): ``Web.login`` then has the answer."""

    def __init__(self, web: Web, app: ASGIApp) -> None:
        self.web, self.app = web, app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not scope["path"].startswith("/static/"):
            login = await self.web.login_of(HTTPConnection(scope))
            scope.setdefault("state", {})["login"] = login
        await self.app(scope, receive, send)


class SecurityHeaders:
    """CSP (with a fresh style nonce, see static/shim.js), nosniff, no-store, no referrer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                headers.append((b"content-security-policy", CSP.format(nonce=nonce).encode()))
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def segment(name: str) -> str:
    """A name as one URL path segment: percent-encoded, "/" included (list.js does the
    same with encodeURIComponent)."""
    return urllib.parse.quote(name, safe="")


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("consrv.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["iso"] = views.iso
    env.filters["segment"] = segment
    env.filters["clock"] = wall.clock
    env.filters["ago"] = wall.ago
    return Jinja2Templates(env=env)


class Pages:
    """The routes' handlers."""

    def __init__(self, web: Web) -> None:
        self.web = web
        self.templates = templates()

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("user", None)
        context["nonce"] = request.state.nonce
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    def refused(self, request: Request, status: int, message: str) -> Response:
        return self.page(request, "message.html", status, title=str(status), message=message)

    def not_found(self, request: Request) -> Response:
        return self.refused(request, 404, "No such page, or no console of that name for you.")

    def who(self, request: Request) -> Login | Response:
        """The signed-in login, or the page that says how to sign in."""
        login = self.web.login(request)
        if login is None:
            return self.refused(
                request, 401, "Not signed in: run  ssh console@HOST web  and open the link."
            )
        return login

    async def index(self, request: Request) -> Response:
        login = self.who(request)
        if isinstance(login, Response):
            return login
        return self.page(request, "list.html", user=login.user, board=self._board(login))

    async def api_consoles(self, request: Request) -> Response:
        login = self.who(request)
        if isinstance(login, Response):
            return JSONResponse({"error": "not signed in"}, status_code=401)
        return JSONResponse(self._board(login))

    async def api_console(self, request: Request) -> Response:
        """One console as its page's header shows it (the same entry as in the list)."""
        login = self.who(request)
        if isinstance(login, Response):
            return JSONResponse({"error": "not signed in"}, status_code=401)
        console = self.web.console(login, request.path_params["name"])
        if console is None:
            return JSONResponse({"error": "no such console"}, status_code=404)
        entry = wall.annotate(self.web.host.view(console.name))
        return JSONResponse({"schema": views.SCHEMA, "now": views.iso(time.time()), **entry})

    def _board(self, login: Login) -> dict[str, Any]:
        """The wall: this host's consoles, or on a gateway every host's (``host``,
        ``local``, ``id``; the hosts that do not answer in ``missing_peers``)."""
        host, fleet = self.web.host, self.web.fleet
        if fleet is None:
            entries = [wall.annotate(host.view(name)) for name in host.visible(login)]
            return wall.board(entries, time.time())
        entries = []
        for row in fleet.fleet_rows(login):
            here = row.get("local", True) and row["name"] in host.registry.consoles
            since = host.registry.consoles[row["name"]].stats.state_since if here else None
            entries.append(wall.annotate_entry(row, views.iso(since)))
        data = wall.board(entries, time.time())
        data["fleet"], data["missing_peers"] = True, fleet.fleet_missing()
        return data

    async def sign_in(self, request: Request) -> Response:
        user = self.web.logins.redeem(request.path_params["token"])
        self.web.stats.login(ok=user is not None)
        peer = f"{request.client.host}:{request.client.port}" if request.client else ""
        if user is None:
            self.web.audit.record("login_failed", login="web", reason="bad_link", **{"from": peer})
            return self.refused(
                request, 403, "This link is used or expired: run  ssh console@HOST web  again."
            )
        # A new session every time, and the one this browser brought ends: a cookie
        # planted before sign-in (fixation) never becomes a signed-in session.
        self.web.sessions.end(request.cookies.get(COOKIE))
        cookie = self.web.sessions.create(user)
        self.web.audit.record("login", user=user, login="web", **{"from": peer})
        logger.info("web: %s signed in from %s", user, peer)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.web.web.session_ttl),
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        if not self.web.same_origin(request):
            return self.refused(request, 403, "Cross-origin request refused.")
        self.web.sessions.end(request.cookies.get(COOKIE))
        response = self.refused(request, 200, "Signed out.")
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")
        return response

    async def console_page(self, request: Request) -> Response:
        login = self.who(request)
        if isinstance(login, Response):
            return login
        name = request.path_params["name"]
        console = self.web.console(login, name)
        if console is None and not self.web.remote(login, name):
            return self.not_found(request)
        entry = wall.annotate(self.web.host.view(console.name)) if console is not None else None
        shown = console.name if console is not None else name
        now = views.iso(time.time())
        return self.page(
            request, "console.html", user=login.user, name=shown, entry=entry, now=now,
            remote=console is None,
        )  # fmt: skip

    async def stream(self, websocket: WebSocket) -> None:
        web = self.web
        login = web.login(websocket)
        name = websocket.path_params["name"]
        console = web.console(login, name) if login is not None else None
        remote = console is None and login is not None and web.remote(login, name)
        if not web.same_origin(websocket) or login is None or (console is None and not remote):
            await websocket.close(CLOSE_POLICY)
            return
        if web.streams[login.user] >= web.web.limits.streams_per_user:
            await websocket.close(CLOSE_POLICY, "too many console pages open")
            return
        await websocket.accept()
        if console is not None:
            await self._serve_stream(websocket, console, login)
            return
        assert web.fleet is not None
        web.streams[login.user] += 1
        try:
            user = login.user
            pace = Pace(web.settings.limits.send_timeout, web.stats.sent, web.stats.drop)
            await serve_remote(
                websocket, web.fleet, login, name, lambda: web.user(websocket) == user, pace
            )
        finally:
            web.streams[login.user] -= 1
            if not web.streams[login.user]:
                del web.streams[login.user]

    async def _serve_stream(self, websocket: WebSocket, console: Console, login: Login) -> None:
        web = self.web
        allowed = _still_allowed(web, login.user, console, websocket)
        stream = Stream(
            websocket,
            console,
            user=login.user,
            peer=login.peer,
            limit=web.web.limits.viewer_buffer,
            send_timeout=web.settings.limits.send_timeout,  # as the listener's
            allowed=allowed,
            sent=web.stats.sent,
            dropped=web.stats.drop,
        )
        web.streams[login.user] += 1
        try:
            await stream.run()
        finally:
            web.streams[login.user] -= 1
            if not web.streams[login.user]:
                del web.streams[login.user]


def _still_allowed(
    web: Web, user: str, console: Console, connection: HTTPConnection
) -> Callable[[], Awaitable[bool]]:
    """Whether, by the config in force and the directory now, the user may still see
    this very console."""

    async def allowed() -> bool:
        if web.host.registry.get(console.name) is not console:
            return False
        if web.user(connection) != user:  # signed out, session expired
            return False
        login = await web.login_of(connection)
        return login is not None and web.console(login, console.name) is console

    return allowed


def routes(pages: Pages, extra: list[BaseRoute]) -> list[BaseRoute]:
    return [
        Route("/", pages.index),
        Route("/api/consoles", pages.api_consoles),
        Route("/api/consoles/{name}", pages.api_console),
        Route("/login/{token}", pages.sign_in),
        Route("/logout", pages.sign_out, methods=["POST"]),
        Route("/c/{name}", pages.console_page),
        WebSocketRoute("/c/{name}/stream", pages.stream),
        *extra,
        Mount("/static", StaticFiles(packages=[("consrv.web", "static")]), name="static"),
    ]
