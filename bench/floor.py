"""The floor: the least a console bridge on consrv's stack can do, as a server of its own.

``python -m bench.floor --consoles FILE --host-key FILE --authorized-keys FILE``
serves SSH on a free loopback port (printed as ``ssh listening on HOST:PORT``)
with what the design card fixes for consrv -- Python, trio, asyncssh through
trio-asyncio, and consrv's wire settings (`consrv.ssh.compat`) -- and nothing
else: any accepted key, one session per console named on the command line, the
user's bytes written straight to procServ's socket, procServ's bytes written
straight to the channel. No telnet decoding, parsing, log, scrollback, roles,
lock, escapes, back-pressure or batching.

Its keystroke round trip is what Python, trio and asyncssh cost on this machine
before consrv adds anything: consrv's own code costs the difference.

Must not know: what is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncssh
import trio
import trio_asyncio

from consrv.config import DEFAULT_CIPHERS
from consrv.ssh.compat import one_packet_per_write

READ_SIZE = 65536


class _Bridge(asyncssh.SSHServerSession[bytes]):
    """One channel bridged to one procServ socket."""

    def __init__(self, consoles: dict[str, str], nursery: trio.Nursery) -> None:
        self.consoles, self.nursery = consoles, nursery
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.path = ""
        self.fd: int | None = None
        self.scope = trio.CancelScope()

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.path = self.consoles.get(command, "")
        return bool(self.path)

    def session_started(self) -> None:
        self.nursery.start_soon(self._pump)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fd = None
        self.scope.cancel()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.fd is not None:
            os.write(self.fd, data)  # keystrokes: small, never more than the socket takes

    async def _pump(self) -> None:
        assert self.chan is not None
        with self.scope:
            stream = await trio.open_unix_socket(self.path)
            self.fd = stream.socket.fileno()
            async with stream:
                while data := await stream.receive_some(READ_SIZE):
                    self.chan.write(data)
            self.fd = None
            self.chan.exit(0)


class _Server(asyncssh.SSHServer):
    def __init__(self, consoles: dict[str, str], nursery: trio.Nursery) -> None:
        self.consoles, self.nursery = consoles, nursery

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        one_packet_per_write(conn)

    def session_requested(self) -> _Bridge:
        return _Bridge(self.consoles, self.nursery)


async def serve(consoles: dict[str, str], host_key: Path, authorized_keys: Path) -> None:
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        create = trio_asyncio.aio_as_trio(asyncssh.create_server)
        acceptor = await create(
            lambda: _Server(consoles, nursery),
            "127.0.0.1",
            0,
            server_host_keys=[str(host_key)],
            authorized_client_keys=str(authorized_keys),
            encryption_algs=DEFAULT_CIPHERS,
            encoding=None,
            line_editor=False,
        )
        host, port = acceptor.sockets[0].getsockname()[:2]
        print(f"ssh listening on {host}:{port}", flush=True)
        await trio.sleep_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--consoles", type=Path, required=True, help="JSON: name -> socket")
    parser.add_argument("--host-key", type=Path, required=True)
    parser.add_argument("--authorized-keys", type=Path, required=True)
    args = parser.parse_args(argv)
    consoles = json.loads(args.consoles.read_text())
    trio.run(serve, consoles, args.host_key, args.authorized_keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
