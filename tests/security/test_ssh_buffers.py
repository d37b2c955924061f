"""What a read-only client can make consrv keep in the SSH layer (issue 13, item 4, SSH part).

1,500 ``env`` requests of 30 KB on one observer's channel grew consrv by 44 MiB:
asyncssh keeps every one, and consrv uses none. Now they are refused and dropped
unread. Session channels per connection are capped (``ssh.max_sessions``, sshd's
MaxSessions): each one is a task, a viewer and a window of buffered input.

The client is asyncssh, logged in as the observer (read-only); consrv's memory is
read from /proc (VmRSS), as ``ps`` would show it.

Policy: loopback only, port 0, every wait bounded; consrv and procServ are
stopped by the ``site`` fixture.
"""

from __future__ import annotations

import asyncssh
import pytest
import trio
import trio_asyncio

from tests.integration.test_metrics_live import key, scrape
from tests.reliability.conftest import Site
from tests.reliability.probes import CAT, status_field
from tests.sshclients import _Collector
from tests.waits import deadline

pytestmark = pytest.mark.integration

IOC = "buf-ioc"
ENV_REQUESTS = 1500
ENV_VALUE = "x" * 30_000  # 45 MB in all
GROWTH_LIMIT_KIB = 12 << 10  # the attack grew consrv by 44 MiB before


async def observer(site: Site) -> asyncssh.SSHClientConnection:
    connection: asyncssh.SSHClientConnection = await trio_asyncio.aio_as_trio(asyncssh.connect)(
        "127.0.0.1", site.port, username="observer", client_keys=[str(site.key("olga"))],
        known_hosts=None, agent_path=None, connect_timeout=5,
    )  # fmt: skip
    return connection


async def close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    with deadline(10, "the observer's connection to close"):
        await trio_asyncio.aio_as_trio(conn.wait_closed)()


async def test_env_requests_from_an_observer_are_refused_and_kept_nowhere(site: Site) -> None:
    site.procserv(IOC, CAT)
    site.start({IOC: site.socket_of(IOC)})
    env = {f"CONSRV_FLOOD_{i}": ENV_VALUE for i in range(ENV_REQUESTS)}
    async with trio_asyncio.open_loop():
        conn = await observer(site)  # one login first: imports, caches
        try:
            result = await trio_asyncio.aio_as_trio(conn.run)("list", timeout=10)
            assert result.exit_status == 0, result
            await trio.sleep(0.5)
            before = status_field(site.pid, "VmRSS")
            with deadline(60, "a session sent 1,500 env requests to run `list` and end"):
                _chan, session = await trio_asyncio.aio_as_trio(conn.create_session)(
                    _Collector, "list", env=env, encoding=None
                )
                await session.closed.wait()
            after = status_field(site.pid, "VmRSS")
        finally:
            await close(conn)
    assert session.exit_status == 0, bytes(session.stderr)
    assert IOC.encode() in session.stdout  # the session itself still works
    growth = after - before
    print(f"consrv RSS {before // 1024} MiB before, {after // 1024} MiB after 45 MB of env")
    assert growth < GROWTH_LIMIT_KIB, f"consrv grew by {growth} KiB under the env flood"


async def test_session_channels_per_connection_are_capped(site: Site) -> None:
    site.procserv(IOC, CAT)
    site.start(
        {IOC: site.socket_of(IOC)},
        ssh={"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"),
             "max_sessions": 3},
        metrics={"listen": "127.0.0.1:0"},
    )  # fmt: skip
    metrics = site.consrv.metrics_port()
    create = trio_asyncio.aio_as_trio
    async with trio_asyncio.open_loop():
        conn = await observer(site)
        try:
            sessions = [
                await create(conn.create_session)(_Collector, IOC, encoding=None) for _ in range(3)
            ]
            with pytest.raises(asyncssh.ChannelOpenError):
                await create(conn.create_session)(_Collector, IOC, encoding=None)
            chan, _ = sessions[0]
            chan.close()
            with deadline(10, "the closed session's channel to end"):
                await sessions[0][1].closed.wait()
            result = await create(conn.run)("list", timeout=10)  # a place is free again
            assert result.exit_status == 0, result
        finally:
            await close(conn)
    got = await scrape(metrics)
    assert got[key("consrv_ssh_sessions_refused_total")] == 1, got.consrv_lines()
