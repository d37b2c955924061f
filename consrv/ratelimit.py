"""Per-user budgets for what a user can make consrv write for others and into the logs:
broadcasts and notes, and write-lock changes (``^Eca``, ``^Ecf``, ``^Ecs``).

Owns the token bucket (``burst`` tokens, ``per_minute`` added back each minute)
and one bucket per user, shared by all their sessions on all consoles, so a user
cannot spread chatter over sessions to rotate away the record of others' actions
(docs/security.md has the arithmetic). Pure: time is passed in; knows nothing of
consoles, SSH or trio.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MessageBudgets", "TokenBucket"]


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` tokens a second."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst, self.rate = burst, rate
        self._tokens, self._at = float(burst), now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if there was one, else the seconds until there will be."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    def refund(self) -> None:
        """Give back the token just taken (it was not used)."""
        self._tokens = min(self.burst, self._tokens + 1)


@dataclass
class MessageBudgets:
    """One bucket per user: ``burst`` messages, then ``per_minute`` a minute; each
    message at most ``max_length`` characters."""

    burst: int = 10
    per_minute: float = 6.0
    max_length: int = 200

    def __post_init__(self) -> None:
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def take(self, user: str, now: float, kind: str = "message") -> float:
        """0.0 if `user` may do one more `kind` now (and it is counted), else seconds to
        wait. Each kind (``message``, ``lock``) has a budget of its own."""
        bucket = self._buckets.get((user, kind))
        if bucket is None or (bucket.burst, bucket.rate) != (self.burst, self.per_minute / 60):
            rate = self.per_minute / 60
            bucket = self._buckets[user, kind] = TokenBucket(self.burst, rate, now)
        return bucket.take(now)
