"""The write lock of one console: who may type, who waits, and what changed.

Owns conserver's etiquette as a pure state machine over opaque holders (the
console passes its viewers): one writer at a time, a FIFO queue of those who
asked, force, spy, hand-off on leave, and release after idling. Every method
returns the `Change` it made (or None), so the caller can announce it and log
it; nothing here knows of time sources, text, viewers or I/O.

Rules:
1. In ``exclusive`` mode at most one holder writes. In ``shared`` mode every
   read-write holder writes, and the lock never changes hands.
2. Write passes on only to the first in the queue: a watcher who did not ask
   is never promoted.
3. Only a holder that joined as read-write (`join(who, rw=True)`) can write,
   queue or force.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["Change", "Kind", "WriterLock"]

T = TypeVar("T")


class Kind(enum.Enum):
    GRANTED = "granted"  # the lock was free: `writer` now writes
    QUEUED = "queued"  # `who` waits behind `writer`
    FORCED = "forced"  # `writer` took the lock from `previous`
    RELEASED = "released"  # `previous` stopped writing; `writer` (first in queue) or nobody
    LEFT = "left"  # `previous` left the console; `writer` (first in queue) or nobody
    IDLE = "idle"  # `previous` idled out; `writer` (first in queue) or nobody


@dataclass(frozen=True)
class Change(Generic[T]):
    kind: Kind
    writer: T | None  # who writes after the change
    previous: T | None = None  # who wrote before (force, release, leave, idle)
    who: T | None = None  # who asked (queued)
    position: int = 0  # place in the queue, from 1 (queued)


class WriterLock(Generic[T]):
    """One console's lock. ``since`` is the time the current writer got it."""

    def __init__(self, mode: Literal["exclusive", "shared"] = "exclusive") -> None:
        self.mode = mode
        self.writer: T | None = None
        self.since: float | None = None
        self.queue: list[T] = []
        self._rw: set[T] = set()

    @property
    def shared(self) -> bool:
        return self.mode == "shared"

    def may_write(self, who: T) -> bool:
        return who in self._rw and (self.shared or who is self.writer)

    def join(self, who: T, *, rw: bool, write: bool, now: float) -> Change[T] | None:
        """`who` attaches; with `write`, they take the lock if it is free."""
        if rw:
            self._rw.add(who)
        if rw and write and not self.shared and self.writer is None:
            return self._grant(who, now)
        return None

    def request(self, who: T, now: float) -> Change[T] | None:
        """``^Eca``: write if free, else wait in the queue (None: nothing changed)."""
        if who not in self._rw or self.shared or who is self.writer:
            return None
        if self.writer is None:
            return self._grant(who, now)
        if who not in self.queue:
            self.queue.append(who)
        return Change(Kind.QUEUED, self.writer, who=who, position=self.queue.index(who) + 1)

    def force(self, who: T, now: float) -> Change[T] | None:
        """``^Ecf``: take the lock; the old writer becomes a watcher."""
        if who not in self._rw or self.shared or who is self.writer:
            return None
        if self.writer is None:
            return self._grant(who, now)
        previous = self.writer
        self._remove_from_queue(who)
        self.writer, self.since = who, now
        return Change(Kind.FORCED, who, previous=previous)

    def spy(self, who: T, now: float) -> Change[T] | None:
        """``^Ecs``: stop writing (or stop waiting)."""
        self._remove_from_queue(who)
        if who is not self.writer:
            return None
        return self._pass_on(Kind.RELEASED, now)

    def leave(self, who: T, now: float) -> Change[T] | None:
        """`who` detaches."""
        self._rw.discard(who)
        self._remove_from_queue(who)
        if who is not self.writer:
            return None
        return self._pass_on(Kind.LEFT, now)

    def idle(self, who: T, now: float) -> Change[T] | None:
        """`who` typed nothing for the idle timeout: release if they still write."""
        if who is not self.writer:
            return None
        return self._pass_on(Kind.IDLE, now)

    def position(self, who: T) -> int:
        """1 for the first in the queue, 0 when not queued."""
        return self.queue.index(who) + 1 if who in self.queue else 0

    def _grant(self, who: T, now: float) -> Change[T]:
        self._remove_from_queue(who)
        self.writer, self.since = who, now
        return Change(Kind.GRANTED, who)

    def _pass_on(self, kind: Kind, now: float) -> Change[T]:
        previous = self.writer
        self.writer = self.queue.pop(0) if self.queue else None
        self.since = now if self.writer is not None else None
        return Change(kind, self.writer, previous=previous)

    def _remove_from_queue(self, who: T) -> None:
        if who in self.queue:
            self.queue.remove(who)
