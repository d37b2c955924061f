"""Bad input from users consrv must refuse (issue 6, item 4), checked where it would land.

What reaches procServ is checked on procServ's side: the child under procServ is a
recorder (``stty raw -echo; exec cat > FILE``), so FILE holds every byte procServ
handed to the IOC, and a witness connected straight to procServ sees its own
messages (a ^X or ^T acted on). Every ``systemctl`` consrv runs goes through a
recording wrapper first in its PATH. Nothing here may change a file, start a unit
or reach procServ, and consrv must stay up and log no traceback.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    Reply,
    files_under,
    openssh,
    recorder,
    run_command,
    run_openssh,
    status_field,
)
from tests.sshclients import SSH_OPTIONS, ScriptedSSH, scripted_ssh
from tests.waits import deadline

pytestmark = pytest.mark.integration

IOC = "ab-ioc"
# systemctl, recording its arguments (one line a call) and doing nothing else.
FAKE_SYSTEMCTL = """#!/bin/sh
printf '%s\\n' "$*" >> {calls}
exit 0
"""
ACTIONS = ("start", "stop", "restart")


@dataclass
class Target:
    """An IOC console whose child records its input, consrv in front, systemctl recorded."""

    site: Site
    procserv: ProcServ
    received: Path  # every byte the IOC got
    calls: Path  # every systemctl call consrv made

    def actions(self) -> list[str]:
        """systemctl calls that would change a unit (not ``show`` / ``list-units``)."""
        return [
            line
            for line in self.calls.read_text().splitlines()
            if any(word in ACTIONS for word in line.split())
        ]

    def tracebacks(self) -> list[str]:
        return re.findall(r"Traceback|session of \S+ failed", self.site.consrv.stderr())


@pytest.fixture
def target(site: Site) -> Target:
    received = site.root / "received"
    procserv = site.procserv(IOC, recorder(received))
    calls = site.root / "systemctl.calls"
    calls.touch()
    bin_dir = site.root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "systemctl"
    wrapper.write_text(FAKE_SYSTEMCTL.format(calls=shlex.quote(str(calls))))
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(site.root)}
    site.start(
        {IOC: {"socket": str(procserv.socket), "ioc": True}},
        env=env,
        # procserv_keys "pass": a ^X or ^T that leaked past the role check would go through
        defaults={"operate": ["alice"], "procserv_keys": "pass"},
        ioc={"scope": "user", "poll_interval": "1h", "discover": False},
        metrics={"listen": "127.0.0.1:0"},
        # broadcasts are this suite's probes (`processed`): no message limit to meet here
        messages={"burst": 100000, "per_minute": 600},
    )
    return Target(site, procserv, received, calls)


# ---------------------------------------------------------------- read-only input


# procServ's keys, escapes (as a read-only user might try them) and telnet commands.
TRIES = [
    b"\x18", b"\x14", b"\x12", b"\x11",  # ^X ^T ^R ^Q
    b"\x05ca", b"\x05cf", b"\x05c\\030", b"\x05c\\024", b"\x05c\\022",  # ^Eca ^Ecf ^Ec\030 ...
    b"\x05c!restart\r", b"y", b"\x05c!stop\ry", b"\x05c!start\r", b"Y\r",
    b"\x05cb to everyone\r", b"\x05cn a note\r", b"\x05c\x18", b"\x05\x18",
    b"\xff\xf4", b"\xff\xfd\x01", b"\xff\xfa\x18\x00xterm\xff\xf0", b"\xff\xff", b"\x00",
    b"READ_ONLY_TEXT\r", b"rm -rf /\n", b"\x1b[A\x1b[200~pasted\x1b[201~", b"\x03\x04",
]  # fmt: skip
CORPUS_SIZE = 128 * 1024


def random_corpus(seed: int, size: int = CORPUS_SIZE, *, stop_bytes: bytes = b"") -> bytes:
    """``size`` random bytes with the TRIES mixed in; never ``^Ec.`` (which only detaches)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    parts: list[bytes] = []
    total = 0
    while total < size:
        part = rng.choice(TRIES) if rng.random() < 0.3 else rng.randbytes(rng.randint(1, 512))
        parts.append(part)
        total += len(part)
    data = b"".join(parts).replace(b"\x05c.", b"\x05c?")
    for byte in stop_bytes:
        data = data.replace(bytes([byte]), b"")
    return data


