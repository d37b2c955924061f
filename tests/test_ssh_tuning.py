"""consrv.ssh.compat's performance hooks: callbacks run in passes; options are kept.

A real trio-asyncio loop (no fakes): a trio instrument counts the scheduler's
rounds (one wait for I/O each), and each callback notes the round it ran in.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import asyncssh
import trio
import trio_asyncio

from consrv.ssh.compat import run_ready_callbacks_together, skip_config_reload
from consrv.ssh.keys import write_new_key


class Rounds(trio.abc.Instrument):
    """Counts trio's scheduler rounds: each ends in one wait for I/O (``epoll_wait``)."""

    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def rounds_of(callbacks: int, *, batched: bool) -> list[int]:
    """Queue ``callbacks`` callbacks at once: the round each ran in."""
    ran: list[int] = []
    rounds = Rounds()
    async with trio_asyncio.open_loop() as loop:
        if batched:
            assert run_ready_callbacks_together(loop)
        await trio_asyncio.aio_as_trio(asyncio.sleep)(0)  # the loop runs the new pass
        trio.lowlevel.add_instrument(rounds)
        try:
            done = trio.Event()
            for _ in range(callbacks):
                loop.call_soon(lambda: ran.append(rounds.count))
            loop.call_soon(done.set)
            await done.wait()
        finally:
            trio.lowlevel.remove_instrument(rounds)
    return ran


async def test_callbacks_queued_together_run_in_one_round() -> None:
    ran = await rounds_of(10, batched=True)
    assert len(set(ran)) == 1, ran


async def test_without_it_each_callback_takes_a_round_of_its_own() -> None:
    """What the change is for: trio-asyncio alone runs one callback per round."""
    ran = await rounds_of(10, batched=False)
    assert len(set(ran)) == 10, ran


async def test_a_callback_that_reschedules_itself_does_not_starve_trio() -> None:
    """Each pass is bounded by what was queued when it began (as in asyncio), so trio's
    tasks run between passes."""
    rounds = Rounds()
    ran: list[int] = []
    async with trio_asyncio.open_loop() as loop:
        run_ready_callbacks_together(loop)
        trio.lowlevel.add_instrument(rounds)
        try:
            stop = False

            def again() -> None:
                ran.append(rounds.count)
                if not stop:
                    loop.call_soon(again)

            loop.call_soon(again)
            await trio.sleep(0.05)  # a trio task that needs the scheduler to come back
            stop = True
            before_exit = list(ran)  # the loop's exit drains the last ones without rounds
        finally:
            trio.lowlevel.remove_instrument(rounds)
    assert len(before_exit) > 10
    assert max(Counter(before_exit).values()) <= 2, Counter(before_exit)


def test_a_loop_without_those_parts_is_left_alone() -> None:
    class Other:
        pass

    other = Other()
    assert not run_ready_callbacks_together(other)
    assert not hasattr(other, "_main_loop_one")


async def test_order_is_kept() -> None:
    seen: list[int] = []
    async with trio_asyncio.open_loop() as loop:
        run_ready_callbacks_together(loop)
        done = trio.Event()
        for n in range(20):
            loop.call_soon(seen.append, n)
        loop.call_soon(done.set)
        await done.wait()
    assert seen == list(range(20))


async def test_timers_and_asyncio_tasks_still_run() -> None:
    async def sleeper() -> str:
        await asyncio.sleep(0.01)
        return "woke"

    async with trio_asyncio.open_loop() as loop:
        run_ready_callbacks_together(loop)
        got = await trio_asyncio.aio_as_trio(sleeper)()
    assert got == "woke"


async def test_a_connection_keeps_its_options_at_its_first_authentication(
    tmp_path: Path,
) -> None:
    """A login through asyncssh with ``skip_config_reload`` on the server's connection:
    it authenticates, and asyncssh's options rebuild (a worker thread) never runs."""
    host_key = write_new_key(tmp_path / "host", "host")
    user_key = write_new_key(tmp_path / "user", "user")
    reloads: list[str] = []

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            reload = conn.reload_config
            skip_config_reload(conn)
            if conn.reload_config == reload:
                reloads.append("not replaced")

        def begin_auth(self, username: str) -> bool:
            return True

        def public_key_auth_supported(self) -> bool:
            return True

        def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
            return key.public_data == user_key.public_data

    async def login() -> str:
        server = await asyncssh.create_server(
            Server, "127.0.0.1", 0, server_host_keys=[host_key],
            process_factory=lambda process: process.exit(0),
        )  # fmt: skip
        port = server.sockets[0].getsockname()[1]
        original = asyncssh.SSHServerConnection.reload_config

        async def counted(self: asyncssh.SSHServerConnection) -> None:
            reloads.append("reloaded")
            await original(self)

        asyncssh.SSHServerConnection.reload_config = counted  # type: ignore[method-assign]
        try:
            async with asyncssh.connect(
                "127.0.0.1", port, username="console", client_keys=[user_key],
                known_hosts=None, config=None,
            ) as conn:  # fmt: skip
                result = await conn.run("x")
        finally:
            asyncssh.SSHServerConnection.reload_config = original  # type: ignore[method-assign]
            server.close()
            await server.wait_closed()
        return str(result.exit_status)

    async with trio_asyncio.open_loop():
        status = await trio_asyncio.aio_as_trio(login)()
    assert status == "0"
    assert reloads == []
