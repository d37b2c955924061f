"""What encryption alone costs consrv per GB: a bound on its fan-out CPU.

Every byte a viewer receives is encrypted once for that viewer, in Python's
asyncssh with ``cryptography`` (OpenSSL) underneath. The OpenSSH client picks
chacha20-poly1305@openssh.com; its largest packet is 32 KiB, which is what a
streaming console fills (consrv batches output up to that).

Must not know: anything about servers.
"""

from __future__ import annotations

import os
import time

from asyncssh.crypto.chacha import ChachaCipher

PACKET = 32768
TOTAL = 256 * 2**20


def chacha_cpu_s_per_gb(packet: int = PACKET, total: int = TOTAL) -> float:
    """CPU-seconds per GB for asyncssh's chacha20-poly1305 ``encrypt_and_sign``."""
    cipher = ChachaCipher(os.urandom(64))
    header, data = os.urandom(4), os.urandom(packet)
    count = total // packet
    start = time.process_time()
    for seq in range(count):
        cipher.encrypt_and_sign(header, data, seq.to_bytes(8, "big"))
    return (time.process_time() - start) / (count * packet / 1e9)
