"""What an SSH client can make consrv hold: admission, authentication tries, resource errors.

Owns the limits sshd has and asyncssh does not (docs/security.md, "Limits under
abuse"): unauthenticated connections in total and per source (sshd's
MaxStartups / PerSourceMaxStartups), file descriptors kept in reserve for the
connections already in, refused authentication requests per connection
(MaxAuthTries), resource errors from ``accept()`` (asyncio hands them to the
loop's exception handler, and trio-asyncio's default one raises them into the
nursery: the whole server would stop). The hooks into asyncssh that apply some
of them to a connection (counting refused requests, refusing ``env`` requests)
are in `consrv.ssh.compat`. Must not know users, consoles or the audit log: the
SSH front asks, counts and records.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# accept() errors that mean "out of a resource": asyncio stops accepting on that
# socket for a second (ACCEPT_RETRY_DELAY) and tries again; consrv only counts them.
RESOURCE_ERRORS = {
    errno.EMFILE: "EMFILE",
    errno.ENFILE: "ENFILE",
    errno.ENOBUFS: "ENOBUFS",
    errno.ENOMEM: "ENOMEM",
}
# Descriptors kept free for what consrv must still open while it serves: procServ
# reconnects, log rotation, systemctl's pipes, metrics scrapes, the audit log.
FD_RESERVE = 64
IPV6_SOURCE_PREFIX = 64  # IPv6 sources are counted per /64, as one host usually has one


def source_of(host: str) -> str:
    """The source a connection is counted under: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_SOURCE_PREFIX}", strict=False))
    return str(address)


def open_descriptors() -> int | None:
    """How many file descriptors this process has open (None where /proc is missing).

    Raises OSError (EMFILE) when not even one more can be opened to count them.
    """
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor
    except FileNotFoundError:
        return None


DESCRIPTOR_TARGET = 65536


def raise_descriptor_limit(target: int = DESCRIPTOR_TARGET) -> None:
    """Raise the soft open-file limit towards the hard one (at most ``target``).

    systemd gives services 1024 soft and a far higher hard limit, and expects a
    program that needs more to raise its own soft limit (consrv uses epoll, never
    select(), so large descriptor numbers are safe). One connection is one
    descriptor: this keeps accept() from running out long before the caps do.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        logger.info("open-file limit raised from %d to %d", soft, wanted)


def descriptor_limit() -> int | None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


class Admission:
    """Which new connections are let in: unauthenticated ones are capped, fds kept in reserve.

    ``admit(host)`` for each new connection (None: in; else why not: ``startups``,
    ``per_source`` or ``descriptors``, metrics.REFUSAL_REASONS), then
    ``authenticated(host)`` once it logs in, ``closed(host, authenticated)`` when it
    ends. Only connections admitted are counted.
    """

    def __init__(
        self,
        max_startups: int,
        per_source: int,
        *,
        fd_reserve: int = FD_RESERVE,
        descriptors: Callable[[], int | None] = open_descriptors,
        limit: Callable[[], int | None] = descriptor_limit,
    ) -> None:
        self.max_startups, self.per_source, self.fd_reserve = max_startups, per_source, fd_reserve
        self._descriptors, self._limit = descriptors, limit
        self.unauthenticated: Counter[str] = Counter()  # by source

    @property
    def startups(self) -> int:
        """Connections admitted that have not authenticated yet."""
        return self.unauthenticated.total()

    def admit(self, host: str) -> str | None:
        source = source_of(host)
        reason = self._refusal(source)
        if reason is None:
            self.unauthenticated[source] += 1
        return reason

    def _refusal(self, source: str) -> str | None:
        if self.startups >= self.max_startups:
            return "startups"
        if self.unauthenticated[source] >= self.per_source:
            return "per_source"
        limit = self._limit()
        if limit is None:
            return None
        try:
            used = self._descriptors()
        except OSError:  # EMFILE: none left even to count them
            return "descriptors"
        if used is not None and used >= limit - min(self.fd_reserve, limit // 4):
            return "descriptors"
        return None

    def authenticated(self, host: str) -> None:
        self._release(source_of(host))

    def closed(self, host: str, authenticated: bool) -> None:
        if not authenticated:
            self._release(source_of(host))

    def _release(self, source: str) -> None:
        self.unauthenticated[source] -= 1
        if self.unauthenticated[source] <= 0:
            del self.unauthenticated[source]


class AuthTries:
    """Refused authentication requests on one connection; the connection is cut at ``limit``.

    The first request for a method consrv does not offer is free: OpenSSH's client
    always starts with ``none`` to learn the methods (sshd does not count it either).
    Every other refused request counts: an unknown key or certificate, a key for
    an unknown login name, a bad signature, a password.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._probed = False

    def refused(self, supported_method: bool) -> bool:
        """One request was refused: True if it counts (it is not the free probe)."""
        if not supported_method and not self._probed:
            self._probed = True
            return False
        self.count += 1
        return True

    @property
    def exceeded(self) -> bool:
        return self.count >= self.limit


class AcceptErrors:
    """accept() running out of descriptors (or memory): counted and logged, never fatal.

    asyncio already stops accepting on that socket for a second and tries again; it
    reports the error to the loop's exception handler, and trio-asyncio's default
    handler raises it into the loop's nursery, which stopped consrv. ``install``
    puts a handler in front that takes these errors and passes on every other.
    """

    def __init__(self, counted: Callable[[str], None]) -> None:
        self.counted = counted  # gets the error's name: EMFILE, ENFILE, ...
        self._streak = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if self.take(context):
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    def take(self, context: dict[str, Any]) -> bool:
        """Count an accept() resource error; False for anything else."""
        exc = context.get("exception")
        message = str(context.get("message", ""))
        if not (isinstance(exc, OSError) and exc.errno in RESOURCE_ERRORS):
            return False
        if "accept" not in message:
            return False
        self.counted(RESOURCE_ERRORS[exc.errno])
        if not self._streak:  # once per streak: this can repeat every second
            logger.warning("ssh: cannot accept connections: %s; retrying every second", exc)
        self._streak = True
        return True

    def accepted(self) -> None:
        """A connection came in again: the next error starts a new streak (logged again)."""
        if self._streak:
            logger.info("ssh: accepting connections again")
        self._streak = False


class RefusalLog:
    """Refused connections on stderr: at most one line every ``interval`` seconds, with counts.

    A flood of connections must not become a flood of log lines.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self._clock = interval, clock
        self._since: Counter[str] = Counter()
        self._last: float | None = None

    def note(self, reason: str, host: str) -> None:
        self._since[reason] += 1
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return
        counts = ", ".join(f"{count} {why}" for why, count in sorted(self._since.items()))
        logger.warning("ssh: refusing new connections (latest from %s): %s", host, counts)
        self._since.clear()
        self._last = now
