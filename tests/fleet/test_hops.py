"""The connections a gateway keeps for one user's web reads of one peer (fleet/hops.py).

Pure: a hand-written connection that records being aborted, and a clock the test moves.
"""

from __future__ import annotations

from typing import cast

import asyncssh

from consrv.contracts import Login
from consrv.fleet.hops import IDLE, MAX_AGE, MAX_READS, HopPool, Key
from consrv.fleet.identity import Credential

ALICE = Login("alice", frozenset({"ops"}), True)
OLGA = Login("olga", frozenset({"ops"}), True)
CREDENTIAL = cast(Credential, object())


class Conn:
    def __init__(self) -> None:
        self.aborted = False

    def is_closed(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def conn() -> tuple[Conn, asyncssh.SSHClientConnection]:
    fake = Conn()
    return fake, cast(asyncssh.SSHClientConnection, fake)


def test_a_connection_is_lent_to_its_user_only_and_closed_once_idle() -> None:
    clock = Clock()
    pool = HopPool(clock)
    key = Key.of(ALICE, "h1", "observer")
    fake, first = conn()
    pool.add(key, first, CREDENTIAL)
    assert pool.take(Key.of(OLGA, "h1", "observer")) is None  # another user: never
    assert pool.take(Key.of(ALICE, "h2", "observer")) is None  # another peer
    assert pool.take(Key.of(ALICE, "h1", "console")) is None  # another login name
    changed = Login("alice", frozenset(), True)  # her rights changed on the gateway
    assert pool.take(Key.of(changed, "h1", "observer")) is None
    assert pool.take(key) == (first, CREDENTIAL)  # two reads at once share it
    pool.release(first, failed=False)
    pool.release(first, failed=False)
    clock.now += IDLE / 2
    pool.sweep(lambda peer: True)
    assert pool.take(key) == (first, CREDENTIAL)
    pool.release(first, failed=False)
    clock.now += IDLE + 1
    pool.sweep(lambda peer: True)
    assert fake.aborted
    assert pool.take(key) is None
    assert len(pool) == 0


def test_a_connection_is_not_lent_past_its_age_a_failure_or_a_down_link() -> None:
    clock = Clock()
    pool = HopPool(clock)
    key = Key.of(ALICE, "h1", "observer")
    fake, old = conn()
    pool.add(key, old, CREDENTIAL)
    clock.now += MAX_AGE + 1
    assert pool.take(key) is None  # too old: retired, closed when its read ends
    assert not fake.aborted
    pool.release(old, failed=False)
    assert fake.aborted
    fake, failing = conn()
    pool.add(key, failing, CREDENTIAL)
    pool.release(failing, failed=True)
    assert fake.aborted
    assert pool.take(key) is None
    fake, busy = conn()
    pool.add(key, busy, CREDENTIAL)
    pool.sweep(lambda peer: peer != "h1")  # its link dropped while a read used it
    assert not fake.aborted
    assert pool.take(key) is None
    pool.release(busy, failed=False)
    assert fake.aborted
    fake, kept = conn()
    pool.add(key, kept, CREDENTIAL)
    pool.release(kept, failed=False)
    pool.close_all()  # a reload
    assert fake.aborted
    assert pool.opened == 4


def test_a_busy_connection_is_not_shared_by_more_than_max_reads() -> None:
    pool = HopPool(Clock())
    key = Key.of(ALICE, "h1", "observer")
    fake, busy = conn()
    pool.add(key, busy, CREDENTIAL)
    for _ in range(MAX_READS - 1):
        assert pool.take(key) == (busy, CREDENTIAL)
    assert pool.take(key) is None  # one more read: a connection of its own
    other_fake, other = conn()
    pool.add(key, other, CREDENTIAL)  # now the one kept; the busy one ends with its reads
    for _ in range(MAX_READS):
        pool.release(busy, failed=False)
    assert fake.aborted
    assert not other_fake.aborted
    assert pool.take(key) == (other, CREDENTIAL)
