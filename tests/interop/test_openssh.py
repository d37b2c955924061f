"""The OpenSSH client through consrv: today's defaults, and the offers of older clients.

Debian 12's ssh (OpenSSH 9.2) stands in for older clients by offering only what
they offered (``-o KexAlgorithms= Ciphers= MACs= HostKeyAlgorithms=
PubkeyAcceptedKeyTypes=``): RHEL 7's OpenSSH 7.4 (its compiled-in defaults, with
an RSA key, as RHEL 7 users have) and RHEL 8's OpenSSH 8.0 (the DEFAULT
crypto-policy, with an ECDSA key). `test_list` checks in ``ssh -v``'s output that
the algorithms negotiated came from that offer.
"""

from __future__ import annotations

import re

import pytest

from tests.interop.clients import PtyClient, check_attach, check_list, check_observer_tail, run
from tests.interop.conftest import CONSOLE, Interop

pytestmark = pytest.mark.integration

RHEL7_OPENSSH_7_4 = {
    "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
    "ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,"
    "diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,"
    "diffie-hellman-group-exchange-sha1,diffie-hellman-group14-sha256,"
    "diffie-hellman-group14-sha1",
    "Ciphers": "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,"
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-cbc,aes192-cbc,aes256-cbc",
    "MACs": "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,"
    "hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,"
    "umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    "HostKeyAlgorithms": "ecdsa-sha2-nistp256-cert-v01@openssh.com,"
    "ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,"
    "ssh-ed25519-cert-v01@openssh.com,ssh-rsa-cert-v01@openssh.com,ecdsa-sha2-nistp256,"
    "ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
    "PubkeyAcceptedKeyTypes": "ecdsa-sha2-nistp256-cert-v01@openssh.com,"
    "ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,"
    "ssh-ed25519-cert-v01@openssh.com,ssh-rsa-cert-v01@openssh.com,ecdsa-sha2-nistp256,"
    "ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,ssh-ed25519,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
}
_RHEL8_KEYS = (
    "rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,ecdsa-sha2-nistp256,"
    "ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,"
    "ecdsa-sha2-nistp384-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com,"
    "ecdsa-sha2-nistp521,ecdsa-sha2-nistp521-cert-v01@openssh.com,ssh-ed25519,"
    "ssh-ed25519-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com"
)
RHEL8_OPENSSH_8_0 = {
    "KexAlgorithms": "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,"
    "ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,"
    "diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,"
    "diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha1,"
    "diffie-hellman-group14-sha1",
    "Ciphers": "aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes256-ctr,aes256-cbc,"
    "aes128-gcm@openssh.com,aes128-ctr,aes128-cbc",
    "MACs": "hmac-sha2-256-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-128-etm@openssh.com,"
    "hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha1,umac-128@openssh.com,hmac-sha2-512",
    "HostKeyAlgorithms": _RHEL8_KEYS,
    "PubkeyAcceptedKeyTypes": _RHEL8_KEYS,
}
# (user whose key is used, algorithm offer) per client.
VARIANTS = {
    "openssh-9.2-defaults": ("alice", {}),
    "rhel7-openssh-7.4": ("rita", RHEL7_OPENSSH_7_4),
    "rhel8-openssh-8.0": ("erin", RHEL8_OPENSSH_8_0),
}
BASE_OPTIONS = {
    "BatchMode": "yes",
    "IdentitiesOnly": "yes",
    "StrictHostKeyChecking": "yes",
    "ConnectTimeout": "5",
}


@pytest.fixture(params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ssh_argv(
    interop: Interop, variant: str, login: str, *command: str, tty: bool, verbose: bool = False
) -> list[str]:
    """The ``ssh`` command line of ``variant``, checking consrv's host key."""
    user, offer = VARIANTS[variant]
    known_hosts = interop.root / f"known_hosts.{variant}"
    if not known_hosts.exists():
        known_hosts.write_text(f"[127.0.0.1]:{interop.port} {interop.host_key.read_text()}")
    options = {**BASE_OPTIONS, "UserKnownHostsFile": str(known_hosts), **offer}
    if not verbose:
        options["LogLevel"] = "ERROR"
    flags = ["-tt" if tty else "-T", *(["-v"] if verbose else [])]
    return ["ssh", *flags, "-p", str(interop.port), "-i", str(interop.keys[user].private),
            *(f"-o{name}={value}" for name, value in options.items()),
            f"{login}@127.0.0.1", *command]  # fmt: skip


async def test_list(interop: Interop, variant: str) -> None:
    await check_list(ssh_argv(interop, variant, "console", "list", tty=False))
    # What was negotiated (ssh -v) is in the variant's offer.
    status, _, log = await run(ssh_argv(interop, variant, "console", "version", tty=False,
                                        verbose=True))  # fmt: skip
    assert status == 0, log
    kex = re.search(r"kex: algorithm: (\S+)", log)
    cipher = re.search(r"kex: server->client cipher: (\S+) MAC: (\S+)", log)
    assert kex, log
    assert cipher, log
    offer = VARIANTS[variant][1]
    if offer:
        assert kex[1] in offer["KexAlgorithms"].split(","), log
        assert cipher[1] in offer["Ciphers"].split(","), log
    assert not cipher[1].endswith("-cbc"), log  # offered by old clients, never taken
    if variant == "openssh-9.2-defaults":
        # consrv offers no chacha20 by default: OpenSSH's next choice costs a third.
        assert (cipher[1], cipher[2]) == ("aes128-ctr", "umac-64-etm@openssh.com"), log


async def test_attach_on_a_pty_with_a_window_change(interop: Interop, variant: str) -> None:
    client = PtyClient(ssh_argv(interop, variant, "console", CONSOLE, tty=True))
    await check_attach(client, f"openssh-{variant}")


async def test_observer_tail(interop: Interop, variant: str) -> None:
    argv = ssh_argv(interop, variant, "observer", "tail", CONSOLE, "-n", "50", tty=False)
    await check_observer_tail(interop, argv, f"observed-{variant}")
