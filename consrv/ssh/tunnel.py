"""``ssh -J`` tunnels through a fleet gateway: asyncssh's TCP forwarding, minus a race.

asyncssh's own forwarding (``connection_requested`` returning True) connects to the
destination first and opens the channel after; bytes the destination sends in
between reach a forwarder that has no channel yet and are dropped. An SSH server
speaks first (its banner), so a client sometimes got the server's key exchange
without its banner ("banner line contains invalid characters"). Here the
destination's socket is not read until the channel is there, and whatever was read
before is passed on first.
"""

from __future__ import annotations

import asyncio
from typing import cast

import asyncssh
from asyncssh.forward import SSHForwarder


class _ChannelSide(SSHForwarder):
    """The channel's end of a tunnel: holds the destination's first bytes until open."""

    def __init__(self, peer: SSHForwarder) -> None:
        super().__init__(peer)
        self._early = peer._inpbuf  # read before this end existed (asyncssh keeps, never sends)
        peer._inpbuf = b""
        peer.pause_reading()  # nothing more until the channel is open

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._early += data
        else:
            super().write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        early, self._early = self._early, b""
        if early:
            super().write(early)
        if self._peer is not None:
            self._peer.resume_reading()


async def open_tunnel(host: str, port: int) -> asyncssh.SSHTCPSession[bytes]:
    """Connect to ``host:port`` for a direct-tcpip channel (asyncssh awaits this)."""
    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_connection(SSHForwarder, host, port)
    except OSError as exc:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
    # What asyncssh's own forward_connection returns, typed as it casts it.
    return cast("asyncssh.SSHTCPSession[bytes]", _ChannelSide(peer))
