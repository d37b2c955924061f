"""The wall screen: the consoles as a control room reads them from across the room.

Owns what the list page (``/``, ``/api/consoles``) and a console page's header
(``/api/consoles/NAME``) say about a console's state: one word a state, in capitals
(UP, DOWN, IOC DOWN, RESTARTING, STOPPED, FAILED) with the colour CSS gives its
level, since when (the console's last change of state, as consrv saw it), problems
first, the counts for the top of the page, and every time in UTC (the page says
so). The JSON is the console's ``list --json`` entry with a ``wall`` object added,
so nothing a script reads changes. Knows nothing of HTTP or SSH.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable
from typing import Any

from consrv import views

ZONE = "UTC"  # every time on the pages; list.js and console.js say the same

# state -> (word on the wall, what it means, level: 0 is worst and sorts first)
STATES: dict[str, tuple[str, str, int]] = {
    "down": ("DOWN", "procServ does not answer", 0),
    "failed": ("FAILED", "its unit failed", 0),
    "child-down": ("IOC DOWN", "procServ is up, the IOC is not running", 0),
    "restarting": ("RESTARTING", "the IOC is being restarted", 1),
    "stopped": ("STOPPED", "its unit was stopped", 2),
    "unreachable": ("UNREACHABLE", "its host does not answer the gateway", 0),
    "up": ("UP", "", 3),
}
# Unit states in which systemd is on its way between stopped and running.
MOVING = ("activating", "deactivating", "reloading")


def wall_state(entry: dict[str, Any]) -> str:
    """The state shown: the console's, or "restarting" while it is on its way back
    (procServ restarts the IOC by itself, or systemd is starting or stopping it)."""
    state = str(entry["state"])
    unit = entry.get("ioc") or {}
    if state == "up":
        return state
    if unit.get("active_state") in MOVING:
        return "restarting"
    if state == "child-down" and entry.get("auto_restart") == "ON":  # procServ's word
        return "restarting"
    return state


def annotate(view: views.ConsoleView) -> dict[str, Any]:
    """``list --json``'s entry for the console, with what the wall shows of it."""
    return annotate_entry(views.console_dict(view), views.iso(view.console.stats.state_since))


def annotate_entry(entry: dict[str, Any], since: str | None) -> dict[str, Any]:
    """An entry (this host's, or a fleet row from another host: its ``since`` is not
    known here) with what the wall shows of it."""
    state = wall_state(entry)
    label, meaning, level = STATES.get(state, (state.upper(), "", 0))
    entry["wall"] = {
        "state": state,
        "label": label,
        "meaning": meaning,
        "level": level,
        "since": since,
    }
    return entry


def board(entries: Iterable[dict[str, Any]], now: float) -> dict[str, Any]:
    """The list page's data: problems first (then by name), the counts, the time."""
    ordered = sorted(entries, key=lambda e: (e["wall"]["level"], e["name"], e.get("host", "")))
    counts = Counter(e["wall"]["state"] for e in ordered)
    return {
        "schema": views.SCHEMA,
        "now": views.iso(now),
        "zone": ZONE,
        "counts": {state: counts[state] for state in STATES if counts[state]},
        "consoles": ordered,
    }


def clock(iso: str | None) -> str:
    """An ISO time as the pages show it: ``HH:MM:SS UTC``, with the date when it is
    not today's (list.js's clock() does the same)."""
    if iso is None:
        return "-"
    moment = datetime.datetime.fromisoformat(iso)
    today = datetime.datetime.now(datetime.UTC).date()
    day = "" if moment.date() == today else moment.strftime("%Y-%m-%d ")
    return f"{day}{moment.strftime('%H:%M:%S')} {ZONE}"


def ago(iso: str | None, now: str) -> str:
    """How long before `now` (both ISO): 5s, 3m, 2h05m, 4d (views.age)."""
    if iso is None:
        return "never"
    delta = datetime.datetime.fromisoformat(now) - datetime.datetime.fromisoformat(iso)
    return views.age(max(0.0, delta.total_seconds()))
