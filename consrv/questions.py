"""Whether a [y/N] question put to one user is still true.

Owns the conditions under which a session's pending question stops being true, and
the words that say why: the stopped IOC it offers to start was started meanwhile
(``ssh ... start NAME`` from another terminal, a colleague, systemd); the writer who
was asked about procServ's ^X is no longer the writer. (An IOC action confirmed by
someone a reload took out of the operate list is refused when it is carried out,
with its own message.) A session checks its question every
`RECHECK` seconds while one is pending, and withdraws it with a one-line notice, so
what the user types next goes where it would have gone with no question asked.

Must not know: SSH, the escape parser, how a question is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consrv.console import Console, Viewer

# How often a pending question is checked (a question is pending for seconds at most,
# on one session at a time per user: the cost is nothing).
RECHECK = 0.1

# Why a question is no longer true, or None while it is.
Staleness = Callable[[], str | None]


class Unit(Protocol):
    """An IOC unit as a question sees it (a session's ``IocControl``)."""

    @property
    def may_operate(self) -> bool: ...

    def describe(self) -> _Described: ...


class _Described(Protocol):
    @property
    def state(self) -> str: ...


STOPPED = ("stopped", "failed")


def start_offer(console: Console, unit: Unit) -> Staleness:
    """ "IOC NAME is stopped. Start it?": untrue once the IOC runs, or the user may no
    longer operate it."""

    def stale() -> str | None:
        if console.up:  # procServ's socket is back: started, by someone else
            return f"IOC {console.name} was started meanwhile"
        state = unit.describe().state
        if state not in STOPPED:
            return f"IOC {console.name} is {state} now"
        return None if unit.may_operate else f"you may no longer operate {console.name}"

    return stale


def procserv_key(console: Console, viewer: Viewer, what: str) -> Staleness:
    """ "Send ^X to IOC NAME?": untrue once the user no longer writes (forced off,
    released after idling, the console went down)."""

    def stale() -> str | None:
        if not console.lock.may_write(viewer):
            return f"you no longer write to {console.name}: {what} not sent"
        return None

    return stale