def send_in_chunks(client: ScriptedSSH, data: bytes, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    at = 0
    while at < len(data):
        size = rng.randint(1, 4096)
        client.send(data[at : at + size])
        at += size


async def processed(client: ScriptedSSH, token: str) -> None:
    """Wait until consrv has read all ``client`` sent: broadcast ``token``, see it come back.

    (Broadcasting is allowed to everyone; a ^C first cancels any half-typed line command.)
    """
    client.send(f"\x03\x05cb {token}\r".encode())
    await client.expect(rf": {token}\]".encode(), stderr=True, timeout=20)


async def test_read_only_users_and_observers_get_nothing_to_procserv(target: Target) -> None:
    site = target.site
    witness = site.witness(target.procserv.socket)
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", IOC, pty=True) as writer,
        scripted_ssh(site.port, site.key("olga"), "console", IOC, pty=True) as olga,
        scripted_ssh(site.port, site.key("olga"), "observer", IOC) as olga_observer,
        scripted_ssh(site.port, site.key("alice"), "observer", IOC, pty=True) as alice_observer,
        scripted_ssh(site.port, site.key("olga"), "observer", f"tail {IOC} -f") as tail,
    ):
        await writer.expect(rb"you write", stderr=True)
        readers = [olga, olga_observer, alice_observer]
        for seed, client in enumerate(readers):
            await client.expect(rb"attached to ab-ioc: read-only", stderr=True)
            for attempt in TRIES:
                client.send(attempt)
            send_in_chunks(client, random_corpus(seed), seed)
        send_in_chunks(tail, random_corpus(9, stop_bytes=b"\x03\x04"), 9)  # ^C/^D end a tail
        for n, client in enumerate(readers):
            await processed(client, f"probe-{n}")
            assert b"read-only: your input is not sent" in client.stderr
        await trio.sleep(0.5)
        writer.send(b"WRITER_MARK\n")
        what = "WRITER_MARK in what the IOC (a recorder) received"
        with deadline(10, what, target.received.read_bytes):
            while b"WRITER_MARK" not in target.received.read_bytes():
                await trio.sleep(0.05)
        await trio.sleep(0.3)
        assert tail.collector.exit_status is None  # the tail session is still there
    assert target.received.read_bytes() == b"WRITER_MARK\r"  # and nothing else, ever
    seen = witness.read()
    for message in (b"shutting down", b"Toggled auto restart", b"Restarting child"):
        assert message not in seen
    assert target.actions() == []
    assert target.tracebacks() == []


# ---------------------------------------------------------------- who may log in


async def connect(site: Site, login: str, **options: Any) -> None:
    """One SSH login attempt with asyncssh; closes again if it got in."""
    with deadline(15, f"an SSH login attempt as {login!r} to be let in or refused"):
        conn = await trio_asyncio.aio_as_trio(asyncssh.connect)(
            "127.0.0.1", site.port, username=login, known_hosts=None, agent_path=None,
            connect_timeout=10, **options,
        )  # fmt: skip
        conn.close()
        await trio_asyncio.aio_as_trio(conn.wait_closed)()


