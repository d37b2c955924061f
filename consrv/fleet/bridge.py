"""One user's session carried to the peer that owns the console.

Owns the second hop: a new SSH connection to the peer with a certificate minted
for this user (identity.py), the same login name (``console`` / ``observer``:
the mode crosses the hop), the same command line, the user's pty (type and size),
and then bytes both ways with flow control on both sides (neither direction
buffers more than `HIGH_WATER`), window changes and breaks passed on, and the
peer's exit status returned. The peer interprets everything, ``^Ec`` escapes
included: the gateway passes bytes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import asyncssh
import trio
import trio_asyncio

from consrv.contracts import Channel
from consrv.fleet.identity import Credential
from consrv.fleet.link import LinkSettings

logger = logging.getLogger(__name__)

# Bytes either side may hold before the other side is paused.
HIGH_WATER = 256 << 10


@runtime_checkable
class Terminal(Protocol):
    """The user's pty as the SSH front knows it (``None`` type: no pty)."""

    term_type: str | None
    term_size: tuple[int, int, int, int]


@dataclass(frozen=True)
class Hop:
    """Where and as whom a session goes."""

    host: str
    port: int
    login: str
    command: str
    credential: Credential


class _PeerSide(asyncssh.SSHClientSession[bytes]):
    """The peer's channel: its output to the user (stdout and stderr kept apart)."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.bridge.from_peer(data, datatype == asyncssh.EXTENDED_DATA_STDERR)

    def exit_status_received(self, status: int) -> None:
        self.bridge.status = status

    def pause_writing(self) -> None:
        self.bridge.channel.pause_reading()

    def resume_writing(self) -> None:
        self.bridge.channel.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.bridge.ended.set()


class Bridge:
    """The user's channel ↔ the peer's channel. It is the user channel's `Input`."""

    def __init__(self, channel: Channel, received: Counter[str] | None = None, peer: str = ""
                 ) -> None:  # fmt: skip
        self.channel = channel
        self.received, self.peer_name = received, peer  # bytes from each peer, counted here
        self.peer: asyncssh.SSHClientChannel[bytes] | None = None
        self.status: int | None = None
        self.ended = trio.Event()
        self._peer_paused = False
        self._pending = bytearray()  # typed before the peer's channel was open
        self._eof = False

    # -- the user's side (contracts.Input, plus the pty's events) -------------------
    def feed(self, data: bytes) -> None:
        if self.peer is None:
            self._pending += data
            if len(self._pending) > HIGH_WATER:
                self.channel.pause_reading()  # resumed once the peer's channel is open
        elif not self.ended.is_set():
            self.peer.write(data)

    def eof(self) -> None:
        self._eof = True
        if self.peer is not None and not self.ended.is_set():
            self.peer.write_eof()

    def drained(self) -> None:
        if self._peer_paused and self.peer is not None:
            self._peer_paused = False
            self.peer.resume_reading()

    def resized(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.peer is not None and not self.ended.is_set():
            self.peer.change_terminal_size(width, height, pixwidth, pixheight)

    def break_received(self, msec: int) -> None:
        if self.peer is not None and not self.ended.is_set():
            self.peer.send_break(msec)

    # -- the peer's side -------------------------------------------------------------
    def from_peer(self, data: bytes, stderr: bool) -> None:
        if self.received is not None:
            self.received[self.peer_name] += len(data)
        (self.channel.write_notice if stderr else self.channel.write)(data)
        if self.channel.buffered() > HIGH_WATER and self.peer is not None:
            self._peer_paused = True
            self.peer.pause_reading()  # resumed by drained(), when the user has read it

    async def open(
        self, conn: asyncssh.SSHClientConnection, hop: Hop, terminal: Terminal | None
    ) -> None:
        """Open the peer's session (with the user's pty, if any); then input flows."""
        pty = terminal is not None and terminal.term_type is not None
        create = trio_asyncio.aio_as_trio(conn.create_session)
        chan, _ = await create(
            lambda: _PeerSide(self), hop.command, encoding=None,
            term_type=terminal.term_type if pty and terminal else None,
            term_size=terminal.term_size if pty and terminal else None,
            request_pty="force" if pty else False,
        )  # fmt: skip
        chan.set_write_buffer_limits(high=HIGH_WATER)
        self.peer = chan
        if self._pending:
            chan.write(bytes(self._pending))
            self._pending.clear()
            self.channel.resume_reading()
        if self._eof:
            chan.write_eof()

    def close(self) -> None:
        """Close the peer's channel (its connection may carry other sessions)."""
        if self.peer is not None:
            self.peer.close()

    async def wait(self) -> int:
        """Carry bytes until the peer's session ends; its exit status (255 if none)."""
        await self.ended.wait()
        return 255 if self.status is None else self.status


async def open_hop(settings: LinkSettings, hop: Hop) -> asyncssh.SSHClientConnection:
    """The connection for one session, under its own certificate."""
    credential = hop.credential
    keys: list[object] = [(credential.key, credential.certificate)]
    return await settings.connect(hop.host, hop.port, login=hop.login, client_keys=keys)
