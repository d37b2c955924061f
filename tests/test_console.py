"""The console engine over a real UNIX socket, with a scripted peer playing procServ.

Policy: loopback / UNIX sockets in tmp_path only; every wait is bounded
(``tests.waits.deadline``); real procServ is exercised in tests/integration.
"""

from __future__ import annotations

from pathlib import Path

import trio

from consrv.access import Role
from consrv.console import READ_SIZE, Console, Viewer
from consrv.consolelog import ConsoleLog
from consrv.upstream import Backoff, TcpTarget, UnixTarget
from tests.fakes import MemorySink, running, unix_server, wait_for

BANNER = (
    b"@@@ Welcome to procServ (procServ Process Server 2.7.0)\r\n"
    b'@@@ Child "T" PID: 4242\r\n'
    b"\xff\xfb\x01\xff\xfd\x22"
)


def make_console(path: Path, log: ConsoleLog | None = None) -> Console:
    return Console("t-ioc", UnixTarget(path), scrollback=1024, log=log)


async def test_output_reaches_viewers_log_and_scrollback_without_telnet(tmp_path: Path) -> None:
    server_path = tmp_path / "ctl"
    log = ConsoleLog(tmp_path / "logs" / "t-ioc.log")
    console = make_console(server_path, log)
    sinks = [MemorySink(), MemorySink()]
    async with unix_server(server_path) as server, running(console):
        for sink in sinks:
            console.attach(Viewer(sink, user="u", role=Role.RO, limit=1 << 20))
        peer = await server.next_peer()
        await peer.send(BANNER + b"epics> \xff\xff\xfe\r\n")
        await wait_for(lambda: b"epics>" in sinks[1].data, what="the prompt at the second viewer")
    for sink in sinks:
        assert b"\xff\xfb" not in sink.data
        assert b"epics> \xff\xfe\r\n" in sink.data
    assert console.child_pid == 4242
    assert console.scrollback.data().endswith(b"epics> \xff\xfe\r\n")
    logged = (tmp_path / "logs" / "t-ioc.log").read_bytes()
    assert b"epics> \xff\xfe\r\n" in logged
    assert b"\xff\xfb" not in logged


async def test_slow_viewer_drops_and_is_told_others_get_everything(tmp_path: Path) -> None:
    server_path = tmp_path / "ctl"
    console = make_console(server_path)
    slow, fast = MemorySink(), MemorySink()
    slow.stalled = True
    chunk = b"x" * 1000 + b"\r\n"
    async with unix_server(server_path) as server, running(console):
        console.attach(Viewer(slow, user="slow", role=Role.RO, limit=4096))
        console.attach(Viewer(fast, user="fast", role=Role.RO, limit=4096))
        peer = await server.next_peer()
        for _ in range(100):
            await peer.send(chunk)
        await wait_for(
            lambda: fast.data.count(chunk) == 100, what="all 100 chunks at the fast viewer"
        )
        held_while_stalled = slow.unread
        slow.take()  # the slow peer catches up; the next output carries the notice
        await peer.send(b"after\r\n")
        await wait_for(lambda: b"after" in slow.data, what="'after' at the slow viewer")
    assert held_while_stalled < 4096 + READ_SIZE  # the bound, plus at most one read
    dropped = 100 * len(chunk) - held_while_stalled
    assert f"[consrv: {dropped} bytes dropped]".encode() in slow.notices
    assert slow.data.index(b"bytes dropped") < slow.data.index(b"after")


async def test_down_and_up_are_announced_and_reconnect_is_fast(tmp_path: Path) -> None:
    path = tmp_path / "ctl"
    console = make_console(path)
    sink = MemorySink()
    console.attach(Viewer(sink, user="u", role=Role.RO, limit=1 << 20))
    async with running(console):
        async with unix_server(path) as server:
            peer = await server.next_peer()
            await wait_for(lambda: console.up, what="the console to be up")
            await peer.stream.aclose()
            await wait_for(lambda: b"[consrv: t-ioc down]" in sink.notices, what="the down notice")
        path.unlink()
        await trio.sleep(1.0)  # long enough for the backoff to grow past WATCH_INTERVAL
        started = trio.current_time()
        async with unix_server(path) as server:
            await server.next_peer()
            assert trio.current_time() - started < 0.5
            await wait_for(
                lambda: sink.notices.count(b"[consrv: t-ioc up]") == 2, what="a second up notice"
            )
    assert console.stats.connects == 2


async def test_tcp_upstream(tmp_path: Path) -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    console = Console("tcp-ioc", TcpTarget("127.0.0.1", port), scrollback=1024)
    sink = MemorySink()
    console.attach(Viewer(sink, user="u", role=Role.RO, limit=4096))
    async with running(console), listeners[0]:
        stream = await listeners[0].accept()
        await stream.send_all(BANNER + b"hello over tcp\r\n")
        await wait_for(lambda: b"hello over tcp" in sink.data, what="the TCP peer's line")
        await stream.aclose()


def test_backoff_starts_small_and_caps() -> None:
    backoff = Backoff()
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[0] <= 0.5
    assert max(delays) <= 5.0
    assert delays == sorted(delays)
    backoff.reset()
    assert backoff.next_delay() == delays[0]