async def test_unknown_keys_wrong_logins_and_passwords_are_refused_and_counted(
    target: Target,
) -> None:
    site = target.site
    metrics = site.consrv.metrics_port()
    stranger, alice = str(site.key("stranger")), str(site.key("alice"))
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("console", {"client_keys": [stranger]}),  # a key consrv does not know
        ("observer", {"client_keys": [stranger]}),
        ("root", {"client_keys": [alice]}),  # a known key, a login that is not consrv's
        ("alice", {"client_keys": [alice]}),
        ("console", {"client_keys": [], "password": "alice"}),  # passwords: never
        ("console", {"client_keys": [], "password": "", "kbdint_auth": True}),
        ("console", {"client_keys": [stranger], "password": "hunter2"}),
    ]
    async with trio_asyncio.open_loop():
        for login, options in attempts:
            with pytest.raises(asyncssh.PermissionDenied):
                await connect(site, login, **options)
        await connect(site, "console", client_keys=[alice])  # the real thing still works
        failures = await scrape(metrics)
    for argv in (  # OpenSSH insisting on a password, or keyboard-interactive
        openssh(site.port, site.key("alice"), "console", "-o", "PreferredAuthentications=password",
                command=("list",)),
        openssh(site.port, site.key("alice"), "console", "-o",
                "PreferredAuthentications=keyboard-interactive", command=("list",)),
    ):  # fmt: skip
        done = await trio.to_thread.run_sync(run_openssh, argv)
        assert done.returncode == 255
        assert "Permission denied (publickey)" in done.stderr  # no other method is offered
        assert done.stdout == ""

    def count(reason: str) -> float:
        return failures[key("consrv_ssh_auth_failures_total", reason=reason)]

    assert count("unknown_key") >= 3
    assert count("unknown_login") >= 2
    assert count("no_method") >= 2
    assert failures[key("consrv_ssh_logins_total", login="console")] == 1
    assert target.tracebacks() == []


# ---------------------------------------------------------------- console names


BAD_NAMES = [
    "../etc/passwd", "../../../../tmp/x", "..", ".", "/etc/passwd", "ab-ioc/../x", "a/b",
    "ab ioc", "a\tb", "a\nb", "a\rb", "\x1b[31mred", "a\x00b", "a\x7fb", "\x05c.",
    "ioc\u202egnp", "caf\u00e9", "\u540d\u524d", "a\u200bb", "\U0001f4a5",
    "$(touch {canary})", "`touch {canary}`", "x;touch {canary}", "x|touch {canary}",
    "x&&touch {canary}", "x>{canary}", "x<{canary}", "{{a,b}}", "*", "?", "[a]", "~root",
    "-rf", "--help", "-", "'", '"', "\\", "%n%n", "a" * 1000, "ab-ioc" + "x" * 59,
]  # fmt: skip
VERBS = ["", "attach", "tail", "status", "who", "start", "stop", "restart"]


def bad_commands(canary: Path) -> Iterator[str]:
    for raw in BAD_NAMES:
        name = raw.format(canary=canary)
        for verb in VERBS:
            yield f"{verb} {shlex.quote(name)}".strip()  # the name as one word
        yield f"restart {name}"  # and as a shell would never see it: unquoted


async def test_bad_console_names_are_refused_before_a_path_a_unit_or_systemctl(
    target: Target,
) -> None:
    site = target.site
    canary = site.root / "canary"
    before = files_under(site.root)
    replies: dict[str, Reply] = {}
    async with trio_asyncio.open_loop():
        for command in bad_commands(canary):
            replies[command] = await run_command(site.port, site.key("alice"), "console", command)
        actions = target.actions()
        good = await run_command(site.port, site.key("alice"), "console", f"restart {IOC}")
    for command, reply in replies.items():
        assert reply.status in (1, 2), (command, reply)
        assert reply.stdout == b"", (command, reply)
        assert reply.stderr.startswith(b"consrv: "), (command, reply)
        assert reply.stderr.count(b"\n") == 1, (command, reply)
        assert len(reply.stderr) < 300, (command, reply)  # a 1,000-character name is not echoed
        assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", reply.stderr), (command, reply)
    assert files_under(site.root) == before  # no log, no socket, no file of any kind
    assert not canary.exists()
    assert actions == []  # systemctl never ran for any of them
    assert good.status == 0, good  # while a good name does reach systemctl
    assert target.actions() == [f"--user --no-ask-password --no-pager restart -- ioc@{IOC}.service"]
    assert target.tracebacks() == []


