"""Who a browser is: signed-in sessions (a random cookie), or a trusted proxy's header.

Owns the server-side session store (``secrets.token_urlsafe(32)`` cookies, kept as
their SHA-256, a lifetime from sign-in and a bounded count), the proxy rule (the
identity header counts only from an address in ``web.trusted_proxies``: hypercorn's
ProxyFixMiddleware does not check the peer, so this does), and the Origin rule for
WebSocket handshakes and POSTs. Knows nothing of consoles: what a user may see is
asked of the config in force on every request (``host.Host``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from consrv.config import WebConfig
from consrv.names import InvalidName, validate_user_name

COOKIE = "__Host-consrv_session"  # __Host-: Secure, Path=/, no Domain, enforced by browsers


@dataclass(frozen=True)
class WebSession:
    user: str
    expires: float  # monotonic seconds


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class Sessions:
    """Signed-in browsers: cookie → user, until ``ttl`` after sign-in; the oldest go first."""

    def __init__(
        self, *, ttl: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.capacity, self._clock = ttl, capacity, clock
        self._sessions: dict[bytes, WebSession] = {}

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for session in self._sessions.values() if session.expires > now)

    def create(self, user: str) -> str:
        """A new session for `user`; returns the cookie value."""
        now = self._clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]
        while len(self._sessions) >= self.capacity:
            del self._sessions[next(iter(self._sessions))]
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = WebSession(user, now + self.ttl)
        return token

    def user_of(self, token: str | None) -> str | None:
        if not token:
            return None
        session = self._sessions.get(_digest(token))
        if session is None or session.expires <= self._clock():
            return None
        return session.user

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)


def proxy_user(web: WebConfig, peer: str | None, headers: Mapping[str, str]) -> str | None:
    """The user an authenticating proxy named, if the peer is one of ``trusted_proxies``."""
    if web.identity_header is None or peer is None:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if not any(address in network for network in web.trusted_proxies):
        return None
    name = headers.get(web.identity_header)
    if not name:
        return None
    try:
        return validate_user_name(name)
    except InvalidName:
        return None


def same_origin(origin: str | None, scheme: str, host: str | None, url: str | None) -> bool:
    """Is `origin` this server: the configured ``web.url`` if there is one, else the
    scheme and Host asked for?

    With ``url`` set the Host header counts for nothing: a page on a rebound name
    (DNS rebinding: evil.example resolving to this server) sends an Origin that
    matches its own Host, never ``url``. A browser always sends Origin on a
    WebSocket handshake and on a POST; a missing one is refused too.
    """
    if not origin or origin == "null":
        return False
    if url:
        parts = urlsplit(url)
        allowed = f"{parts.scheme}://{parts.netloc}"
    elif host:
        allowed = f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}"
    else:
        return False
    return origin.lower() == allowed.lower()
