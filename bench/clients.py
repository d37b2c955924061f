"""Read-only viewers as real client processes, driven from trio.

Owns: one `Viewer` per client process (``ssh observer@...``, ``ssh`` to the
sshd bridge, ``console -s``): its stdin held open (an EOF would end the
session), its stdout counted byte by byte, a marker watched for, readiness
read from the server's "attached" message; and `ViewerGroup`, many of them
started together and stopped together.

Must not know: which server the clients talk to (the `Server` protocol gives the
command line, the "attached" pattern and how many may attach at once).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence

import trio

from bench.procs import Reaper
from bench.servers import Ready, Server

READ_SIZE = 1 << 20
CONNECT_BOUND, CONNECT_EACH = 60.0, 2.0  # seconds a group may take to attach


class Viewer:
    """One client process whose stdout is the console's output."""

    def __init__(self, argv: Sequence[str], ready: Ready) -> None:
        self.argv, self.ready = list(argv), ready
        self.process: trio.Process | None = None
        self.received = 0  # stdout bytes since the last `expect`
        self.last_data_at = 0.0
        self.seen_at: float | None = None  # when the expected marker arrived
        self._marker = b""
        self._tail = b""
        self._head = {"stdout": bytearray(), "stderr": bytearray()}
        self._ready = trio.Event()
        self._regex = re.compile(ready.pattern)

    async def run(self, reaper: Reaper) -> None:
        """Start the client and pump its output until it exits or is cancelled."""
        self.process = await trio.lowlevel.open_process(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        reaper.add(self.process.pid)
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, self.process.stdout, "stdout")
            nursery.start_soon(self._pump, self.process.stderr, "stderr")
        await self.process.wait()

    async def _pump(self, stream: trio.abc.ReceiveStream, name: str) -> None:
        while chunk := bytes(await stream.receive_some(READ_SIZE)):
            if not self._ready.is_set():
                self._check_ready(name, chunk)
            if name == "stdout":
                self._take(chunk)

    def _check_ready(self, name: str, chunk: bytes) -> None:
        head = self._head[name]
        head += chunk
        if name == self.ready.stream and self._regex.search(head):
            self._ready.set()
        del head[: max(0, len(head) - 4096)]

    def _take(self, chunk: bytes) -> None:
        now = time.perf_counter()
        self.received += len(chunk)
        self.last_data_at = now
        if self._marker and self.seen_at is None:
            window = self._tail + chunk
            if self._marker in window:
                self.seen_at = now
            self._tail = window[-len(self._marker) :]

    @property
    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def expect(self, marker: bytes) -> None:
        """Count from zero and watch for ``marker`` in what arrives from now on."""
        self.received, self.seen_at, self._marker, self._tail = 0, None, marker, b""

    def output_head(self) -> str:
        return " | ".join(bytes(h[-300:]).decode(errors="replace") for h in self._head.values())


class ViewerGroup:
    """``count`` viewers of one console, connected a few at a time."""

    def __init__(self, server: Server, console: str, count: int) -> None:
        argv = server.viewer_argv(console)
        self.viewers = [Viewer(argv, server.viewer_ready) for _ in range(count)]
        self.at_once = server.connect_at_once

    async def connect(self, nursery: trio.Nursery, reaper: Reaper) -> None:
        """Start every viewer (in ``nursery``) and wait until each is attached.

        RuntimeError if they are not all attached within ``60 + 2 * count`` s.
        """
        limiter = trio.CapacityLimiter(self.at_once)
        with trio.move_on_after(CONNECT_BOUND + CONNECT_EACH * len(self.viewers)):
            async with trio.open_nursery() as waiting:
                for viewer in self.viewers:
                    waiting.start_soon(self._connect_one, viewer, nursery, reaper, limiter)
            return
        stuck = [v for v in self.viewers if not v.is_ready]
        raise RuntimeError(
            f"{len(stuck)} viewers not attached; one printed {stuck[0].output_head()!r}"
        )

    @staticmethod
    async def _connect_one(
        viewer: Viewer, nursery: trio.Nursery, reaper: Reaper, limiter: trio.CapacityLimiter
    ) -> None:
        async with limiter:
            nursery.start_soon(viewer.run, reaper)
            await viewer.wait_ready()

    def close(self, reaper: Reaper) -> None:
        """End every client (their sessions end with them)."""
        pids = [v.process.pid for v in self.viewers if v.process is not None]
        reaper.stop(pids, grace=2.0)