async def test_a_command_line_with_a_shell_in_it_does_nothing_but_refuse(target: Target) -> None:
    site = target.site
    canary = site.root / "canary"
    for command in (
        f"restart {IOC}; rm -rf /",
        f"restart x; touch {canary}",
        f"restart {IOC} && touch {canary}",
        f"$(touch {canary})",
        f"list; touch {canary}",
        f"list | touch {canary}",
        f"status {IOC} `touch {canary}`",
    ):
        argv = openssh(site.port, site.key("alice"), "console", command=(command,))
        done = await trio.to_thread.run_sync(run_openssh, argv)
        assert done.returncode in (1, 2), (command, done)
        assert done.stderr.startswith("consrv: "), (command, done)
        assert done.stdout == "", (command, done)
    assert not canary.exists()
    assert target.actions() == []
    assert target.procserv.child_pids()  # the IOC was not touched
    assert target.received.read_bytes() == b""


# ---------------------------------------------------------------- a 10 MB paste

PASTE_SIZE = 10 * 2**20


def paste(seed: int, size: int = PASTE_SIZE) -> bytes:
    """Lines of printable ASCII, ``\\n``-terminated, as a script's input file would be."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible corpus, not a secret
    alphabet = bytes(range(0x20, 0x7F))
    lines = []
    total = 0
    while total < size:
        line = bytes(rng.choices(alphabet, k=rng.randint(0, 200))) + b"\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)


async def test_a_10_mb_paste_reaches_procserv_complete_and_in_order(target: Target) -> None:
    site = target.site
    data = paste(10)
    expected = data.replace(b"\n", b"\r")  # Enter goes to procServ as \r
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", IOC) as alice,
        scripted_ssh(site.port, site.key("olga"), "observer", IOC) as olga,
    ):
        await alice.expect(rb"you write", stderr=True)
        await olga.expect(rb"attached to ab-ioc", stderr=True)
        started = time.monotonic()
        alice.send(data)  # asyncssh sends it as fast as consrv's window allows
        alice.chan.write_eof()  # as `ssh console@host ab-ioc < file` ends
        assert await alice.wait_closed(timeout=90) == 0  # consrv sent it all, then ended
        elapsed = time.monotonic() - started
        what = f"{len(expected)} bytes at the IOC (a recorder)"
        with deadline(30, what, lambda: f"{target.received.stat().st_size} bytes"):
            while target.received.stat().st_size < len(expected):
                await trio.sleep(0.1)
        olga.send(b"\x05cw")  # the console and its observer are fine
        await olga.expect(rb"olga", stderr=True)
    received = target.received.read_bytes()
    assert len(received) == len(expected)
    assert received == expected  # complete, in order, nothing added
    print(f"10 MiB paste: consrv took {elapsed:.1f} s ({len(data) / elapsed / 2**20:.1f} MiB/s)")
    assert b"bytes dropped" not in alice.stderr
    assert target.tracebacks() == []


# ---------------------------------------------------------------- forwarding, agent, X11, sftp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def never_accepted(listener: socket.socket) -> bool:
    listener.setblocking(False)
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@contextmanager
def forwarding_ssh(argv: list[str], local_port: int, log: Path) -> Iterator[None]:
    """An ``ssh -N`` with a local forward, running until the block ends."""
    with log.open("w") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    try:
        give_up = time.monotonic() + 10
        while True:
            assert process.poll() is None, f"ssh -L/-D exited: {log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", local_port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < give_up, (
                    f"gave up after 10 s waiting for ssh -L/-D to listen on port {local_port}"
                )
                time.sleep(0.05)
        yield
    finally:
        process.kill()  # ssh -N -D may linger after SIGTERM with a SOCKS client half-done
        process.wait(5)


def through(local_port: int, hello: bytes = b"") -> bytes:
    """Connect to a forwarded port, say ``hello``, and read what comes back (b"": closed)."""
    with socket.create_connection(("127.0.0.1", local_port), timeout=5) as conn:
        if hello:
            conn.sendall(hello)
        try:
            return conn.recv(4096)
        except ConnectionResetError:
            return b""


def socks5_connect(local_port: int, port: int) -> bytes:
    """A SOCKS5 CONNECT to 127.0.0.1:port through ``ssh -D``; the reply (b"": closed)."""
    with socket.create_connection(("127.0.0.1", local_port), timeout=5) as conn:
        conn.sendall(b"\x05\x01\x00")
        assert conn.recv(2) == b"\x05\x00"  # ssh's own SOCKS server says hello
        conn.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", port))
        try:
            return conn.recv(10)
        except ConnectionResetError:
            return b""


def test_port_forwarding_x11_and_file_transfer_are_refused(target: Target) -> None:
    site = target.site
    root = site.root

    def ssh(*options: str, command: tuple[str, ...] = ("list",)) -> list[str]:
        return openssh(site.port, site.key("alice"), "console", *options, command=command,
                       log_level="INFO")  # fmt: skip

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        done = run_openssh(ssh("-W", f"127.0.0.1:{port}", command=()))  # ssh -W: stdio forward
        assert done.returncode == 255
        assert "stdio forwarding failed" in done.stderr
        done = run_openssh(ssh("-o", "ExitOnForwardFailure=yes", "-R", f"0:127.0.0.1:{port}"))
        assert done.returncode == 255
        assert "remote port forwarding failed" in done.stderr
        remote_socket = root / "remote.sock"
        done = run_openssh(
            ssh("-o", "ExitOnForwardFailure=yes", "-R", f"{remote_socket}:127.0.0.1:{port}")
        )
        assert done.returncode == 255
        assert "remote port forwarding failed" in done.stderr
        assert not remote_socket.exists()
        local = free_port()
        with forwarding_ssh(ssh("-N", "-L", f"{local}:127.0.0.1:{port}", command=()), local,
                            root / "L.log"):  # fmt: skip
            assert through(local) == b""
        assert "open failed" in (root / "L.log").read_text()
        local = free_port()
        with forwarding_ssh(ssh("-N", "-L", f"{local}:{target.procserv.socket}", command=()),
                            local, root / "Lunix.log"):  # fmt: skip
            assert through(local) == b""  # no procServ banner: its socket was not reached
        assert "open failed" in (root / "Lunix.log").read_text()
        local = free_port()
        with forwarding_ssh(ssh("-N", "-D", str(local), command=()), local, root / "D.log"):
            reply = socks5_connect(local, port)
            assert reply[:2] != b"\x05\x00", reply  # not "succeeded"
        assert never_accepted(listener)  # no forward ever reached the target
    done = run_openssh(ssh("-X"), env={**os.environ, "DISPLAY": "127.0.0.1:9"})
    assert "X11 forwarding request failed" in done.stderr
    assert (done.returncode, done.stdout.split()[:1]) == (0, ["NAME"])  # the command itself ran
    check_file_transfer_refused(site, root)
    assert site.consrv.process is not None
    assert site.consrv.process.poll() is None  # consrv is still up
    listed = run_openssh(ssh())
    assert (listed.returncode, listed.stdout.split()[4:5]) == (0, [IOC])
    assert target.tracebacks() == []


def check_file_transfer_refused(site: Site, root: Path) -> None:
    alice = site.key("alice")
    source = root / "payload.txt"
    source.write_text("not for consrv\n")
    done = run_openssh(openssh(site.port, alice, "console", "-s", command=("sftp",)))
    assert done.returncode == 255
    assert "subsystem request failed" in done.stderr
    options = ["-P", str(site.port), "-i", str(alice), *SSH_OPTIONS]
    dest = root / "copied.txt"
    done = run_openssh(["sftp", *options, "-b", "-", "console@127.0.0.1"])
    assert done.returncode == 255
    assert "subsystem request failed" in done.stderr
    done = run_openssh(["scp", *options, str(source), f"console@127.0.0.1:{dest}"])  # SFTP mode
    assert done.returncode == 255
    done = run_openssh(["scp", "-O", *options, str(source), f"console@127.0.0.1:{dest}"])
    assert done.returncode != 0  # the old protocol: "scp -t PATH" is not a consrv command
    assert "consrv: " in done.stderr
    done = run_openssh(["scp", "-O", *options, "console@127.0.0.1:/etc/hostname", str(dest)])
    assert done.returncode != 0
    assert not dest.exists()


async def test_agent_forwarding_is_refused(target: Target) -> None:
    """OpenSSH's ``-A`` asks without wanting a reply, so it never sees a refusal; this
    client asks as ``-A`` does but wants the answer (an SSH channel request)."""
    site = target.site
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("alice"), "console", IOC) as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        request = trio_asyncio.aio_as_trio(alice.chan._make_request)
        with deadline(10, "consrv's answer to an auth-agent-req@openssh.com channel request"):
            assert await request(b"auth-agent-req@openssh.com") is False
        alice.send(b"after the agent request\n")  # the session goes on unharmed
        what = "'after the agent request' at the IOC (a recorder)"
        with deadline(10, what, target.received.read_bytes):
            while b"after the agent request" not in target.received.read_bytes():
                await trio.sleep(0.05)
    agent_socket = site.root / "agent.sock"
    agent = await trio.lowlevel.open_process(["ssh-agent", "-D", "-a", str(agent_socket)])
    try:
        with deadline(10, f"ssh-agent to create its socket {agent_socket}"):
            while not agent_socket.exists():
                await trio.sleep(0.05)
        argv = openssh(site.port, site.key("alice"), "console", "-A", command=("list",))
        env = {**os.environ, "SSH_AUTH_SOCK": str(agent_socket)}
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True,
                                      check=False, env=env)  # fmt: skip
        assert done.returncode == 0, done  # with -A asked for, consrv serves on
    finally:
        agent.terminate()
        await agent.wait()
    assert target.tracebacks() == []


# ---------------------------------------------------------------- asking without reading

REPLAYS = 10000
AMPLIFICATION_BOUND_KIB = 32 * 1024


async def test_a_user_who_asks_and_never_reads_cannot_grow_consrvs_memory(site: Site) -> None:
    """^Ecp costs 3 bytes and answers with 60 lines of scrollback: a read-only user who
    sends it over and over and reads nothing must not make consrv buffer the answers."""
    procserv = site.procserv("amp", CAT)
    site.start({"amp": site.socket_of("amp")})
    witness = site.witness(procserv.socket)
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("olga"), "observer", "amp", pty=True) as olga,
    ):
        await olga.expect(rb"attached to amp", stderr=True)
        for _ in range(10):  # cat: long lines, echoed and printed, in the scrollback
            witness.send((b"y" * 150 + b"\r") * 10)
            await trio.sleep(0.05)
        # Seen by olga through consrv, so in its scrollback (consrv may have connected
        # to procServ only after lines typed before she attached).
        what = "100 lines of 150 y, echoed and printed by cat, at olga through consrv"
        with deadline(10, what, lambda: olga.stdout):
            while olga.stdout.count(b"y") < 2 * 150 * 100:
                await trio.sleep(0.02)
        before = status_field(site.pid, "VmRSS")
        olga.chan.pause_reading()  # reads nothing from now on
        for _ in range(REPLAYS // 100):
            olga.send(b"\x05cp" * 100)  # 60 lines (~9 KB) of replay asked for each time
            await trio.sleep(0.01)
        await trio.sleep(3.0)
        grown = status_field(site.pid, "VmRSS") - before
    print(f"consrv RSS grew {grown // 1024} MiB after {REPLAYS} unread replays")
    assert grown < AMPLIFICATION_BOUND_KIB, f"consrv's memory grew {grown // 1024} MiB"
