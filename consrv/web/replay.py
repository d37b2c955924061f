"""Playing recordings in the browser: the player page and the cast it loads.

Owns ``/play/NAME`` (the player page: from a time, ``?at=T``, or a range,
``?since=T&until=T``) and ``/play/NAME/cast`` (that range as one asciicast v2
file, which static/play.js replays through the vendored xterm.js). Rights are the
log pages': the console must be one the user may see now, and the files are only
those `recordings.cast_files` lists. Reading runs in a worker thread under the log
pages' limiter (429 when all are busy). On a gateway, a peer's console's
recording (``NAME@HOST``) is exported by that peer (`peerlogs`, ``cast``) under the
user's per-hop identity; the page is the same. Knows nothing of SSH or the fleet.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from consrv.logfiles import BadTime, parse_time
from consrv.recordings import Limits, cast_files, export, read_range
from consrv.web.logs import LogPages
from consrv.web.peerlogs import PeerLogs

CAST_LIMITS = Limits(output=32 << 20)
BEFORE = timedelta(minutes=1)  # ?at=T: the range starts this long before T
AFTER = timedelta(minutes=30)  # ... and ends this long after it
DEFAULT_SINCE = "1h"  # neither: the last hour
CAST_TYPE = "application/x-asciicast; charset=utf-8"


class ReplayPages(LogPages):
    def replay_routes(self) -> list[BaseRoute]:
        return [
            Route("/play/{name}", self.player),
            Route("/play/{name}/cast", self.cast),
        ]

    def _console(self, request: Request) -> tuple[str, str] | Response:
        """(user, console name) if the user may see the console now, else the refusal
        (on a gateway, a peer's console: its host judges again when the cast is read)."""
        login = self.who(request)
        if isinstance(login, Response):
            return login
        peer = self._peer(request)
        if peer is not None:
            return peer if isinstance(peer, Response) else (login.user, peer[1].target)
        console = self.web.console(login, request.path_params["name"])
        if console is None or self.web.config.log_dir is None:
            return self.not_found(request)
        return login.user, console.name

    async def player(self, request: Request) -> Response:
        found = self._console(request)
        if isinstance(found, Response):
            return found
        user, name = found
        try:
            since, until, at = _range(request)
        except BadTime as exc:
            return self.refused(request, 400, str(exc))
        query = {"since": since.isoformat(), **({"until": until.isoformat()} if until else {})}
        return self.page(
            request,
            "play.html",
            user=user,
            name=name,
            query=query,
            at=at.timestamp() if at is not None else "",
        )

    async def cast(self, request: Request) -> Response:
        found = self._console(request)
        if isinstance(found, Response):
            return found
        _, name = found
        try:
            since, until, _ = _range(request)
        except BadTime as exc:
            return Response(str(exc), 400, media_type="text/plain")
        peer = self._peer(request)
        if isinstance(peer, tuple):
            return await self._peer_cast(peer[1], since, until)
        log_dir = self.web.config.log_dir
        assert log_dir is not None
        if self.searches.available_tokens < 1:
            return Response("too many readers at once", 429, media_type="text/plain")
        files = cast_files(log_dir, name)
        found_range = await trio.to_thread.run_sync(
            read_range, files, since, until, CAST_LIMITS, limiter=self.searches
        )
        body = b"".join(export(found_range.events, name, since.timestamp()))
        headers = {"x-consrv-stopped": found_range.stopped} if found_range.stopped else {}
        return Response(body, media_type=CAST_TYPE, headers=headers)

    async def _peer_cast(self, peer: PeerLogs, since: datetime, until: datetime | None
                         ) -> Response:  # fmt: skip
        if self.searches.available_tokens < 1:
            return Response("too many readers at once", 429, media_type="text/plain")
        async with self.searches:
            body = await peer.cast(since, until, CAST_LIMITS.output)
        if body is None:
            return Response("no such recording", 404, media_type="text/plain")
        return Response(body, media_type=CAST_TYPE)


def _range(request: Request) -> tuple[datetime, datetime | None, datetime | None]:
    """(since, until, at) from the query: ``at`` alone gives a window around it."""
    params = request.query_params
    at = _time(params.get("at"))
    since = _time(params.get("since")) or (at - BEFORE if at else parse_time(DEFAULT_SINCE))
    until = _time(params.get("until")) or (at + AFTER if at else None)
    return since, until, at


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    if len(text) > 40:
        raise BadTime("not a time: too long")
    return parse_time(text)
