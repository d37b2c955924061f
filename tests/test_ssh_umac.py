"""consrv.ssh.umac: the same tags as asyncssh's own UMAC, with the key set once.

asyncssh's implementation (``asyncssh.mac._UMAC`` over ``asyncssh.crypto.umac``)
is the reference: any sequence number, any packet size, both digest sizes.
"""

from __future__ import annotations

import os

import asyncssh.mac
import pytest
from asyncssh.crypto import umac64, umac128
from hypothesis import given
from hypothesis import strategies as st

from consrv.ssh import compat, umac
from consrv.ssh.umac import KeyedUMAC


def reference(key: bytes, bits: int) -> asyncssh.mac.MAC:
    size, alg = (8, umac64) if bits == 64 else (16, umac128)
    return asyncssh.mac._UMAC(key, size, alg)


@given(
    st.binary(min_size=16, max_size=16),
    st.sampled_from([64, 128]),
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**64 - 1), st.binary(max_size=3000)),
        min_size=1,
        max_size=8,
    ),
)
def test_same_tags_as_asyncssh(key: bytes, bits: int, packets: list[tuple[int, bytes]]) -> None:
    """One keyed context, many packets in any order of sequence numbers."""
    mine, theirs = KeyedUMAC(key, bits // 8, bits), reference(key, bits)
    for seq, packet in packets:
        tag = mine.sign(seq, packet)
        assert tag == theirs.sign(seq, packet)
        assert mine.verify(seq, packet, tag)
        assert not mine.verify(seq + 1 if seq < 2**64 - 1 else 0, packet, tag)


def test_a_full_ssh_packet_and_consecutive_numbers() -> None:
    key = os.urandom(16)
    mine, theirs = KeyedUMAC(key, 8, 64), reference(key, 64)
    packet = os.urandom(32768 + 16)
    for seq in range(1000, 1010):
        assert mine.sign(seq, packet) == theirs.sign(seq, packet)


def test_install_replaces_only_the_umac_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    handlers = dict(asyncssh.mac._mac_handler)
    monkeypatch.setattr(asyncssh.mac, "_mac_handler", handlers)
    before = dict(handlers)
    assert compat.install_keyed_umac()
    for name, (handler, hash_size, args) in handlers.items():
        if name in umac.ALGORITHMS:
            assert handler is KeyedUMAC
            assert hash_size == before[name][1]
            assert args == (umac.ALGORITHMS[name],)
        else:
            assert (handler, hash_size, args) == before[name]
    mac = asyncssh.mac.get_mac(b"umac-64-etm@openssh.com", b"k" * 16)
    assert isinstance(mac, KeyedUMAC)
    assert mac.sign(7, b"data") == reference(b"k" * 16, 64).sign(7, b"data")
