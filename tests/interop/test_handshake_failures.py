"""A client that cannot connect is visible: one log line with its address and the
reason, and ``consrv_ssh_handshake_failures_total{reason}`` one higher.

Real OpenSSH offering only what consrv does not have (as an old or misconfigured
client would), and raw TCP clients that are not SSH at all. The Dropbear failure
itself (a protocol error) is in test_dropbear.py.
"""

from __future__ import annotations

import re

import asyncssh
import pytest
import trio

from consrv.ssh.handshake import describe_failure
from consrv.ssh.stats import HANDSHAKE_FAILURE_REASONS
from tests.interop.clients import run, within
from tests.interop.conftest import Interop

pytestmark = pytest.mark.integration

SSH = ["ssh", "-T", "-oBatchMode=yes", "-oIdentitiesOnly=yes", "-oStrictHostKeyChecking=no",
       "-oUserKnownHostsFile=/dev/null", "-oConnectTimeout=5"]  # fmt: skip

# (reason, OpenSSH options, the WARNING line consrv logs, what ssh says)
REFUSED = {
    "no_matching_kex": (
        ["-oKexAlgorithms=diffie-hellman-group1-sha1"],
        r"WARNING .*Unable to negotiate with 127\.0\.0\.1 port \d+: no matching key exchange "
        r"method found\. Their offer: diffie-hellman-group1-sha1,",
        "no matching key exchange method found",
    ),
    "no_matching_cipher": (
        ["-oCiphers=aes128-cbc,3des-cbc"],
        r"WARNING .*Unable to negotiate with 127\.0\.0\.1 port \d+: no matching cipher found\. "
        r"Their offer: aes128-cbc,3des-cbc\n",
        "no matching cipher found",
    ),
    "no_matching_mac": (
        ["-oCiphers=aes128-ctr", "-oMACs=hmac-md5,hmac-md5-96"],
        r"WARNING .*Unable to negotiate with 127\.0\.0\.1 port \d+: no matching MAC found\. "
        r"Their offer: hmac-md5,hmac-md5-96\n",
        "no matching MAC found",
    ),
    "no_matching_host_key": (
        ["-oHostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256"],
        r"WARNING .*Unable to negotiate with 127\.0\.0\.1 port \d+: no matching host key type",
        "no matching host key type found",
    ),
}


async def wait_counted(interop: Interop, reason: str, before: float) -> None:
    """Scrape until the counter for ``reason`` is one above ``before``."""
    with within(10, f'consrv_ssh_handshake_failures_total{{reason="{reason}"}} = {before + 1}'):
        while (now := await interop.handshake_failures(reason)) != before + 1:
            assert now < before + 1, now
            await trio.sleep(0.05)


async def wait_logged(interop: Interop, offset: int, pattern: str) -> str:
    with within(10, f"{pattern!r} in consrv's log"):
        while not re.search(pattern, log := interop.log_since(offset)):
            await trio.sleep(0.05)
    return log


@pytest.mark.parametrize("reason", list(REFUSED))
async def test_no_common_algorithm(interop: Interop, reason: str) -> None:
    options, logged, said = REFUSED[reason]
    before, offset = await interop.handshake_failures(reason), interop.log_size()
    argv = [*SSH, *options, "-p", str(interop.port), "-i", str(interop.keys["alice"].private),
            "console@127.0.0.1", "list"]  # fmt: skip
    status, out, err = await run(argv)
    assert status == 255, (out, err)
    assert said in err, err
    await wait_counted(interop, reason, before)
    log = await wait_logged(interop, offset, logged)
    assert len(re.findall(r"Unable to negotiate|handshake with", log)) == 1, log


async def test_a_client_that_goes_away_is_one_info_line(interop: Interop) -> None:
    before, offset = await interop.handshake_failures("closed"), interop.log_size()
    with within(10, "a TCP connection to consrv"):
        stream = await trio.open_tcp_stream("127.0.0.1", interop.port)
        port = stream.socket.getsockname()[1]
        await stream.aclose()
    await wait_counted(interop, "closed", before)
    await wait_logged(
        interop, offset, rf"INFO .*Connection closed by 127\.0\.0\.1 port {port} before auth"
    )


async def test_not_ssh_is_a_bad_version(interop: Interop) -> None:
    before, offset = await interop.handshake_failures("bad_version"), interop.log_size()
    with within(10, "consrv to answer and close a connection that speaks HTTP"):
        stream = await trio.open_tcp_stream("127.0.0.1", interop.port)
        async with stream:
            port = stream.socket.getsockname()[1]
            await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
            while await stream.receive_some(4096):
                pass
    await wait_counted(interop, "bad_version", before)
    await wait_logged(
        interop, offset, rf"WARNING .*SSH handshake with 127\.0\.0\.1 port {port} failed "
        r"\(bad_version\): Unsupported SSH version",
    )  # fmt: skip


async def test_every_reason_has_a_series_from_the_start(interop: Interop) -> None:
    prefix = 'consrv_ssh_handshake_failures_total{reason="'
    samples = await interop.scrape()
    reasons = {name[len(prefix) :].split('"')[0] for name in samples if name.startswith(prefix)}
    assert reasons == set(HANDSHAKE_FAILURE_REASONS)


ERRORS = [
    (None, "closed"),
    (asyncssh.ConnectionLost("Connection lost"), "closed"),
    (ConnectionResetError(), "closed"),
    (asyncssh.ConnectionLost("Login timeout expired"), "timeout"),
    (asyncssh.ProtocolNotSupported("Unsupported SSH version"), "bad_version"),
    (asyncssh.ProtocolError("Key exchange not in progress"), "protocol_error"),
    (asyncssh.KeyExchangeFailed("Unable to find compatible server host key"),
     "no_matching_host_key"),
    (asyncssh.KeyExchangeFailed("No matching compression algorithm found, sent zlib and "
                                "received none"), "no_matching_compression"),
    (asyncssh.KeyExchangeFailed("Invalid ECDH client public key"), "kex_failed"),
    (asyncssh.DisconnectError(11, "Bye"), "other"),
    (RuntimeError("surprise"), "other"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "reason"), ERRORS)
def test_each_error_has_its_reason(exc: Exception | None, reason: str) -> None:
    failure = describe_failure(("192.0.2.7", 50312), exc)
    assert failure.reason == reason
    assert reason in HANDSHAKE_FAILURE_REASONS
    assert "192.0.2.7 port 50312" in failure.message
    assert failure.routine == (reason in ("closed", "timeout"))


def test_the_peers_words_are_one_bounded_printable_line() -> None:
    offer = "evil\n\x1b[31m," + "x" * 5000
    exc = asyncssh.KeyExchangeFailed(f"No matching key exchange algorithm found, sent a and "
                                     f"received {offer}")  # fmt: skip
    message = describe_failure(("192.0.2.7", 1), exc).message
    assert message.isprintable()
    assert len(message) < 500
