"""What consrv puts on the SSH wire: its ciphers, and one packet per write.

asyncssh puts an empty ``SSH_MSG_IGNORE`` in front of every packet it sends after
key exchange (``SSHConnection.send_packet``). That is a countermeasure to the
chosen-IV attacks on CBC-mode ciphers (as TLS 1.0's empty fragments were).
consrv offers no CBC cipher (`ENCRYPTION_ALGS`: asyncssh's defaults, written out),
and under AEAD and CTR ciphers the extra packet protects nothing, while it doubles
what each console write costs per viewer: two packets, two encryptions, two
``send()`` calls. OpenSSH sends no such packets. `one_packet_per_write` drops
them on one server connection (docs/performance.md has the measurements).
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import String

# asyncssh's default list (2.17 to 2.24), pinned so that CBC can never be negotiated.
ENCRYPTION_ALGS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)

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
