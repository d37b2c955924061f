"""Dropbear's client (``dbclient``, Debian ``dropbear-bin``) through consrv.

dbclient sends its first key exchange packet as a guess; consrv's key exchange
order (consrv/ssh/compat.py) is what makes that guess work with asyncssh. The last
test shows the failure consrv had before: asyncssh's default order refuses dbclient.
Keys: converted with ``dropbearconvert``. Host key checking: on, through a
``known_hosts`` in the client's own $HOME (Dropbear's format: host, no port).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import asyncssh
import pytest
import trio
import trio_asyncio

from consrv.ssh.compat import kex_algs
from consrv.ssh.handshake import HandshakeFailure, describe_failure
from tests.interop.clients import (
    PtyClient,
    check_attach,
    check_list,
    check_observer_tail,
    run,
    within,
)
from tests.interop.conftest import CONSOLE, Interop

pytestmark = pytest.mark.integration


def dropbear_version() -> str:
    done = subprocess.run(["dbclient", "-V"], capture_output=True, text=True, timeout=10)
    return (done.stdout + done.stderr).strip()


class Dropbear:
    """dbclient with a converted key and a $HOME that knows consrv's host key."""

    def __init__(self, interop: Interop, home: Path) -> None:
        self.interop = interop
        self.key = home / "id_alice.dropbear"
        subprocess.run(
            ["dropbearconvert", "openssh", "dropbear", str(interop.keys["alice"].private),
             str(self.key)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        (home / ".ssh").mkdir(mode=0o700)
        key_type, key_data = interop.host_key.read_text().split()[:2]
        (home / ".ssh" / "known_hosts").write_text(f"127.0.0.1 {key_type} {key_data}\n")
        self.env = {**os.environ, "HOME": str(home)}

    def argv(self, login: str, *command: str, tty: bool) -> list[str]:
        port, key = str(self.interop.port), str(self.key)
        return ["dbclient", "-t" if tty else "-T", "-p", port, "-i", key, f"{login}@127.0.0.1",
                *command]  # fmt: skip


@pytest.fixture(scope="module")
def dropbear(interop: Interop, tmp_path_factory: pytest.TempPathFactory) -> Dropbear:
    return Dropbear(interop, tmp_path_factory.mktemp("dropbear-home"))


def test_dbclient_reports_its_version() -> None:
    assert re.search(r"Dropbear v20\d\d\.\d+", dropbear_version()), dropbear_version()


async def test_list(dropbear: Dropbear) -> None:
    await check_list(dropbear.argv("console", "list", tty=False), dropbear.env)


async def test_attach_on_a_pty_with_a_window_change(dropbear: Dropbear) -> None:
    client = PtyClient(dropbear.argv("console", CONSOLE, tty=True), dropbear.env)
    await check_attach(client, "dropbear")


async def test_observer_tail(interop: Interop, dropbear: Dropbear) -> None:
    argv = dropbear.argv("observer", "tail", CONSOLE, "-n", "50", tty=False)
    await check_observer_tail(interop, argv, "dropbear-observed", dropbear.env)


# -- the failure, and why -------------------------------------------------------


class _Refusing(asyncssh.SSHServer):
    """A bare server that notes how its connections end, as consrv does."""

    def __init__(self, ended: list[tuple[bool, HandshakeFailure]]) -> None:
        self.ended = ended
        self.peer = ("", 0)
        self.began_auth = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.peer = conn.get_extra_info("peername")[:2]

    def begin_auth(self, username: str) -> bool:
        self.began_auth = True
        return True  # and no method is supported: dbclient fails to log in

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended.append((self.began_auth, describe_failure(self.peer, exc)))


async def _handshake(
    kex_algs: tuple[str, ...] | None, dropbear: Dropbear
) -> tuple[bool, HandshakeFailure]:
    """dbclient against a bare asyncssh server with ``kex_algs`` (None: asyncssh's
    defaults): whether authentication began, and how the connection ended."""
    ended: list[tuple[bool, HandshakeFailure]] = []
    host_key = asyncssh.read_private_key(dropbear.interop.root / "host_key")
    options = {} if kex_algs is None else {"kex_algs": kex_algs}
    async with trio_asyncio.open_loop():
        server = await trio_asyncio.aio_as_trio(asyncssh.create_server)(
            lambda: _Refusing(ended), "127.0.0.1", 0, server_host_keys=[host_key], **options
        )
        try:
            port = server.sockets[0].getsockname()[1]
            argv = ["dbclient", "-T", "-y", "-y", "-p", str(port), "-i", str(dropbear.key),
                    "console@127.0.0.1", "version"]  # fmt: skip
            await run(argv, dropbear.env)  # no login either way (dbclient then exits 0!)
            with within(10, "the bare server to see the connection end"):
                while not ended:
                    await trio.sleep(0.05)
        finally:
            server.close()
            await trio_asyncio.aio_as_trio(server.wait_closed)()
    return ended[0]


async def test_asyncssh_default_kex_order_breaks_dropbears_guess(dropbear: Dropbear) -> None:
    # asyncssh's own first is the hybrid mlkem768x25519-sha256, dbclient's (its
    # guess) curve25519-sha256: asyncssh keeps the guess, Dropbear sends it again.
    # Should asyncssh ever judge guesses as RFC 4253 does, this fails: consrv's
    # reordering (consrv/ssh/compat.py) is then no longer needed.
    began_auth, failure = await _handshake(None, dropbear)
    assert not began_auth
    assert failure.reason == "protocol_error", failure
    assert "Key exchange not in progress (the client sent a second key exchange packet" in (
        failure.message
    ), failure


async def test_consrvs_kex_order_keeps_dropbears_guess(dropbear: Dropbear) -> None:
    began_auth, failure = await _handshake(kex_algs(), dropbear)
    assert began_auth, failure
