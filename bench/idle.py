"""Idle scale: a server holding many consoles on which nothing happens.

Owns: starting a server on N idle consoles, waiting until it holds a
connection to each (counted on procServ's side, in /proc/net/unix), then its
CPU over a window and its memory at the end.

Must not know: how a server is configured (it uses the `Server` protocol).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from bench.procs import accepted_connections, tree_cpu_seconds, tree_memory
from bench.servers import Server

SETTLE = 3.0


@dataclass(frozen=True)
class Idle:
    """A server with ``consoles`` configured, none of them printing."""

    consoles: int
    connections: int  # procServ connections the server holds
    connect_seconds: float | None  # start -> all connections held (None: it holds none)
    processes: int
    rss_mb: float  # summed over the server's processes
    pss_mb: float  # the same, shared pages divided among their users
    cpu_percent: float  # of one core, over the window


async def idle_scale(
    server: Server, sockets: Mapping[str, Path], root: Path, window: float
) -> Idle:
    """Start ``server`` on ``sockets`` (all under ``root``), measure, stop it."""
    start = time.monotonic()
    server.start(sockets)
    try:
        connected = 0
        if server.holds_connections:
            connected = await wait_connections(root, len(sockets))
        connect_seconds = time.monotonic() - start if connected else None
        await trio.sleep(SETTLE)
        cpu_before, window_start = tree_cpu_seconds(server.pid), time.monotonic()
        await trio.sleep(window)
        cpu = tree_cpu_seconds(server.pid) - cpu_before
        elapsed = time.monotonic() - window_start
        memory = tree_memory(server.pid)
        connected = accepted_connections(root)
    finally:
        server.stop()
    return Idle(
        consoles=len(sockets),
        connections=connected,
        connect_seconds=connect_seconds,
        processes=memory.processes,
        rss_mb=memory.rss / 1e6,
        pss_mb=memory.pss / 1e6,
        cpu_percent=100 * cpu / elapsed,
    )


# Long enough for a reconnect backoff to reach its cap (consrv's: 0.1 s doubling to 5 s).
DOWN_SETTLE = 15.0


async def down_scale(server: Server, sockets: Mapping[str, Path], window: float) -> float:
    """CPU (% of one core) of ``server`` on consoles whose procServ is not running:
    their socket paths (and directories) do not exist. Units stopped for maintenance."""
    server.start(sockets)
    try:
        await trio.sleep(DOWN_SETTLE)
        cpu_before, window_start = tree_cpu_seconds(server.pid), time.monotonic()
        await trio.sleep(window)
        cpu = tree_cpu_seconds(server.pid) - cpu_before
        elapsed = time.monotonic() - window_start
    finally:
        server.stop()
    return 100 * cpu / elapsed


async def wait_connections(root: Path, count: int) -> int:
    """Until ``count`` connections to the sockets under ``root`` are held (at most
    ``120 + count / 10`` s); how many."""
    with trio.move_on_after(120.0 + count / 10):
        # /proc/net/unix has no event to wait for: poll it.
        while (held := accepted_connections(root)) < count:  # noqa: ASYNC110
            await trio.sleep(0.1)
        return held
    raise RuntimeError(f"only {accepted_connections(root)} of {count} consoles connected")
