"""Reaching a procServ console: a UNIX socket or TCP ``host:port``, and when to retry.

Owns connecting and the reconnect policy. Knows nothing of consoles, viewers or
logs: a console asks for a stream and decides what to do with it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import trio

from consrv.pathwatch import PathWatcher

# Without inotify (`pathwatch.PathWatcher`): how often a missing or stale UNIX
# socket path is looked at while waiting to retry, so a re-created socket is
# connected within this time and a restarted IOC's boot output is not lost.
WATCH_INTERVAL = 0.05
# The longest retry delay (the backoff doubles up to it).
BACKOFF_CAP = 5.0
# With inotify, the kernel says when the path changes; a console whose backoff has
# reached its cap then retries only this often on its own (a socket file that
# starts accepting without any change to the file is the case it covers). Each
# retry costs ~0.14 ms: 1,000 down consoles retrying every 30 s cost 0.47 % of a core
# (bench, Dec 3); every 120 s, about 0.12 %.
WATCHED_RETRY = 120.0


@dataclass(frozen=True)
class UnixTarget:
    path: Path

    def __str__(self) -> str:
        return f"unix:{self.path}"


@dataclass(frozen=True)
class TcpTarget:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Target = UnixTarget | TcpTarget


async def connect(target: Target) -> trio.SocketStream:
    """Open a stream to the console; raises OSError when it cannot."""
    if isinstance(target, UnixTarget):
        return await trio.open_unix_socket(os.fspath(target.path))
    return await trio.open_tcp_stream(target.host, target.port)


class Backoff:
    """Retry delays: ``first``, doubling, capped at ``cap``; ``reset()`` after a good connection."""

    def __init__(self, first: float = 0.1, cap: float = BACKOFF_CAP, factor: float = 2.0) -> None:
        self.first, self.cap, self.factor = first, cap, factor
        self._next = first

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay

    def reset(self) -> None:
        self._next = self.first


def path_identity(path: Path) -> tuple[int, int, int] | None:
    """What tells a re-created socket file from the old one; None when absent."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns)


async def wait_retry(
    target: Target,
    delay: float,
    seen: tuple[int, int, int] | None,
    watcher: PathWatcher | None = None,
) -> bool:
    """Wait ``delay`` seconds, or less once a UNIX socket path appears or is re-created.

    ``seen`` is the path's identity when the last attempt failed (None if absent).
    With a ``watcher`` the kernel says when the path changes, and nothing runs
    while it does not: once the backoff has reached its cap the wait is
    `WATCHED_RETRY` (a short delay still counts: a socket just bound may not be
    listening yet). Without one the path is polled every `WATCH_INTERVAL`.
    True if the path changed: retry at once, it is a new procServ.
    """
    if not isinstance(target, UnixTarget):
        await trio.sleep(delay)
        return False
    path = target.path

    def unchanged() -> bool:
        return path_identity(path) in (None, seen)

    if watcher is not None:
        watched = True
        with trio.move_on_after(WATCHED_RETRY if delay >= BACKOFF_CAP else delay):
            while unchanged():  # woken when it went away, or its directory changed
                if not await watcher.wait_changed(path, unchanged):
                    watched = False  # no inotify watch to be had: poll below
                    break
            else:
                return True
        if watched:
            return False
    with trio.move_on_after(delay):
        for _ in range(math.ceil(delay / WATCH_INTERVAL) + 1):
            await trio.sleep(WATCH_INTERVAL)
            now = path_identity(path)
            if now is not None and now != seen:
                return True
    return False
