"""One-time login tokens: minted for an authenticated SSH user, redeemed once by a browser.

Owns the tokens' lifetime (single use, ``ttl`` seconds, at most ``capacity`` alive).
Knows nothing of HTTP or SSH: the SSH front mints (``ssh console@host web``), the web
front redeems (``/login/TOKEN``). Tokens are kept only as their SHA-256, so the map's
lookups reveal nothing about a live token's text, and nothing here is ever logged.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits
DEFAULT_TTL = 60.0
DEFAULT_CAPACITY = 1000


@dataclass(frozen=True)
class Grant:
    """Who a token was minted for, and until when (monotonic seconds)."""

    user: str
    expires: float


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class LoginTokens:
    """Single-use tokens in memory; the oldest goes when ``capacity`` would be passed."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or capacity <= 0:
            raise ValueError("need ttl > 0 and capacity > 0")
        self.ttl, self.capacity, self._clock = ttl, capacity, clock
        self._grants: dict[bytes, Grant] = {}  # insertion order = mint order
        self.minted = self.redeemed = self.refused = 0
        self.base_url = ""  # where /login/TOKEN is served (set once the listener is bound)

    def __len__(self) -> int:
        return len(self._grants)

    def mint(self, user: str) -> str:
        """A new token for `user`, good once within ``ttl`` seconds."""
        self._expire()
        while len(self._grants) >= self.capacity:
            del self._grants[next(iter(self._grants))]
        token = secrets.token_urlsafe(TOKEN_BYTES)
        self._grants[_digest(token)] = Grant(user, self._clock() + self.ttl)
        self.minted += 1
        return token

    def redeem(self, token: str) -> str | None:
        """The user the token was minted for, once; None if unknown, used or expired."""
        grant = self._grants.pop(_digest(token), None)
        if grant is None or grant.expires <= self._clock():
            self.refused += 1
            return None
        self.redeemed += 1
        return grant.user

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, grant in self._grants.items() if grant.expires <= now]:
            del self._grants[key]
