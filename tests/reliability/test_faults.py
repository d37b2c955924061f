"""Faults consrv must ride out (issue 6, item 3), with real procServ and real SSH clients.

procServ is killed and restarted, its child crash-loops, its socket is deleted and
replaced, an upstream accepts and says nothing, a flood meets 20 viewers and a
stalled one, the log file system fills up, an SSH client vanishes. Each test says
what must keep working and checks it from outside (ssh replies, what procServ got,
/proc, /metrics).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio
import trio_asyncio

from consrv.demo import ProcServ
from tests.integration.test_metrics_live import key, scrape
from tests.reliability.conftest import Site
from tests.reliability.probes import (
    CAT,
    booting,
    open_fds,
    openssh,
    run_command,
    status_field,
)
from tests.sshclients import PtySSH, scripted_ssh, ssh_argv
from tests.waits import deadline

pytestmark = pytest.mark.integration


async def console_json(site: Site, name: str) -> dict[str, Any]:
    reply = await run_command(site.port, site.key("olga"), "observer", f"status {name} --json")
    assert reply.status == 0, reply
    (console,) = json.loads(reply.stdout)["consoles"]
    assert isinstance(console, dict)
    return console


async def who(site: Site, name: str) -> list[str]:
    """The users attached to console ``name``, from ``who NAME --json``."""
    reply = await run_command(site.port, site.key("olga"), "observer", f"who {name} --json")
    assert reply.status == 0, reply
    return [entry["user"] for entry in json.loads(reply.stdout)["users"]]


async def wait_who(site: Site, name: str, users: list[str], timeout: float = 5) -> None:
    seen: list[str] = []
    what = f"`who {name} --json` to list exactly {sorted(users)}"
    with deadline(timeout, what, lambda: seen):
        while (seen := sorted(await who(site, name))) != sorted(users):
            await trio.sleep(0.1)


async def within(seconds: float, wait: Awaitable[object]) -> bool:
    """True if ``wait`` finishes within ``seconds`` (for outcomes asserted afterwards)."""
    with trio.move_on_after(seconds):
        await wait
        return True
    return False


# ---------------------------------------------------------------- procServ killed, restarted


async def test_procserv_killed_then_restarted_late_users_see_down_up_and_boot_output(
    site: Site,
) -> None:
    first = site.procserv("kr", booting("first"))
    site.start({"kr": site.socket_of("kr")})
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", "kr") as alice,
        scripted_ssh(site.port, site.key("olga"), "observer", "kr") as olga,
    ):
        users = (alice, olga)
        for user in users:
            await user.expect(rb"attached to kr", stderr=True)
        first.kill()  # SIGKILL: no goodbye, the socket file stays behind (stale)
        for user in users:
            await user.expect(rb"\[consrv: kr down\]", stderr=True)
        down = await console_json(site, "kr")
        assert (down["state"], down["connected"]) == ("down", False)
        await trio.sleep(3.0)  # consrv's backoff grows to 3.2 s: the path watch must act
        for user in users:
            user.stdout.clear()
        second = site.procserv("kr", booting("second"))
        for user in users:
            await user.expect(rb"\[consrv: kr up\]", stderr=True)
            await user.expect(rb"BOOT second \d+")  # the child's first words are not lost
        match = re.search(rb"BOOT second (\d+)", alice.stdout)
        assert match is not None
        witness = site.witness(second.socket)
        alice.send(b"typed after the restart\n")
        await witness.expect(rb"typed after the restart")  # input reaches the new procServ
        up = await console_json(site, "kr")
        assert (up["state"], up["connected"], up["child_pid"]) == ("up", True, int(match[1]))


# ---------------------------------------------------------------- a crash loop


async def test_an_ioc_in_a_crash_loop_is_counted_and_consrv_stays_responsive(site: Site) -> None:
    site.procserv("crash", ["/bin/sh", "-c", "echo crashing now; exit 3"], child=False)
    calm = site.procserv("calm", CAT)
    site.start({"crash": site.socket_of("crash"), "calm": site.socket_of("calm")})
    witness = site.witness(calm.socket)
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("olga"), "observer", "crash") as watcher,
        scripted_ssh(site.port, site.key("alice"), "console", "calm") as alice,
    ):
        await watcher.expect(rb"attached to crash", stderr=True)
        await alice.expect(rb"you write", stderr=True)
        first = await console_json(site, "crash")
        samples = []
        for i in range(6):  # ~3 s: procServ restarts the child once a second (holdoff 1)
            started = time.monotonic()
            now = await console_json(site, "crash")
            samples.append(time.monotonic() - started)
            alice.send(f"calm line {i}\n".encode())
            await witness.expect(rf"calm line {i}".encode(), timeout=2)
            await trio.sleep(0.5)
        assert now["child_exits"] - first["child_exits"] >= 2, (first, now)
        assert now["child_starts"] - first["child_starts"] >= 2, (first, now)
        assert max(samples) < 1.0, f"status took {max(samples):.2f} s during the crash loop"
        await watcher.expect(rb"Normal exit status = 3")
    assert watcher.stdout.count(b"crashing now") >= 3  # every boot's output reaches viewers


# ---------------------------------------------------------------- the socket path deleted, replaced


async def test_socket_path_deleted_then_replaced_consrv_follows_the_new_procserv(
    site: Site,
) -> None:
    old = site.procserv("swap", booting("old"))
    site.start({"swap": site.socket_of("swap")})
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", "swap") as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        old.socket.unlink()  # deleted: the old procServ runs on, unreachable by path
        alice.send(b"still the old one\n")
        await alice.expect(rb"still the old one")  # the live connection keeps serving
        assert (await console_json(site, "swap"))["state"] == "up"
        new = site.procserv("swap", booting("new"))  # another procServ takes the path
        witness = site.witness(new.socket)
        # consrv checks the path every PATH_CHECK_INTERVAL; the new child may have
        # booted before that, so what proves the move is the new child's pid.
        followed = await within(3, alice.expect(rb"swap down\][\s\S]*swap up\]", stderr=True))
        status = await console_json(site, "swap")
        assert (status["state"], status["child_pid"]) == ("up", new.child_pids()[0]), status
        alice.send(b"meant for the new one\n")
        reached = await within(1, witness.expect(rb"meant for the new one"))
    assert followed, "consrv did not connect to the procServ now at the socket path"
    assert reached, "input went to the old procServ, not to the one at the socket path"


# ---------------------------------------------------------------- an upstream that never speaks


async def hold_connections(
    listener: trio.SocketListener, held: list[trio.SocketStream], accepted: trio.Event
) -> None:
    """Accept and keep every connection, never reading or writing a byte."""
    while True:
        held.append(await listener.accept())
        accepted.set()


async def test_an_upstream_that_accepts_and_never_speaks_harms_nobody(site: Site) -> None:
    calm = site.procserv("calm", CAT)
    path = site.root / "silent.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen()
    held: list[trio.SocketStream] = []
    accepted = trio.Event()
    async with trio.SocketListener(sock) as listener, trio.open_nursery() as nursery:
        nursery.start_soon(hold_connections, listener, held, accepted)
        site.start({"silent": {"socket": str(path)}, "calm": site.socket_of("calm")})
        with deadline(5, f"consrv to connect to the silent upstream at {path}"):
            await accepted.wait()
        await check_silent_upstream(site, calm)
        started = time.monotonic()
        assert await trio.to_thread.run_sync(site.consrv.stop) == 0  # SIGTERM, an olga attached
        assert time.monotonic() - started < 5.0
        nursery.cancel_scope.cancel()
    for stream in held:
        await stream.aclose()


async def check_silent_upstream(site: Site, calm: ProcServ) -> None:
    witness = site.witness(calm.socket)
    async with trio_asyncio.open_loop():
        listed = await run_command(site.port, site.key("olga"), "observer", "list", timeout=3)
        assert listed.status == 0
        assert [line.split()[0] for line in listed.stdout.decode().splitlines()[1:]] == [
            "calm",
            "silent",
        ]
        async with (
            scripted_ssh(site.port, site.key("olga"), "observer", "silent") as olga,
            scripted_ssh(site.port, site.key("bob"), "console", "calm") as bob,
        ):
            await olga.expect(rb"attached to silent: read-only", stderr=True)
            await bob.expect(rb"you write", stderr=True)
            async with scripted_ssh(site.port, site.key("alice"), "console", "silent") as alice:
                await alice.expect(rb"you write", stderr=True)
                alice.send(b"p" * 1_000_000 + b"\n")  # procServ (here: nobody) never reads it
                await trio.sleep(0.5)
                for i in range(3):  # the other console and the commands carry on
                    bob.send(f"calm {i}\n".encode())
                    await witness.expect(f"calm {i}".encode(), timeout=2)
                    status = await run_command(
                        site.port, site.key("olga"), "observer", "status silent", timeout=3
                    )
                    assert status.status == 0
                assert sorted(await who(site, "silent")) == ["alice", "olga"]
            await wait_who(site, "silent", ["olga"])  # alice gave up: her stuck session is gone


# ---------------------------------------------------------------- a flood, 20 viewers, one stalled

# Full speed: one 64 KB line after another, each starting with the child's clock.
FLOOD = """\
import sys, time
pad = b"x" * 65000
out = sys.stdout.buffer
while True:
    out.write(b"tick %.6f " % time.time() + pad + b"\\n")
    out.flush()
