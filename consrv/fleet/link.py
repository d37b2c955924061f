"""One gateway → peer link: a persistent SSH connection reading the peer's change feed.

Owns connecting to a peer under the gateway's own identity (its key, the peer's
observer login), checking the peer's host key against ``fleet.known_hosts``
(``@cert-authority`` lines accepted; an unknown host key is refused, never
learnt), reading ``watch --json`` into the `Directory`, keep-alives, and
reconnecting with backoff. Every wait has its own deadline, so one dead or hung
peer never slows another: each link is its own trio task.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
import trio
import trio_asyncio

from consrv.fleet.directory import Directory, Peer
from consrv.protocol.feed import FeedDecoder, FeedError
from consrv.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

FEED_COMMAND = "watch --json"
BACKOFF_START, BACKOFF_CAP = 0.5, 5.0
# Keep-alives the gateway sends a second, at most, over all its links: each costs it
# about 0.2 ms of CPU (a request out, a reply in), so 25 a second is 0.5 % of a core.
# Up to 50 peers every link keeps ``fleet.keepalive_interval``; beyond, the interval
# stretches with the fleet (1,000 peers: 40 s). A dead peer is seen at once (its
# connection closes); a hung one within interval x count_max; a user's own request to
# a hung peer still fails within ``connect_timeout`` (docs/fleet.md, "Sizing").
KEEPALIVES_PER_SECOND = 25.0
# Feed events taken from one peer: a burst, then a steady rate. A peer that sends more
# (a flood, or 10,000 consoles at once) is read more slowly: its channel is paused until
# the bucket refills, SSH flow control holds the rest at the peer, and every other
# peer's events go on being read as they come.
FEED_BURST, FEED_RATE = 5000, 500.0


# What is done to each connection the gateway makes, once it is up (daemon.py passes
# ssh/compat.py's per-connection hooks: one SSH packet per write).
Tune = Callable[[asyncssh.SSHClientConnection], object]


@dataclass(frozen=True)
class LinkSettings:
    """How the gateway reaches its peers (from the ``fleet:`` section)."""

    key: asyncssh.SSHKey  # the gateway's own identity on every peer
    known_hosts: (
        asyncssh.SSHKnownHosts
    )  # parsed once (asyncssh would re-read a path per connection)
    login: str = "observer"  # the peers' observer login: the feed needs no more
    bind: str | None = None  # the local address to connect from
    connect_timeout: float = 4.0
    keepalive_interval: float = 2.0
    keepalive_count_max: int = 2
    tune: Tune | None = None

    async def connect(
        self,
        host: str,
        port: int,
        *,
        login: str,
        client_keys: list[object],
        keepalive_interval: float | None = None,
    ) -> asyncssh.SSHClientConnection:
        """An SSH connection to a peer whose host key ``known_hosts`` vouches for."""
        _name_the_local_user()
        connect = trio_asyncio.aio_as_trio(asyncssh.connect)
        with trio.fail_after(self.connect_timeout):
            conn: asyncssh.SSHClientConnection = await connect(
                host, port, username=login, client_keys=client_keys,
                known_hosts=self.known_hosts, agent_path=None, agent_forwarding=False,
                local_addr=(self.bind, 0) if self.bind else None,
                connect_timeout=self.connect_timeout, login_timeout=self.connect_timeout,
                keepalive_interval=keepalive_interval or self.keepalive_interval,
                keepalive_count_max=self.keepalive_count_max, encoding=None,
                config=None,
            )  # fmt: skip
        if self.tune is not None:
            self.tune(conn)
        return conn


def _name_the_local_user() -> None:
    """Give asyncssh a local user name when the process has none.

    asyncssh's client asks `getpass.getuser()` (only for host-based authentication,
    which the fleet does not use) and refuses to connect when it fails: a uid without
    a passwd entry and no LOGNAME/USER (a container, a directory that is down). The
    uid's number stands in for the name.
    """
    try:
        getpass.getuser()
    except (KeyError, OSError):
        os.environ["LOGNAME"] = str(os.getuid())


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class _FeedReader(asyncssh.SSHClientSession[bytes]):
    """Lines of the feed into the directory; runs in the trio thread (trio-asyncio)."""

    def __init__(self, link: PeerLink) -> None:
        self.link = link
        self.decoder = FeedDecoder()
        self.ended = trio.Event()
        self.error = ""
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self.bucket = TokenBucket(FEED_BURST, FEED_RATE, time.monotonic())
        self.paused = False

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self.chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.error = data.decode(errors="replace").strip()[:200]
            return
        self.decoder.receive_data(data)
        if not self.paused:  # else a drain is due already
            self._drain()

    def _drain(self) -> None:
        """Apply the events received, as far as this peer's budget goes."""
        self.paused = False
        if self.ended.is_set():  # the feed is over: its peer is down, nothing to apply
            return
        try:
            while (wait := self.bucket.take(time.monotonic())) == 0.0:
                event = self.decoder.next_event()
                if event is None:
                    self.bucket.refund()
                    self._resume()
                    return
                self.link.directory.apply(self.link.peer, event, self.link.clock())
        except FeedError as exc:
            self.error = str(exc)
            self.ended.set()
            return
        self._pause(wait)

    def _pause(self, wait: float) -> None:
        """Over budget: read nothing more from this peer for ``wait`` seconds."""
        self.paused = True
        if self.chan is not None:
            self.chan.pause_reading()
        asyncio.get_running_loop().call_later(wait, self._drain)

    def _resume(self) -> None:
        if self.chan is not None:
            self.chan.resume_reading()

    def exit_status_received(self, status: int) -> None:
        self.error = self.error or f"the feed ended with status {status}"

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self.error:
            self.error = str(exc) or type(exc).__name__
        self.ended.set()


