"""asyncssh as a client (scripts and the fleet's gateway use it) through consrv.

Also: consrv's key exchange order (curve25519-sha256 first, for Dropbear) still
lets a client that wants a post-quantum hybrid have it.
"""

from __future__ import annotations

import logging

import asyncssh
import pytest
import trio_asyncio

from consrv.ssh.compat import kex_algs
from tests.interop.clients import DETACH, type_line
from tests.interop.conftest import CONSOLE, Interop, got
from tests.sshclients import scripted_ssh

pytestmark = pytest.mark.integration


async def test_list(interop: Interop) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(interop.port, interop.keys["alice"].private, "console", "list") as client,
    ):
        assert await client.wait_closed() == 0, bytes(client.stderr)
        assert CONSOLE.encode() in client.stdout


async def test_attach_on_a_pty_with_a_window_change(interop: Interop) -> None:
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(
            interop.port, interop.keys["alice"].private, "console", CONSOLE, pty=True
        ) as client,
    ):
        await client.expect(rb"attached to cat-ioc: you write", stderr=True)
        client.send(b"asyncssh-before\r")
        await client.expect(got("asyncssh-before"))
        client.chan.change_terminal_size(132, 43)
        client.send(b"asyncssh-after\r")
        await client.expect(got("asyncssh-after"))
        client.send(DETACH)
        assert await client.wait_closed() == 0, bytes(client.stderr)


async def test_observer_tail(interop: Interop) -> None:
    await type_line(interop, "asyncssh-observed")
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(
            interop.port, interop.keys["alice"].private, "observer", f"tail {CONSOLE} -n 50"
        ) as client,
    ):
        assert await client.wait_closed() == 0, bytes(client.stderr)
        assert b"got:asyncssh-observed" in client.stdout


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_a_client_preferring_the_post_quantum_hybrid_gets_it(interop: Interop) -> None:
    """The server's order does not choose (the client's does): asyncssh's default
    client list starts with mlkem768x25519-sha256, which consrv lists second, and
    that is what is negotiated (from the client's debug log)."""
    assert kex_algs().index("mlkem768x25519-sha256") > 0
    records = _Records()
    logger = logging.getLogger("asyncssh")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    asyncssh.set_debug_level(2)
    try:
        async with (
            trio_asyncio.open_loop(),
            scripted_ssh(
                interop.port, interop.keys["alice"].private, "console", "version"
            ) as client,
        ):
            assert await client.wait_closed() == 0, bytes(client.stderr)
    finally:
        asyncssh.set_debug_level(1)
        logger.setLevel(level)
        logger.removeHandler(records)
    chosen = [m.split(":", 1)[1].strip() for m in records.messages if "Key exchange alg:" in m]
    assert chosen == ["mlkem768x25519-sha256"], records.messages