"""
TICK = rb"tick (\d{10}\.\d{6}) "
VIEWERS = 20
FLOOD_SECONDS = 4.0
WARM_UP = 1.0  # lags are counted after this (attaching, first windows)
RSS_BOUND_KIB = 300 * 1024


class TickViewer:
    """An OpenSSH observer (a real client process) whose output grep cuts down to the
    tick stamps, so the test reads a few bytes a tick however fast the flood is."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.lags: list[tuple[float, float]] = []  # (when read, how late)
        self.ssh: trio.Process | None = None
        self.grep: trio.Process | None = None

    async def start(self, *, grep: bool = True) -> TickViewer:
        read_end, write_end = os.pipe() if grep else (-1, subprocess.DEVNULL)
        try:
            self.ssh = await trio.lowlevel.open_process(
                self.argv, stdin=subprocess.PIPE, stdout=write_end, stderr=subprocess.PIPE
            )  # stdin stays open: an EOF would end the session
            if grep:
                self.grep = await trio.lowlevel.open_process(
                    ["grep", "--line-buffered", "-aoE", r"tick [0-9]{10}\.[0-9]{6} "],
                    stdin=read_end, stdout=subprocess.PIPE,
                )  # fmt: skip
        finally:
            if grep:
                os.close(read_end)
                os.close(write_end)
        return self

    async def read_ticks(self) -> None:
        assert self.grep is not None
        assert self.grep.stdout is not None
        rest = b""
        while data := await self.grep.stdout.receive_some(65536):
            now = time.time()
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            for line in lines:
                match = re.match(TICK, line)
                assert match is not None, line
                self.lags.append((now, now - float(match.group(1))))

    async def stderr(self) -> bytes:
        assert self.ssh is not None
        assert self.ssh.stderr is not None
        return bytes(await self.ssh.stderr.receive_some(65536))

    async def aclose(self) -> None:
        for process in (self.ssh, self.grep):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
            if process is not None:
                for stream in (process.stdin, process.stdout, process.stderr):
                    if stream is not None:
                        await stream.aclose()


