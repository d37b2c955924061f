"""Logins: N sequential non-interactive logins, the server CPU they cost.

Owns: running a server's cheapest login command N times in a row and reading
the server's CPU (its whole process tree, per-connection children included)
before and after.

Must not know: how a server is configured (it uses the `Server` protocol).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import trio

from bench.procs import tree_cpu_seconds
from bench.servers import Server

SETTLE = 0.5  # let the last connection's processes exit and be reaped


@dataclass(frozen=True)
class Logins:
    count: int
    per_second: float
    cpu_ms_per_login: float


async def logins(server: Server, count: int) -> Logins:
    """``count`` logins one after the other (each a full connection, auth and command)."""
    argv = server.login_argv()
    await login_once(argv, server.label)  # a first one outside the window (warm caches)
    await trio.sleep(SETTLE)
    cpu_before, start = tree_cpu_seconds(server.pid), time.monotonic()
    for _ in range(count):
        await login_once(argv, server.label)
    elapsed = time.monotonic() - start
    await trio.sleep(SETTLE)
    cpu = tree_cpu_seconds(server.pid) - cpu_before
    return Logins(count, count / elapsed, 1000 * cpu / count)


async def login_once(argv: list[str], label: str) -> None:
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{label} login failed ({done.returncode}): {done.stderr!r}")
