"""The cache of directory answers: positive and negative TTLs, a grace period, the outage state.

Owns, for one source (the keys command, or NSS): which answers are fresh, when to
ask again, what to do when the source does not answer. Rules:

1. A fresh answer (younger than ``ttl``, or ``negative_ttl`` for "nothing") is used
   without asking.
2. Otherwise the source is asked, at most once at a time per key (others wait for
   that answer), within ``timeout``.
3. When asking times out, or fails for a key the source answered before (or before
   it answered anything), the source is *down*: one log line. A run that fails for
   a key it never answered fails for that key alone (a command that exits non-zero
   for a user it does not know, as ``sss_ssh_authorizedkeys`` does: else anyone
   could put the source down by trying a made-up login name). Until
   an answer comes back, only one question at a time goes to it (a probe, in the
   background when a cached answer can serve meanwhile); everyone else is answered
   at once from the cache, without waiting.
4. A cached answer serves while down until ``ttl + grace`` after it was fetched;
   past that, or with nothing cached, the caller gets ``Unavailable`` (fail closed).
   Only the question that finds the source down waits for its timeout.

Must not know: SSH, NSS, processes. Time comes from ``clock`` (trio's by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import trio

logger = logging.getLogger(__name__)

PRUNE_EVERY = 1000  # questions asked between two sweeps of answers too old to serve
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Unavailable(Exception):
    """The source did not answer, and no cached answer may serve: refuse (fail closed)."""


class SourceError(Exception):
    """The source answered with an error (a command that failed): not an answer to cache."""


@dataclasses.dataclass
class _Entry(Generic[V]):
    value: V
    fetched: float
    positive: bool


@dataclasses.dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0  # asked the source
    stale: int = 0  # served past the ttl while the source was down
    failures: int = 0  # the source did not answer (timeout) or failed
    refused: int = 0  # Unavailable raised: nothing to serve
    down: bool = False


class Cache(Generic[K, V]):
    """Answers of one source by key. ``is_positive(value)`` tells "found" from "nothing"."""

    def __init__(
        self,
        name: str,
        *,
        ttl: float,
        negative_ttl: float,
        grace: float,
        timeout: float,
        is_positive: Callable[[V], bool],
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.name, self.ttl, self.negative_ttl, self.grace = name, ttl, negative_ttl, grace
        self.timeout, self.is_positive, self.clock = timeout, is_positive, clock
        self.entries: dict[K, _Entry[V]] = {}
        self.stats = CacheStats()
        self._asking: dict[K, trio.Event] = {}
        self._probing = False
        self._answered = False  # the source has answered once: a failure may be one key's
        # Where a probe runs while a cached answer serves (Directory.run); None: inline.
        self.nursery: trio.Nursery | None = None

    def __len__(self) -> int:
        return len(self.entries)

    def peek(self, key: K) -> V | None:
        entry = self.entries.get(key)
        return entry.value if entry is not None else None

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The answer for ``key``: cached, fetched, or stale within the grace (rules above)."""
        while True:
            entry = self.entries.get(key)
            if entry is not None and self._fresh(entry):
                self.stats.hits += 1
                return entry.value
            asking = self._asking.get(key)
            if asking is None:
                break
            if self.stats.down:  # that question may take the whole timeout: do not wait
                return self._stale(key)
            await asking.wait()  # someone is asking for this key: share their answer
            if self.stats.down:
                return self._stale(key)
        if self.stats.down:
            return await self._while_down(key, fetch)
        return await self._ask(key, fetch)

    async def _while_down(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """Rule 3: a cached answer now (and a probe behind it), else one probe at a time."""
        entry = self.entries.get(key)
        if entry is not None and self.clock() - entry.fetched < self._life(entry):
            if not self._probing and self.nursery is not None:
                self._probing = True  # set now: the probe starts after this returns
                self.nursery.start_soon(self._probe, key, fetch)
            return self._stale(key)
        if self._probing:
            return self._stale(key)  # Unavailable, at once
        self._probing = True
        return await self._ask(key, fetch)

    async def _probe(self, key: K, fetch: Callable[[], Awaitable[V]]) -> None:
        with contextlib.suppress(Unavailable):  # still down: said once already
            await self._ask(key, fetch)

    def forget(self, key: K) -> None:
        self.entries.pop(key, None)

    def prune(self) -> None:
        """Drop answers too old to serve even in an outage (names tried once, users gone)."""
        now = self.clock()
        old = [k for k, e in self.entries.items() if now - e.fetched >= self._life(e)]
        for key in old:
            del self.entries[key]

    def _life(self, entry: _Entry[V]) -> float:
        return self.ttl + self.grace if entry.positive else self.negative_ttl + self.grace

    def _fresh(self, entry: _Entry[V]) -> bool:
        ttl = self.ttl if entry.positive else self.negative_ttl
        return self.clock() - entry.fetched < ttl

    async def _ask(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        if self.stats.misses % PRUNE_EVERY == PRUNE_EVERY - 1:
            self.prune()
        event = self._asking[key] = trio.Event()
        probe = self._probing
        try:
            self.stats.misses += 1
            with trio.move_on_after(self.timeout) as scope:
                try:
                    value = await fetch()
                except SourceError as exc:
                    return self._failed(key, str(exc), outage=self._outage(key))
            if scope.cancelled_caught:
                return self._failed(key, f"no answer within {self.timeout:g} s")
            self.entries[key] = _Entry(value, self.clock(), self.is_positive(value))
            self._answered = True
            self._up()
            return value
        finally:
            if probe:
                self._probing = False
            del self._asking[key]
            event.set()

    def _outage(self, key: K) -> bool:
        """Whether a run that failed for ``key`` says the source is down (rule 3): it
        failed for a key it answered before, or it has never answered anything."""
        return key in self.entries or not self._answered

    def _failed(self, key: K, why: str, *, outage: bool = True) -> V:
        self.stats.failures += 1
        if outage and not self.stats.down:
            self.stats.down = True
            logger.warning(
                "%s is not answering (%s): serving cached answers for up to %g s after their"
                " ttl, refusing everyone else until it answers again",
                self.name, why, self.grace,
            )  # fmt: skip
        return self._stale(key)

    def _stale(self, key: K) -> V:
        entry = self.entries.get(key)
        if entry is not None and self._fresh(entry):
            self.stats.hits += 1
            return entry.value
        if entry is not None and self.clock() - entry.fetched < self._life(entry):
            self.stats.stale += 1
            return entry.value
        self.stats.refused += 1
        raise Unavailable(f"{self.name} is not answering and nothing cached may serve")

    def _up(self) -> None:
        if self.stats.down:
            self.stats.down = False
            logger.warning("%s is answering again", self.name)
