"""The write lock as a pure state machine: conserver's etiquette, rule by rule."""

from __future__ import annotations

from consrv.writelock import Kind, WriterLock


def lock_with(*rw: str, mode: str = "exclusive") -> WriterLock[str]:
    lock: WriterLock[str] = WriterLock("shared" if mode == "shared" else "exclusive")
    for who in rw:
        lock.join(who, rw=True, write=True, now=0.0)
    return lock


def test_first_read_write_user_writes_later_ones_watch() -> None:
    lock = lock_with("alice", "bob")
    assert lock.writer == "alice"
    assert lock.may_write("alice")
    assert not lock.may_write("bob")


def test_read_only_holder_never_writes_queues_or_forces() -> None:
    lock = lock_with()
    assert lock.join("olga", rw=False, write=True, now=0.0) is None
    assert lock.request("olga", 1.0) is None
    assert lock.force("olga", 1.0) is None
    assert lock.writer is None
    assert not lock.may_write("olga")


def test_joining_to_watch_leaves_a_free_lock_free() -> None:
    lock = lock_with()
    assert lock.join("bob", rw=True, write=False, now=0.0) is None
    assert lock.writer is None
    change = lock.request("bob", 2.0)
    assert change is not None
    assert change.kind is Kind.GRANTED
    assert lock.since == 2.0


def test_queue_hands_off_in_order_and_never_promotes_a_silent_watcher() -> None:
    lock = lock_with("alice", "bob", "carol", "dave")  # dave never asks
    carol_asks = lock.request("carol", 1.0)
    bob_asks = lock.request("bob", 2.0)
    assert carol_asks is not None
    assert (carol_asks.kind, carol_asks.position) == (Kind.QUEUED, 1)
    assert bob_asks is not None
    assert bob_asks.position == 2
    change = lock.leave("alice", 3.0)
    assert change is not None
    assert (change.kind, change.writer, change.previous) == (Kind.LEFT, "carol", "alice")
    change = lock.spy("carol", 4.0)
    assert change is not None
    assert (change.kind, change.writer) == (Kind.RELEASED, "bob")
    change = lock.leave("bob", 5.0)
    assert change is not None
    assert change.writer is None  # dave did not ask: nobody writes
    assert not lock.may_write("dave")


def test_asking_twice_keeps_one_place() -> None:
    lock = lock_with("alice", "bob")
    lock.request("bob", 1.0)
    again = lock.request("bob", 2.0)
    assert again is not None
    assert again.position == 1
    assert lock.queue == ["bob"]


def test_force_takes_the_lock_and_the_old_writer_watches() -> None:
    lock = lock_with("alice", "bob", "carol")
    lock.request("carol", 1.0)
    change = lock.force("bob", 2.0)
    assert change is not None
    assert (change.kind, change.writer, change.previous) == (Kind.FORCED, "bob", "alice")
    assert not lock.may_write("alice")
    assert lock.queue == ["carol"]  # forcing does not queue the old writer
    assert lock.since == 2.0


def test_forcing_a_free_lock_is_a_grant_and_forcing_yourself_nothing() -> None:
    lock = lock_with()
    lock.join("bob", rw=True, write=False, now=0.0)
    change = lock.force("bob", 1.0)
    assert change is not None
    assert change.kind is Kind.GRANTED
    assert lock.force("bob", 2.0) is None


def test_spy_from_the_queue_leaves_the_queue_without_a_change() -> None:
    lock = lock_with("alice", "bob")
    lock.request("bob", 1.0)
    assert lock.spy("bob", 2.0) is None
    assert lock.queue == []
    change = lock.leave("alice", 3.0)
    assert change is not None
    assert change.writer is None


def test_idle_release_passes_to_the_queue() -> None:
    lock = lock_with("alice", "bob")
    lock.request("bob", 1.0)
    assert lock.idle("bob", 2.0) is None  # only the writer idles out
    change = lock.idle("alice", 3.0)
    assert change is not None
    assert (change.kind, change.writer, change.previous) == (Kind.IDLE, "bob", "alice")


def test_shared_mode_lets_every_read_write_user_write_and_never_changes() -> None:
    lock = lock_with("alice", "bob", mode="shared")
    lock.join("olga", rw=False, write=True, now=0.0)
    assert lock.may_write("alice")
    assert lock.may_write("bob")
    assert not lock.may_write("olga")
    assert lock.writer is None
    assert lock.request("bob", 1.0) is None
    assert lock.force("bob", 1.0) is None


def test_a_holder_that_left_cannot_write_again_without_joining() -> None:
    lock = lock_with("alice")
    lock.leave("alice", 1.0)
    assert lock.request("alice", 2.0) is None
    assert lock.writer is None