async def sample_rss(pid: int, samples: list[int]) -> None:
    while True:
        samples.append(status_field(pid, "VmRSS"))
        await trio.sleep(0.1)


async def test_a_flood_to_20_viewers_and_a_stalled_one_memory_bounded_none_lag(
    site: Site, record_property: Callable[[str, object], None]
) -> None:
    site.procserv("flood", [sys.executable, "-u", "-c", FLOOD])
    site.start({"flood": site.socket_of("flood")})  # viewer_buffer: the default (1M)
    await trio.sleep(1.0)  # consrv drains the flood with nobody watching
    idle_rss = status_field(site.pid, "VmRSS")
    argv = openssh(site.port, site.key("olga"), "observer", command=("flood",))
    viewers = [TickViewer(argv) for _ in range(VIEWERS)]
    stalled = TickViewer(argv)
    rss: list[int] = []
    try:
        await stalled.start(grep=False)
        said = b""
        with deadline(10, "'attached to flood' on the stalled viewer's stderr", lambda: said):
            while b"attached to flood" not in said:
                said += await stalled.stderr()
        assert stalled.ssh is not None
        stalled.ssh.send_signal(signal.SIGSTOP)  # a frozen client: reads nothing more
        async with trio.open_nursery() as nursery:
            for viewer in viewers:
                await viewer.start()
                nursery.start_soon(viewer.read_ticks)
            nursery.start_soon(sample_rss, site.pid, rss)
            began = time.time()
            await trio.sleep(FLOOD_SECONDS)
            nursery.cancel_scope.cancel()
        stalled.ssh.send_signal(signal.SIGCONT)
        told = b""
        what = "'[consrv: N bytes dropped]' on the stalled viewer's stderr once it reads again"
        with deadline(10, what, lambda: told):
            while not (dropped := re.search(rb"\[consrv: (\d+) bytes dropped\]", told)):
                told += await stalled.stderr()
        peak = status_field(site.pid, "VmHWM")
    finally:
        for viewer in (*viewers, stalled):
            await viewer.aclose()
    worst = [
        max((lag for at, lag in v.lags if at > began + WARM_UP), default=99.0) for v in viewers
    ]
    counts = [len(v.lags) for v in viewers]
    report = (
        f"consrv RSS: idle {idle_rss // 1024} MiB, during the flood max {max(rss) // 1024} MiB,"
        f" peak (VmHWM) {peak // 1024} MiB; worst viewer lag {max(worst):.3f} s;"
        f" ticks per viewer {min(counts)}-{max(counts)};"
        f" the stalled viewer was told {int(dropped[1]) // 1024} KiB dropped"
    )
    print(report)
    record_property("flood", report)
    assert int(dropped[1]) > 1 << 20, report  # dropped, not buffered: more than its 1M bound
    assert max(rss) < RSS_BOUND_KIB, report
    assert peak < RSS_BOUND_KIB, report
    assert min(counts) >= 20, report  # every viewer kept receiving
    assert max(worst) < 1.0, report


