"""pathwatch.py and the waits built on it: real inotify on tmp_path, real UNIX sockets.

A down console must cost nothing while nothing happens (no timer, no poll) and
must still see its socket appear at once, even when the directories on the way
to it do not exist yet (ESS layout: /run/procServ/NAME/ comes and goes with the
unit).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from consrv.console import Console
from consrv.pathwatch import PathWatcher
from consrv.registry import glob_directories
from consrv.upstream import WATCHED_RETRY, UnixTarget, path_identity, wait_retry
from tests.waits import deadline


@asynccontextmanager
async def watcher() -> AsyncIterator[PathWatcher]:
    found = PathWatcher.open()
    assert found is not None, "inotify is available on Linux"
    async with trio.open_nursery() as nursery:
        await nursery.start(found.run)
        yield found
        nursery.cancel_scope.cancel()


def bind(path: Path) -> socket.socket:
    """A listening UNIX socket at ``path``, as procServ makes one."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    return sock


class Calls:
    def __init__(self) -> None:
        self.count = 0
        self.event = trio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self, what: str) -> None:
        with deadline(2, what):
            await self.event.wait()
        self.event = trio.Event()


async def test_a_path_whose_directories_do_not_exist_yet_is_seen_appearing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "procServ" / "my-ioc" / "control"
    calls = Calls()
    async with watcher() as w:
        with w.subscribe(path, calls):
            assert w.watched_directories() == 1  # tmp_path: the deepest that exists
            path.parent.parent.mkdir()
            await calls.next("procServ/ to appear")
            path.parent.mkdir()
            await calls.next("procServ/my-ioc/ to appear")
            assert w.watched_directories() == 1  # moved down, the old watch dropped
            with bind(path):
                await calls.next("the socket to appear")
            path.unlink()
            await calls.next("the socket to go")
            path.parent.rmdir()  # the unit stopped: its runtime directory goes
            await calls.next("procServ/my-ioc/ to go")
            path.parent.mkdir()
            with bind(path):
                await calls.next("the socket in a re-created directory")
        assert w.watched_directories() == 0  # closing the last subscription unwatches


async def test_other_names_in_the_directory_do_not_wake_a_path(tmp_path: Path) -> None:
    calls = Calls()
    async with watcher() as w:
        with w.subscribe(tmp_path / "control", calls):
            (tmp_path / "info").write_text("pid:1\n")
            (tmp_path / "other").mkdir()
            with bind(tmp_path / "control"):
                await calls.next("control to appear")
    assert calls.count == 1


async def test_inside_a_directory_every_name_counts(tmp_path: Path) -> None:
    calls = Calls()
    directory = tmp_path / "procServ"
    async with watcher() as w:
        with w.subscribe_inside(directory, calls):
            directory.mkdir()
            await calls.next("procServ/ itself to appear")
            (directory / "new-ioc").mkdir()
            await calls.next("a new IOC directory in it")


def test_glob_directories_are_the_ones_a_glob_reads(tmp_path: Path) -> None:
    (tmp_path / "procServ" / "a").mkdir(parents=True)
    (tmp_path / "procServ" / "b").mkdir()
    (tmp_path / "procServ" / "file").write_text("")
    assert glob_directories(f"{tmp_path}/procServ/*/control") == {
        tmp_path / "procServ",
        tmp_path / "procServ" / "a",
        tmp_path / "procServ" / "b",
    }
    assert glob_directories(f"{tmp_path}/run/ioc-*.sock") == {tmp_path / "run"}


async def test_wait_retry_returns_when_the_socket_appears(tmp_path: Path) -> None:
    path = tmp_path / "ioc" / "control"
    async with watcher() as w, trio.open_nursery() as nursery:
        result: list[bool] = []

        async def wait() -> None:
            result.append(await wait_retry(UnixTarget(path), 5.0, None, w))

        nursery.start_soon(wait)
        await trio.sleep(0.05)
        path.parent.mkdir()
        await trio.sleep(0.05)
        assert not result, "a directory alone is not a socket"
        started = trio.current_time()
        with bind(path), deadline(1, "wait_retry to return for the new socket"):
            while not result:
                await trio.sleep(0.001)
        assert result == [True]
        assert trio.current_time() - started < 0.1


class StepCounter(trio.abc.Instrument):
    """Counts task steps: a task that wakes up is a task step."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def count_steps(seconds: float) -> int:
    counter = StepCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        await trio.sleep(seconds)
    finally:
        trio.lowlevel.remove_instrument(counter)
    return counter.steps


@pytest.mark.parametrize(
    ("watched", "count", "minutes"),
    [(True, 200, 10.0), (False, 10, 0.1)],  # polling is costly to simulate too: less of it
)
async def test_down_consoles_cost_nothing_while_nothing_changes(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    watched: bool,
    count: int,
    minutes: float,
) -> None:
    """Consoles whose sockets do not exist, watched by inotify or polled."""
    async with watcher() as w, trio.open_nursery() as nursery:
        for i in range(count):
            console = Console(f"c{i}", UnixTarget(tmp_path / f"c{i}" / "control"), scrollback=64)
            console.watcher = w if watched else None
            nursery.start_soon(console.run)
        await trio.sleep(60)  # the backoff reaches its cap
        steps = await count_steps(60 * minutes)
        nursery.cancel_scope.cancel()
    per_console_minute = steps / count / minutes
    if watched:
        # one retry per WATCHED_RETRY (and its connect): nothing else runs
        assert per_console_minute <= 2 * 60 / WATCHED_RETRY + 0.5, per_console_minute
    else:
        assert per_console_minute > 1000  # polling every 50 ms: what inotify removes


async def test_a_console_connects_to_a_socket_made_after_a_long_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "procServ" / "late" / "control"
    async with watcher() as w, trio.open_nursery() as nursery:
        console = Console("late", UnixTarget(path), scrollback=1024)
        console.watcher = w
        nursery.start_soon(console.run)
        await trio.sleep(3600)  # down for an hour: backoff long at its cap
        path.parent.mkdir(parents=True)
        with bind(path) as server:
            started = trio.current_time()
            server.setblocking(False)
            with deadline(1, "the console to connect to the new socket"):
                while True:
                    try:
                        conn, _ = server.accept()
                        break
                    except BlockingIOError:
                        await trio.sleep(0.001)
            conn.close()
            assert trio.current_time() - started < 0.1
            assert path_identity(path) is not None
        nursery.cancel_scope.cancel()
