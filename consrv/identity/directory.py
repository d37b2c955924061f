"""The directory: users, their keys and their Unix groups, from the keys command and NSS.

Owns asking both sources off the event loop under a deadline (commands at most
``concurrency`` at once, NSS in worker threads that are abandoned when they hang),
their caches (identity.cache: ttl, negative ttl, grace, fail closed), the audit
records of command runs, and the ``consrv_identity_*`` metrics. Must not know:
SSH connections, sessions, consoles.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

import asyncssh
import trio
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from consrv.audit import NO_AUDIT, AuditLog
from consrv.config import IdentityConfig
from consrv.identity import nss
from consrv.identity.authkeys import AuthorizedKeys, parse_authorized_keys, parse_owners
from consrv.identity.cache import Cache, SourceError, Unavailable
from consrv.identity.command import (
    Account,
    KeyFacts,
    RunAs,
    expand,
    program_problem,
    run_command,
)

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
RESULTS = ("ok", "no_keys", "failed", "timeout", "bad_lines")


@dataclasses.dataclass(frozen=True)
class Person:
    """What NSS says about a user: their entry and group names."""

    entry: nss.Passwd
    groups: frozenset[str]


def _person(name: str) -> Person | None:
    """Both NSS calls, in one worker thread."""
    entry = nss.passwd(name)
    return None if entry is None else Person(entry, nss.group_names(entry.name, entry.gid))


class Directory:
    """Answers "who is this user, which keys, which groups" from the directory, cached."""

    def __init__(self, config: IdentityConfig, audit: AuditLog = NO_AUDIT) -> None:
        self.config, self.audit = config, audit
        self.commands = trio.CapacityLimiter(config.concurrency)
        self.threads = trio.CapacityLimiter(config.concurrency)
        self.keys: Cache[tuple[str, ...], AuthorizedKeys] = self._cache("the keys command", bool)
        self.people: Cache[str, Person | None] = self._cache("NSS", lambda p: p is not None)
        self.owners: Cache[tuple[str, ...], tuple[str, ...]] = self._cache(
            "the key owner command", bool
        )
        self.runs = dict.fromkeys(RESULTS, 0)
        self.running = 0
        self._run_as: RunAs | None = None

    def _cache(self, name: str, positive: Callable[[V], bool]) -> Cache[K, V]:
        c = self.config
        return Cache(
            name, ttl=c.ttl, negative_ttl=c.negative_ttl, grace=c.grace, timeout=c.timeout,
            is_positive=positive,
        )  # fmt: skip

    async def run(self) -> None:
        """Forever: the nursery where probes of a down source run in the background."""
        async with trio.open_nursery() as nursery:
            for cache in (self.keys, self.people, self.owners):
                cache.nursery = nursery
            try:
                await trio.sleep_forever()
            finally:
                for cache in (self.keys, self.people, self.owners):
                    cache.nursery = None

    def reconfigure(self, config: IdentityConfig) -> None:
        """A reload: new timings and command; cached answers stay (they are still answers)."""
        self.config = config
        for cache in (self.keys, self.people, self.owners):
            cache.ttl, cache.negative_ttl = config.ttl, config.negative_ttl
            cache.grace, cache.timeout = config.grace, config.timeout
        self.commands.total_tokens = config.concurrency
        self.threads.total_tokens = config.concurrency
        self._run_as = None

    # -- NSS -------------------------------------------------------------------
    async def person(self, name: str) -> Person | None:
        """The user as NSS knows them, or None (no such user). Raises Unavailable."""
        if not self.config.nss:
            return None
        return await self.people.get(name, lambda: self._ask_nss(name))

    async def _ask_nss(self, name: str) -> Person | None:
        return await trio.to_thread.run_sync(
            _person, name, limiter=self.threads, abandon_on_cancel=True
        )

    # -- the keys command --------------------------------------------------------
    async def authorized_keys(
        self, user: str, key: asyncssh.SSHKey, blob: bytes, person: Person | None
    ) -> AuthorizedKeys:
        """The command's lines for ``user`` (empty: none, or no command). Raises Unavailable."""
        if not self.config.command:
            return AuthorizedKeys()
        facts = KeyFacts(key.get_fingerprint(), key.get_algorithm(), blob)
        account = Account(str(person.entry.uid), person.entry.home) if person else Account()
        argv = expand(self.config.command, user, facts, account)
        return await self.keys.get(argv, lambda: self._run(user, argv))

    async def _output(self, argv: tuple[str, ...]) -> str:
        """One run of a command (its program checked first, every time, as sshd does)."""
        unsafe = program_problem(argv[0])
        if unsafe is not None:
            raise SourceError(f"unsafe program: {unsafe}")
        run_as = await self._command_user()
        async with self.commands:
            self.running += 1
            try:
                return await run_command(argv, run_as)
            finally:
                self.running -= 1

    async def _answer(
        self, argv: tuple[str, ...], what: str, record: Callable[[str, float], None]
    ) -> tuple[str, float]:
        """One run's output and when it started. A run that fails, or times out (a
        cancellation), is recorded here (``record(result, started)``) and raises; one
        that answers is the caller's to record, with what its output says."""
        started, result = time.monotonic(), "timeout"
        try:
            output = await self._output(argv)
            result = "answered"
        except SourceError as exc:
            result = "failed"
            logger.warning("%s failed: %s", what, exc)
            raise
        finally:
            if result != "answered":
                record(result, started)
        return output, started

    async def _run(self, user: str, argv: tuple[str, ...]) -> AuthorizedKeys:
        """One run, counted and audited; its output parsed (bad lines refused and logged)."""
        output, started = await self._answer(
            argv, f"keys command for {user}", lambda result, t0: self._record(user, result, t0)
        )
        keys = parse_authorized_keys(output)
        if keys.problems:  # one line, however much garbage
            more = len(keys.problems) - 1
            logger.warning(
                "keys command for %s: %s%s", user, keys.problems[0],
                f" (and {more} more lines refused)" if more else "",
            )  # fmt: skip
        result = "bad_lines" if keys.problems else "ok" if keys else "no_keys"
        self._record(user, result, started, len(keys.lines))
        return keys

    def _record(self, user: str, result: str, started: float, keys: int | None = None) -> None:
        self.runs[result] += 1
        seconds = round(time.monotonic() - started, 3)
        self.audit.record("keys_command", user=user, result=result, keys=keys, seconds=seconds)

    # -- the key owner command -----------------------------------------------------
    async def key_owners(self, key: asyncssh.SSHKey, blob: bytes) -> tuple[str, ...]:
        """Whose the key may be, as ``identity.key_owner_command`` says (valid user names,
        at most MAX_OWNERS; empty: nobody, or no such command). A suggestion only: the
        caller checks each user's keys. Raises Unavailable."""
        if not self.config.owner_command:
            return ()
        fingerprint = key.get_fingerprint()
        facts = KeyFacts(fingerprint, key.get_algorithm(), blob)
        argv = expand(self.config.owner_command, "", facts, Account())
        return await self.owners.get(argv, lambda: self._ask_owners(fingerprint, argv))

    async def _ask_owners(self, fingerprint: str, argv: tuple[str, ...]) -> tuple[str, ...]:
        output, started = await self._answer(
            argv, f"key owner command for {fingerprint}",
            lambda result, t0: self._record_owner(fingerprint, result, t0),
        )  # fmt: skip
        names, refused = parse_owners(output)
        if refused:
            logger.warning(
                "key owner command for %s: %d lines are no user names: ignored",
                fingerprint, refused,
            )  # fmt: skip
        result = "ok"
        self._record_owner(fingerprint, result, started, names)
        return names

    def _record_owner(
        self, key: str, result: str, started: float, names: tuple[str, ...] = ()
    ) -> None:
        seconds = round(time.monotonic() - started, 3)
        self.audit.record(
            "key_owner_command", key=key, result=result, users=",".join(names) or None,
            seconds=seconds,
        )  # fmt: skip

    async def _command_user(self) -> RunAs | None:
        """``authorized_keys_command_user``'s uid and gid, looked up once per config."""
        name = self.config.command_user
        if name is None or self._run_as is not None:
            return self._run_as
        entry = await trio.to_thread.run_sync(
            nss.passwd, name, limiter=self.threads, abandon_on_cancel=True
        )
        if entry is None:
            raise SourceError(f"authorized_keys_command_user {name!r}: no such user")
        self._run_as = RunAs(entry.name, entry.gid)
        return self._run_as

    # -- metrics -----------------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "consrv_identity_keys_command_runs", "Runs of the keys command, by result",
            labels=["result"],
        )  # fmt: skip
        for result, count in self.runs.items():
            runs.add_metric([result], count)
        yield runs
        yield GaugeMetricFamily(
            "consrv_identity_keys_command_running", "Keys commands running now", self.running
        )
        up = GaugeMetricFamily(
            "consrv_identity_source_up",
            "1 while the source answers; 0 after it failed to (cached answers serve the grace)",
            labels=["source"],
        )
        cached = GaugeMetricFamily(
            "consrv_identity_cached_answers", "Answers in the cache", labels=["source"]
        )
        served = CounterMetricFamily(
            "consrv_identity_answers", "Answers given, by how", labels=["source", "how"]
        )
        sources: list[tuple[str, Cache[Any, Any]]] = [
            ("keys_command", self.keys), ("nss", self.people)
        ]  # fmt: skip
        if self.config.owner_command:
            sources.append(("key_owner_command", self.owners))
        for source, cache in sources:
            up.add_metric([source], 0 if cache.stats.down else 1)
            cached.add_metric([source], len(cache))
            stats = cache.stats
            for how, count in (
                ("cached", stats.hits), ("asked", stats.misses), ("stale", stats.stale),
                ("failed", stats.failures), ("refused", stats.refused),
            ):  # fmt: skip
                served.add_metric([source, how], count)
        yield from (up, cached, served)


__all__ = ["Directory", "Person", "Unavailable"]
