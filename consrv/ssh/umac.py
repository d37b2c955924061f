"""UMAC for asyncssh with the key set once per direction, not once per packet.

OpenSSH clients pick ``umac-64-etm@openssh.com`` whenever the cipher is AES-CTR
(their first MAC). asyncssh 2.24 computes each packet's UMAC with a new nettle
context (``asyncssh.crypto.umac``: ``create_string_buffer`` and
``nettle_umac64_set_key`` for every packet), and UMAC's key setup derives its
subkeys with a few hundred AES blocks: it costs more than hashing a keystroke's
packet, and is a tenth of a 32 KiB packet's whole cost in consrv
(docs/performance.md). nettle's context keeps its subkeys across messages
(``set_nonce``, ``update``, ``digest``), so one keyed context per direction
gives the same tags for a fraction of the work.

`consrv.ssh.compat.install_keyed_umac` swaps asyncssh's handler for the four UMAC
algorithms in its MAC registry (private: the keyed-umac hook; checked by the tests
against asyncssh's own implementation, tag for tag). Where nettle or that registry is
missing, nothing changes and asyncssh's own UMAC (or none) stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hmac
from typing import Any

# nettle's struct umac128_ctx is about 2.4 KB; asyncssh allocates 4096 as well.
_CTX_SIZE = 4096
_NONCE_SIZE = 8  # SSH's UMAC nonce: the packet's sequence number, 64-bit big-endian
ALGORITHMS = {
    b"umac-64-etm@openssh.com": 64,
    b"umac-128-etm@openssh.com": 128,
    b"umac-64@openssh.com": 64,
    b"umac-128@openssh.com": 128,
}


def _load_nettle() -> Any:
    name = ctypes.util.find_library("nettle")
    return ctypes.CDLL(name) if name else None


_nettle = _load_nettle()


class KeyedUMAC:
    """asyncssh's MAC interface (``sign``, ``verify``) over one keyed nettle context."""

    def __init__(self, key: bytes, hash_size: int, bits: int) -> None:
        prefix = f"nettle_umac{bits}_"
        self._set_nonce = getattr(_nettle, prefix + "set_nonce")
        self._update = getattr(_nettle, prefix + "update")
        self._digest = getattr(_nettle, prefix + "digest")
        self._ctx = ctypes.create_string_buffer(_CTX_SIZE)
        getattr(_nettle, prefix + "set_key")(self._ctx, key)
        self._size = ctypes.c_size_t(hash_size)
        self._out = ctypes.create_string_buffer(hash_size)
        self._nonce_size = ctypes.c_size_t(_NONCE_SIZE)

    def sign(self, seq: int, packet: bytes) -> bytes:
        """The tag of ``packet``, sent with sequence number ``seq``."""
        ctx = self._ctx
        self._set_nonce(ctx, self._nonce_size, seq.to_bytes(_NONCE_SIZE, "big"))
        self._update(ctx, ctypes.c_size_t(len(packet)), packet)
        self._digest(ctx, self._size, self._out)  # also resets the hash for the next one
        return self._out.raw

    def verify(self, seq: int, packet: bytes, sig: bytes) -> bool:
        return hmac.compare_digest(self.sign(seq, packet), sig)


def available() -> bool:
    """libnettle is loadable here (its UMAC functions too)."""
    return _nettle is not None and hasattr(_nettle, "nettle_umac64_set_key")