# ---------------------------------------------------------------- the log file system full


def fill_up(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system is full (ENOSPC)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 1):  # big writes, then the last partial page
            with pytest.raises(OSError, match="No space left"):
                write_forever(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def write_forever(fd: int, data: bytes) -> None:
    while True:
        os.write(fd, data)


async def test_a_full_log_file_system_counts_errors_serves_on_and_resumes(site: Site) -> None:
    logs = site.mount_tmpfs(site.logs, "256k")
    filler = fill_up(logs)
    site.procserv("full", CAT)
    site.start({"full": site.socket_of("full")}, metrics={"listen": "127.0.0.1:0"})
    metrics = site.consrv.metrics_port()
    errors = key("consrv_console_log_write_errors_total", console="full")
    lost = key("consrv_console_log_lost_bytes_total", console="full")
    log = logs / "full.log"
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", "full") as alice,
        scripted_ssh(site.port, site.key("olga"), "observer", "full") as olga,
    ):
        await alice.expect(rb"you write", stderr=True)
        await olga.expect(rb"attached to full", stderr=True)
        for i in range(5):
            alice.send(f"line {i} while the disk is full\n".encode())
            await olga.expect(rf"line {i} while the disk is full".encode())  # served
        scraped = await scrape(metrics)
        assert scraped[errors] >= 1
        assert scraped[lost] > 0
        assert b"while the disk is full" not in log.read_bytes()
        filler.unlink()  # space returns
        await trio.sleep(1.2)  # consrv retries the log once a second
        alice.send(b"logged again\n")
        await olga.expect(rb"logged again")
        with deadline(5, f"'logged again' in {log} once space returned", log.read_bytes):
            while b"logged again" not in log.read_bytes():
                await trio.sleep(0.1)
                alice.send(b"logged again\n")
    text = log.read_bytes()
    assert re.search(rb"\[consrv [^]]+\] log resumed after \d+ bytes lost", text), text


