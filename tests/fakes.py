"""Hand-written fakes for trio-level tests (no Mock): sinks, channels, a socket peer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from consrv.console import Console
from tests.waits import deadline


class MemorySink:
    """A viewer's sink whose peer reads only when told to (``take``)."""

    def __init__(self) -> None:
        self.data = bytearray()  # everything written, in order
        self.notices = bytearray()
        self.unread = 0  # what a stalled peer has not taken yet
        self.stalled = False
        self.paused_reading = False

    def write(self, data: bytes) -> None:
        self.data += data
        if self.stalled:
            self.unread += len(data)

    def write_notice(self, data: bytes) -> None:
        self.notices += data
        self.data += data

    def buffered(self) -> int:
        return self.unread

    def take(self) -> None:
        self.unread = 0

    def pause_reading(self) -> None:
        self.paused_reading = True

    def resume_reading(self) -> None:
        self.paused_reading = False


class Peer:
    """The server end of one upstream connection, playing procServ."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.received = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def receive_until(self, size: int) -> bytes:
        what = f"{size} bytes sent to the fake procServ (EOF ends the wait early)"
        with deadline(5, what, lambda: self.received):
            while len(self.received) < size:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self.received += data
        return bytes(self.received)


class UnixServer:
    """A listening UNIX socket that hands each accepted connection to the test."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._send, self.accepted = trio.open_memory_channel[Peer](10)
        self.peers: list[Peer] = []

    async def start(self, nursery: trio.Nursery) -> None:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(os.fspath(self.path))
        sock.listen(8)
        nursery.start_soon(self._accept, trio.SocketListener(sock))

    async def _accept(self, listener: trio.SocketListener) -> None:
        async with listener:
            while True:
                peer = Peer(await listener.accept())
                self.peers.append(peer)
                await self._send.send(peer)

    def close(self) -> None:
        for peer in self.peers:
            peer.stream.socket.close()

    async def next_peer(self, timeout: float = 5) -> Peer:
        with deadline(timeout, f"a connection to the fake procServ at {self.path}"):
            return await self.accepted.receive()


@asynccontextmanager
async def unix_server(path: Path) -> AsyncIterator[UnixServer]:
    """A UNIX socket server at ``path`` for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server = UnixServer(path)
        await server.start(nursery)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
            server.close()


async def wait_for(
    predicate: Callable[[], object],
    timeout: float = 5,
    what: str | None = None,
    seen: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until it is true; `WaitTimeout` naming ``what`` after ``timeout`` s.

    Without ``what`` the failure names the predicate and where it was written.
    """
    with deadline(timeout, what or _described(predicate), seen):
        while not predicate():
            await trio.sleep(0.01)


def _described(predicate: Callable[[], object]) -> str:
    code = getattr(predicate, "__code__", None)
    where = f" ({code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{getattr(predicate, '__qualname__', repr(predicate))} to be true{where}"


@asynccontextmanager
async def running(console: Console) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(console.run)
        yield nursery
        nursery.cancel_scope.cancel()
