"""What consrv puts on the SSH wire: its algorithm lists, and one packet per write.

asyncssh puts an empty ``SSH_MSG_IGNORE`` in front of every packet it sends after
key exchange (``SSHConnection.send_packet``). That is a countermeasure to the
chosen-IV attacks on CBC-mode ciphers (as TLS 1.0's empty fragments were).
consrv offers no CBC cipher (``ssh.ciphers`` accepts only `consrv.config.CIPHERS`),
and under AEAD and CTR ciphers the extra packet protects nothing, while it doubles
what each console write costs per viewer: two packets, two encryptions, two
``send()`` calls. OpenSSH sends no such packets. `one_packet_per_write` drops
them on one server connection (docs/performance.md has the measurements).
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.kex import get_default_kex_algs
from asyncssh.packet import String

# What a client that guesses its first key exchange packet guesses: the first of
# its list. Dropbear's dbclient 2022.83 (Debian 12) puts curve25519-sha256 first.
GUESSED_KEX = "curve25519-sha256"


def _kex_algs() -> tuple[str, ...]:
    """asyncssh's default key exchange list, with `GUESSED_KEX` moved to the front.

    Why the front matters (issue 16; dbclient failed with "Disconnect received").
    A client may send its first key exchange packet (for dbclient: curve25519's
    KEX_ECDH_INIT) right behind its KEXINIT, before it has seen the server's list,
    and set ``first_kex_packet_follows``. RFC 4253 section 7.1 calls that guess
    right only if the client's and the server's *first* key exchange algorithms
    (and first host key algorithms) are the same; a wrong guess is ignored by the
    server and resent by the client. Dropbear decides exactly so
    (``buf_match_algo``: ``i == 0 && j == 0``), unless the server also lists
    ``kexguess2@matt.ucc.asn.au``, when the client's first alone counts.
    asyncssh 2.24 (``SSHConnection._process_kexinit``) decides differently: it
    keeps the guessed packet whenever the algorithm it negotiated is the client's
    first (``_ignore_first_kex = ... != peer_kex_algs[0]``), whatever its own first
    is, and it never lists kexguess2. With asyncssh's default order the server's
    first is ``mlkem768x25519-sha256``, dbclient's first is curve25519-sha256, and
    the negotiated one is curve25519-sha256 (the client's preference). So asyncssh
    answers the guessed packet and sends NEWKEYS (which ends its key exchange),
    while Dropbear, seeing a wrong guess by the RFC, sends KEX_ECDH_INIT a second
    time; asyncssh then disconnects: "Key exchange not in progress".

    With the guessed algorithm first in the server's list, both rules give the
    same answer for dbclient: its first is the server's first (both keep the
    guess). They also agree for a guessing client whose first consrv does not
    offer (both ignore the guess), and for clients that never guess (OpenSSH,
    PuTTY, Paramiko, asyncssh). They disagree, and the client is refused as
    before, only for a guessing client whose first is another algorithm consrv
    offers: a Dropbear that guesses curve25519-sha256@libssh.org (older builds)
    or, should asyncssh gain sntrup761 through liboqs, sntrup761x25519-sha512
    (Dropbear 2024.84 and later put it first). The host key half of the RFC rule
    holds while consrv's host key is ed25519, dbclient's first host key
    algorithm; with an RSA or ECDSA host key Dropbear would count every guess
    wrong while asyncssh kept it. tests/interop/test_dropbear.py shows both the
    failure (asyncssh's order) and the fix.

    The order weakens nothing: the algorithm used is the first one in the
    *client's* list that the server supports, so OpenSSH 9.9+ and asyncssh
    clients still negotiate the post-quantum hybrid mlkem768x25519-sha256 (and
    sntrup761 where asyncssh has liboqs), and older clients what they did before.
    GSS-API key exchange is left out: consrv does no Kerberos.
    """
    others = [
        name
        for alg in get_default_kex_algs()
        if not (name := alg.decode("ascii")).startswith("gss-") and name != GUESSED_KEX
    ]
    return (GUESSED_KEX, *others)


KEX_ALGS = _kex_algs()

_EMPTY_IGNORE = (String(b""),)


def one_packet_per_write(conn: asyncssh.SSHServerConnection) -> None:
    """Stop ``conn`` sending asyncssh's empty ignore packet before each real one.

    Set on the connection itself, so nothing else that uses asyncssh in the
    process (a test's client, say) changes. consrv never sends an ignore packet of
    its own, so an empty one is always asyncssh's.
    """
    send_packet = conn.send_packet

    def send_packet_without_padding(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE:
            return
        send_packet(pkttype, *args, **kwargs)

    conn.send_packet = send_packet_without_padding  # type: ignore[method-assign]