class PeerLink:
    """Keeps one peer's entry in the directory current, forever."""

    def __init__(
        self,
        peer: Peer,
        directory: Directory,
        settings: LinkSettings,
        clock: Callable[[], float] = time.time,
        connecting: trio.CapacityLimiter | None = None,
    ) -> None:
        self.peer, self.directory, self.settings, self.clock = peer, directory, settings, clock
        self.connecting = connecting or trio.CapacityLimiter(1)  # set-ups at once, shared
        self.conn: asyncssh.SSHClientConnection | None = None
        self.local_address: str | None = None  # as the peer sees this gateway
        self.reconnects = 0

    async def run(self) -> None:
        backoff = BACKOFF_START
        while True:
            error = await self._once()
            if self.peer.up:
                backoff = BACKOFF_START  # it was serving: try again at once
                logger.warning("fleet: peer %s down: %s", self.peer.name, error)
            elif self.peer.since is None:
                logger.warning("fleet: peer %s not reached: %s", self.peer.name, error)
            self.directory.lost(self.peer, self.clock(), error)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_CAP)
            self.reconnects += 1

    def keepalive_interval(self) -> float:
        """This link's: ``fleet.keepalive_interval``, stretched in a large fleet."""
        fleet = len(self.directory.peers) / KEEPALIVES_PER_SECOND
        return max(self.settings.keepalive_interval, fleet)

    async def _once(self) -> str:
        """One connection, until it ends; why it ended."""
        host, port = split_address(self.peer.address)
        try:
            async with self.connecting:
                conn = await self.settings.connect(
                    host, port, login=self.settings.login, client_keys=[self.settings.key],
                    keepalive_interval=self.keepalive_interval(),
                )  # fmt: skip
        except trio.TooSlowError:
            return f"no answer within {self.settings.connect_timeout:g} s"
        except (OSError, asyncssh.Error) as exc:
            return _describe(exc)
        self.conn = conn
        self.local_address = str(conn.get_extra_info("sockname")[0])
        try:
            self.directory.connected(self.peer, self.clock())
            create = trio_asyncio.aio_as_trio(conn.create_session)
            _, reader = await create(lambda: _FeedReader(self), FEED_COMMAND, encoding=None)
            assert isinstance(reader, _FeedReader)
            await reader.ended.wait()
            return reader.error or "the feed ended"
        except (OSError, asyncssh.Error) as exc:
            return _describe(exc)
        finally:
            self.conn = None
            conn.abort()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key not verifiable (fleet.known_hosts): {exc}"
    if isinstance(exc, asyncssh.PermissionDenied):
        return "the peer refused the gateway's key (is it a fleet gateway user there?)"
    return str(exc) or type(exc).__name__
