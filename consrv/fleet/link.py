"""One gateway → peer link: a persistent SSH connection reading the peer's change feed.

Owns connecting to a peer under the gateway's own identity (its key, the peer's
observer login), checking the peer's host key against ``fleet.known_hosts``
(``@cert-authority`` lines accepted; an unknown host key is refused, never
learnt), reading ``watch --json`` into the `Directory`, keep-alives, and
reconnecting with backoff. Every wait has its own deadline, so one dead or hung
peer never slows another: each link is its own trio task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import trio
import trio_asyncio

from consrv.fleet.directory import Directory, Peer
from consrv.protocol.feed import FeedDecoder, FeedError

logger = logging.getLogger(__name__)

FEED_COMMAND = "watch --json"
BACKOFF_START, BACKOFF_CAP = 0.5, 5.0


@dataclass(frozen=True)
class LinkSettings:
    """How the gateway reaches its peers (from the ``fleet:`` section)."""

    key: asyncssh.SSHKey  # the gateway's own identity on every peer
    known_hosts: Path
    login: str = "observer"  # the peers' observer login: the feed needs no more
    bind: str | None = None  # the local address to connect from
    connect_timeout: float = 4.0
    keepalive_interval: float = 2.0
    keepalive_count_max: int = 2

    async def connect(
        self, host: str, port: int, *, login: str, client_keys: list[object]
    ) -> asyncssh.SSHClientConnection:
        """An SSH connection to a peer whose host key ``known_hosts`` vouches for."""
        connect = trio_asyncio.aio_as_trio(asyncssh.connect)
        with trio.fail_after(self.connect_timeout):
            conn: asyncssh.SSHClientConnection = await connect(
                host, port, username=login, client_keys=client_keys,
                known_hosts=str(self.known_hosts), agent_path=None, agent_forwarding=False,
                local_addr=(self.bind, 0) if self.bind else None,
                connect_timeout=self.connect_timeout, login_timeout=self.connect_timeout,
                keepalive_interval=self.keepalive_interval,
                keepalive_count_max=self.keepalive_count_max, encoding=None,
                config=None,
            )  # fmt: skip
        return conn


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

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.error = data.decode(errors="replace").strip()[:200]
            return
        self.decoder.receive_data(data)
        try:
            while (event := self.decoder.next_event()) is not None:
                self.link.directory.apply(self.link.peer, event, self.link.clock())
        except FeedError as exc:
            self.error = str(exc)
            self.ended.set()

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
    ) -> None:
        self.peer, self.directory, self.settings, self.clock = peer, directory, settings, clock
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

    async def _once(self) -> str:
        """One connection, until it ends; why it ended."""
        host, port = split_address(self.peer.address)
        try:
            conn = await self.settings.connect(
                host, port, login=self.settings.login, client_keys=[self.settings.key]
            )
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