# ---------------------------------------------------------------- an SSH client vanishes


def reset_connection(conn: asyncssh.SSHClientConnection) -> None:
    """Close an asyncssh connection's TCP socket with a RST, as a crashed host would look."""
    sock = conn.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.abort()


async def test_ssh_clients_that_vanish_are_dropped_and_nobody_else_notices(site: Site) -> None:
    procserv = site.procserv("gone", CAT)
    site.start({"gone": site.socket_of("gone")})
    witness = site.witness(procserv.socket)
    fds_before = open_fds(site.pid)
    alice = await PtySSH(ssh_argv(site.port, site.key("alice"), "console", "gone")).start()
    try:
        await alice.expect(rb"you write")
        async with (
            trio_asyncio.open_loop(),
            scripted_ssh(site.port, site.key("bob"), "console", "gone") as bob,
            scripted_ssh(site.port, site.key("olga"), "observer", "gone") as olga,
        ):
            await bob.expect(rb"watching", stderr=True)
            await olga.expect(rb"attached to gone", stderr=True)
            async with scripted_ssh(site.port, site.key("olga"), "observer", "gone") as doomed:
                await doomed.expect(rb"attached to gone", stderr=True)
                await wait_who(site, "gone", ["alice", "bob", "olga", "olga"])
                assert alice.process is not None
                alice.process.kill()  # kill -9 the OpenSSH client: the writer vanishes
                reset_connection(doomed.conn)  # and an observer's TCP connection is reset
                await wait_who(site, "gone", ["bob", "olga"])
            await bob.expect(rb"alice left; nobody writes", stderr=True)
            await olga.expect(rb"alice left; nobody writes", stderr=True)
            bob.send(b"\x05ca")  # ^Eca: the lock is free, bob takes it
            await bob.expect(rb"you now write", stderr=True)
            bob.send(b"bob carries on\n")
            await witness.expect(rb"bob carries on")
            await olga.expect(rb"bob carries on")
    finally:
        await alice.aclose()
    # every descriptor of the sessions above is given back
    what = f"consrv's open descriptors to fall back to {fds_before}"
    with deadline(5, what, lambda: open_fds(site.pid)):
        while open_fds(site.pid) > fds_before:
            await trio.sleep(0.1)


async def test_a_writer_whose_ioc_stopped_reading_can_still_detach(site: Site) -> None:
    """A hung IOC: its child never reads its input, so procServ blocks writing to the pty
    (and reads no client) once the pty is full; the writer pasted more than that."""
    site.procserv("hung", ["/bin/sh", "-c", "stty raw -echo; echo hung; exec sleep 100000"])
    site.start({"hung": site.socket_of("hung")})
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", "hung", pty=True) as alice,
        scripted_ssh(site.port, site.key("olga"), "observer", "hung", pty=True) as olga,
    ):
        await alice.expect(rb"you write", stderr=True)
        await olga.expect(rb"attached to hung", stderr=True)
        alice.send(b"p" * 1_000_000 + b"\r")  # far more than the pty and the sockets hold
        await trio.sleep(1.0)
        alice.send(b"\x05c.")  # ^Ec.: detach
        detached = await within(3, alice.expect(rb"detached from hung", stderr=True))
        olga.send(b"\x05cw")  # the observer is served on
        await olga.expect(rb"olga", stderr=True)
        status = await console_json(site, "hung")
    site.procservs["hung"].kill()  # it is stuck in a write: SIGTERM would wait for 5 s
    assert status["state"] == "up"
    assert detached, "^Ec. was not acted on while procServ did not take the writer's input"
