"""What each PV says, and how alarming it is: pure functions of a console's state.

Owns the meaning of the PVs (docs/pva.md): the choices of the enums, the value of
each reading and its alarm severity and message, from the console's state, its
``ioc@`` unit's health, its restart times and its silence, with the severities of
`PvaAlarms`; and each PV's type (`Kind`). No p4p, no trio, no clock (times are passed
in), no config code at run time (the PV server's own process imports this module).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # (not imported: the PV server's own process loads no config code)
    from consrv.config import PvaAlarms

# EPICS alarm severities and the status codes used here (menuAlarmStat's pvAccess subset).
NO_ALARM, MINOR, MAJOR = 0, 1, 2
STATUS_NONE, STATUS_DEVICE, STATUS_DRIVER = 0, 1, 2
STATE_CHOICES = ("down", "up", "no child")
UNIT_CHOICES = (
    "none", "active", "activating", "deactivating", "inactive", "failed", "reloading", "other",
)  # fmt: skip
WINDOW = 3600.0  # restarts are counted over the last hour
TEXT_LIMIT = 200  # characters of the last line published (when a console opts in)


@dataclass(frozen=True)
class Reading:
    """One PV's value and alarm."""

    value: object
    severity: int = NO_ALARM
    status: int = STATUS_NONE
    message: str = ""


class UnitView(Protocol):
    """What is read of an ``ioc@`` unit's health (ioc.UnitHealth)."""

    @property
    def active_state(self) -> str: ...

    @property
    def sub_state(self) -> str: ...


@dataclass(frozen=True)
class Kind:
    """A PV's type: ``code`` is p4p's value code ("d", "l", "s"), or "enum" with `choices`."""

    code: str
    choices: Sequence[str] = ()
    units: str = ""
    low: float = 0.0
    high: float = 0.0
    description: str = ""


# What the PV server in its own process needs to make a silence fresh for a first
# subscriber: when the console last printed (wall clock), ``silent_after``, and the
# severity past it (consrv/pva/worker.py).
SilenceSpec = tuple[float, float | None, int]


def state(up: bool, child_running: bool | None, exit_text: str, alarms: PvaAlarms) -> Reading:
    """The console's connection state: down (procServ unreachable), up, no child."""
    if not up:
        return Reading(0, alarms.down, STATUS_DEVICE, "procServ unreachable")
    if child_running is False:
        why = f"IOC not running ({exit_text})" if exit_text else "IOC not running"
        return Reading(2, alarms.no_child, STATUS_DEVICE, why)
    return Reading(1)


def unit(health: UnitView | None, alarms: PvaAlarms) -> Reading:
    """The ``ioc@`` unit's ActiveState ("none": not an IOC unit, or not known yet)."""
    if health is None:
        return Reading(0)
    active = health.active_state
    index = UNIT_CHOICES.index(active) if active in UNIT_CHOICES else len(UNIT_CHOICES) - 1
    text = f"{active}/{health.sub_state}"
    if active == "failed":
        return Reading(index, alarms.unit_failed, STATUS_DRIVER, text)
    if health.sub_state == "auto-restart":  # its procServ died; systemd starts it again
        return Reading(index, alarms.unit_failed, STATUS_DRIVER, f"{text}: restarting")
    if active in ("active", "activating", "reloading"):
        return Reading(index, NO_ALARM, STATUS_NONE, text if active != "active" else "")
    return Reading(index, alarms.unit_inactive, STATUS_DRIVER, text)


def restarts(count: int, crash_loop: int, alarms: PvaAlarms) -> Reading:
    if count >= crash_loop:
        return Reading(count, alarms.crash_loop, STATUS_DEVICE, f"crash loop: {count} in 1 h")
    return Reading(count)


def silence(age: float, silent_after: float | None, alarms: PvaAlarms) -> Reading:
    """Whole seconds since the last output; an alarm past ``silent_after``."""
    return silence_of(age, silent_after, alarms.silent)


def silence_of(age: float, silent_after: float | None, severity: int) -> Reading:
    """`silence`, with the severity past ``silent_after`` given alone."""
    seconds = float(int(age))
    if silent_after is not None and age > silent_after:
        return Reading(seconds, severity, STATUS_DEVICE, f"silent for over {silent_after:g} s")
    return Reading(seconds)


def count(value: int) -> Reading:
    return Reading(value)


def text(value: str | None) -> Reading:
    return Reading(value or "")


def last_line(output: bytes) -> str | None:
    """The last complete, non-empty line of ``output``, printable ASCII only (bounded)."""
    lines = output.splitlines()
    if not output.endswith(b"\n"):
        lines = lines[:-1]  # still being written
    for line in reversed(lines):
        cleaned = "".join(chr(b) for b in line if 0x20 <= b < 0x7F).strip()
        if cleaned:
            return cleaned[:TEXT_LIMIT]
    return None


@dataclass
class RestartWindow:
    """The times of a console's restarts, for "restarts in the last hour"."""

    times: list[float] = field(default_factory=list)

    def record(self, when: float, n: int = 1) -> None:
        for _ in range(n):
            bisect.insort(self.times, when)

    def count(self, now: float) -> int:
        """Restarts in (now - WINDOW, now]; older ones are forgotten."""
        drop = bisect.bisect_right(self.times, now - WINDOW)
        del self.times[:drop]
        return len(self.times)

    def next_expiry(self) -> float | None:
        """When the count next falls by itself (None: nothing to forget)."""
        return self.times[0] + WINDOW if self.times else None
