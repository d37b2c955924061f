"""The log pages: a console's files, one file's lines, a download, and search.

Owns ``/logs/NAME/`` (the files, and search by substring and time range),
``/logs/NAME/FILE`` (a window of lines, each with an anchor, ``?line=N``) and
``/logs/NAME/FILE/download``. A path never comes from the URL: the console must be
one the user may see now, and FILE must be a name in that console's listing
(`logfiles`); anything else is 404. Reading and searching run in worker threads, a
bounded number at once; more are refused with 429. On a gateway, the same pages
for a peer's console (``NAME@HOST``, one the list shows the user) are answered by
that peer (`peerlogs`), under the same limits.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Callable
from typing import Any
from urllib.parse import quote

import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from consrv.consolelog import sanitize_event
from consrv.contracts import OK, Login
from consrv.logfiles import (
    BadTime,
    Limits,
    LogFile,
    Query,
    find_file,
    log_files,
    open_file,
    parse_time,
    search,
    window,
)
from consrv.protocol import ansi
from consrv.web.app import Pages, Web
from consrv.web.peerlogs import PeerLogs, valid_target

SEARCH_LIMITS = Limits(results=500, output=2 << 20)
WINDOW = 500  # lines shown of a file
LINE_TEXT = 2000  # characters shown of one line
LINE_BYTES = 4 * LINE_TEXT  # bytes kept of one line
READ_CHUNK = 1 << 16


def shown(data: bytes) -> str:
    """A log line for HTML: terminal escape sequences taken out (a line of a table is not
    a screen: cursor moves and erasing mean nothing there, and the colours carry no
    text; the live page, a terminal emulator, shows them), decoded, other control
    characters as \\xNN (Jinja escapes the rest)."""
    return sanitize_event(ansi.strip(data).decode("utf-8", "replace"), LINE_TEXT)


class LogPages(Pages):
    def __init__(self, web: Web) -> None:
        super().__init__(web)
        self.searches, self.downloads = web.searches, web.downloads

    def log_routes(self) -> list[BaseRoute]:
        return [
            Route("/logs/{name}/", self.logs_index),
            Route("/logs/{name}/{file}", self.file_view),
            Route("/logs/{name}/{file}/download", self.download),
        ]

    def _peer(self, request: Request) -> tuple[Login, PeerLogs] | Response | None:
        """On a gateway, a peer's console the list shows the user: its logs are that peer's
        (None: not one; this host's pages answer)."""
        login = self.who(request)
        if isinstance(login, Response):
            return login
        name, fleet = request.path_params["name"], self.web.fleet
        if fleet is None or self.web.console(login, name) is not None:
            return None
        if not valid_target(name) or not self.web.remote(login, name):
            return None
        return login, PeerLogs(fleet, login, name)

    def _files(self, request: Request) -> tuple[Login, str, list[LogFile]] | Response:
        login = self.who(request)
        if isinstance(login, Response):
            return login
        console = self.web.console(login, request.path_params["name"])
        log_dir = self.web.config.log_dir
        if console is None or log_dir is None:
            return self.not_found(request)
        return login, console.name, log_files(log_dir, console.name)

    def _file(self, request: Request) -> tuple[Login, str, LogFile] | Response:
        found = self._files(request)
        if isinstance(found, Response):
            return found
        login, name, _ = found
        log_dir = self.web.config.log_dir
        assert log_dir is not None
        file = find_file(log_dir, name, request.path_params["file"])
        return (login, name, file) if file is not None else self.not_found(request)

    async def logs_index(self, request: Request) -> Response:
        peer = self._peer(request)
        if peer is not None:
            return peer if isinstance(peer, Response) else await self._peer_index(request, *peer)
        found = self._files(request)
        if isinstance(found, Response):
            return found
        login, name, files = found
        context: dict[str, Any] = {"user": login.user, "name": name, "files": files}
        query = self._search_form(request, context)
        if isinstance(query, Response) or query is None:
            return query or self.page(request, "logs.html", **context)
        result = await trio.to_thread.run_sync(
            search, files, query, SEARCH_LIMITS, limiter=self.searches
        )
        context["result"] = result
        context["lines"] = [(m, shown(m.data)) for m in result.matches]
        return self.page(request, "logs.html", **context)

    def _search_form(self, request: Request, context: dict[str, Any]) -> Query | Response | None:
        """The search asked for (None: none), or the page that refuses it."""
        params = request.query_params
        context["form"] = {k: params.get(k, "") for k in ("q", "since", "until")}
        context["result"] = context["error"] = None
        if not any(context["form"].values()):
            return None
        try:
            query = _query(params.get("q", ""), params.get("since"), params.get("until"))
        except BadTime as exc:
            context["error"] = str(exc)
            return self.page(request, "logs.html", 400, **context)
        if self.searches.available_tokens < 1:
            return self.refused(request, 429, "Too many searches at once: try again.")
        return query

    async def _peer_index(self, request: Request, login: Login, peer: PeerLogs) -> Response:
        if self.searches.available_tokens < 1:
            return self.refused(request, 429, "Too many readers at once: try again.")
        async with self.searches:
            files = await peer.files()
        if files is None:
            return self.not_found(request)  # that host says no (or no longer answers)
        context: dict[str, Any] = {"user": login.user, "name": peer.target, "files": files}
        query = self._search_form(request, context)
        if isinstance(query, Response) or query is None:
            return query or self.page(request, "logs.html", **context)
        async with self.searches:
            result = await peer.search(query)
        if result is None:
            return self.refused(request, 502, f"{peer.target}: its host did not answer.")
        context["result"] = result
        context["lines"] = [(m, shown(m.data)) for m in result.matches]
        return self.page(request, "logs.html", **context)

    async def file_view(self, request: Request) -> Response:
        peer = self._peer(request)
        if peer is not None:
            return peer if isinstance(peer, Response) else await self._peer_file(request, *peer)
        found = self._file(request)
        if isinstance(found, Response):
            return found
        login, name, file = found
        around = _line(request.query_params.get("line", ""))
        if self.searches.available_tokens < 1:
            return self.refused(request, 429, "Too many readers at once: try again.")
        first, lines = await trio.to_thread.run_sync(
            window, file, around, WINDOW, LINE_BYTES, limiter=self.searches
        )
        rows = [(first + i, shown(data)) for i, data in enumerate(lines)]
        return self.page(
            request, "file.html", user=login.user, name=name, file=file, rows=rows, line=around
        )

    async def _peer_file(self, request: Request, login: Login, peer: PeerLogs) -> Response:
        name = request.path_params["file"]
        around = _line(request.query_params.get("line", ""))
        if not _file_name(name):
            return self.not_found(request)
        if self.searches.available_tokens < 1:
            return self.refused(request, 429, "Too many readers at once: try again.")
        async with self.searches:
            found = await peer.window(name, around, WINDOW, LINE_BYTES)
        if found is None:
            return self.not_found(request)
        first, lines = found
        rows = [(first + i, shown(data)) for i, data in enumerate(lines)]
        file = {"name": name}
        return self.page(request, "file.html", user=login.user, name=peer.target, file=file,
                         rows=rows, line=around)  # fmt: skip

    async def download(self, request: Request) -> Response:
        peer = self._peer(request)
        if peer is not None:
            return peer if isinstance(peer, Response) else self._peer_download(request, peer[1])
        found = self._file(request)
        if isinstance(found, Response):
            return found
        _, _, file = found
        try:
            self.downloads.acquire_on_behalf_of_nowait(request)
        except trio.WouldBlock:
            return self.refused(request, 429, "Too many downloads at once: try again.")
        try:
            fd = open_file(file)
        except OSError:
            self.downloads.release_on_behalf_of(request)
            return self.not_found(request)
        headers = {"content-disposition": attachment(file.name)}

        def done() -> None:
            os.close(fd)
            self.downloads.release_on_behalf_of(request)

        chunks = self._chunks(fd)
        # Text, to be saved, never shown: whatever the console printed (HTML, a script)
        # and whatever the file is called, a browser saves it (nosniff is on every answer).
        return _Download(chunks, done, media_type="text/plain; charset=utf-8", headers=headers)

    def _peer_download(self, request: Request, peer: PeerLogs) -> Response:
        name = request.path_params["file"]
        if not _file_name(name):
            return self.not_found(request)
        try:
            self.downloads.acquire_on_behalf_of_nowait(request)
        except trio.WouldBlock:
            return self.refused(request, 429, "Too many downloads at once: try again.")

        def done() -> None:
            self.downloads.release_on_behalf_of(request)

        headers = {"content-disposition": attachment(name)}
        return _PeerDownload(peer, name, self.not_found(request), done, self.web.stats.sent,
                             media_type="text/plain; charset=utf-8", headers=headers)  # fmt: skip

    async def _chunks(self, fd: int) -> AsyncGenerator[bytes, None]:
        while chunk := await trio.to_thread.run_sync(os.read, fd, READ_CHUNK):
            self.web.stats.sent(len(chunk))
            yield chunk


class _Download(StreamingResponse):
    """A file's bytes; its descriptor and download place given back however it ends
    (done, or the browser gone mid-way: then the generator is closed here, at once,
    not whenever it is garbage collected)."""

    def __init__(
        self,
        chunks: AsyncGenerator[bytes, None],
        done: Callable[[], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(chunks, **kwargs)
        self.chunks, self.done = chunks, done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with trio.CancelScope(shield=True):
                await self.chunks.aclose()
            self.done()


class _PeerDownload(Response):
    """A peer's file, as that peer sends it, at the browser's pace (the peer's channel is
    paused while the browser is behind); the peer's refusal before any byte is `refused`.
    The download place is given back however it ends (the browser gone mid-way too)."""

    def __init__(
        self,
        peer: PeerLogs,
        name: str,
        refused: Response,
        done: Callable[[], None],
        sent: Callable[[int], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(None, **kwargs)
        # Its length is the peer's to know: sent as it comes (chunked), never "0".
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.peer, self.name, self.refused, self.done, self.sent = peer, name, refused, done, sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def body(chunk: bytes) -> bool:
            nonlocal started
            if not started:
                await send({"type": "http.response.start", "status": 200,
                            "headers": self.raw_headers})  # fmt: skip
                started = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.sent(len(chunk))
            return True

        async def gone(scope: trio.CancelScope) -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            scope.cancel()

        status: int | None = None  # the browser went before the peer ended
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(gone, nursery.cancel_scope)
                status, _ = await self.peer.download(self.name, body)
                nursery.cancel_scope.cancel()
            if status is None or (started and status != OK):
                return  # unfinished: the browser sees a failed download, not a short file
            if not started and status != OK:
                await self.refused(scope, receive, send)
                return
            if not started:
                await send({"type": "http.response.start", "status": 200,
                            "headers": self.raw_headers})  # fmt: skip
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            self.done()


def _line(text: str) -> int | None:
    return int(text) if text.isdigit() and len(text) < 10 else None


def _file_name(name: str) -> bool:
    """A log file's name as a peer lists them (the peer looks it up in its listing)."""
    return 0 < len(name) <= 255 and name.isprintable() and "/" not in name


def attachment(name: str) -> str:
    """Content-Disposition for saving `name` (RFC 6266): an ASCII fallback with nothing
    that could end the quoted string, and the exact name percent-encoded."""
    plain = [c if c.isascii() and c.isprintable() and c not in '"\\%' else "_" for c in name]
    fallback = "".join(plain)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _query(text: str, since: str | None, until: str | None) -> Query:
    return Query(
        text=text.encode(),
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
    )
