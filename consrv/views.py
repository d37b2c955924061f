"""What users read about consoles: the tables and the JSON of list, who, status, info.

Owns the shape of every report (text for people, JSON for scripts; the JSON
keys are documented in docs/usage.md and stay stable). Reads consoles and IOC
health; knows nothing of SSH, sockets or how a report is sent.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from consrv.console import Console, WhoEntry
from consrv.ioc import UnitHealth

# The JSON reports' version: bumped only when a key changes meaning or goes away.
SCHEMA = 1


@dataclass(frozen=True)
class ConsoleView:
    """One console as reported: its state and, for an IOC, its unit's health."""

    console: Console
    ioc_unit: str | None = None
    health: UnitHealth | None = None

    @property
    def state(self) -> str:
        """up, down, child-down (procServ up, IOC not running), stopped, failed."""
        if self.console.up:  # connected to procServ: that is the truth, whatever the last poll
            return "child-down" if self.console.child_running is False else "up"
        health = self.health
        if health is not None and health.active_state in ("inactive", "failed"):
            return "stopped" if health.active_state == "inactive" else "failed"
        return "down"


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def age(seconds: float | None) -> str:
    """A short duration for tables: 5s, 3m, 2h05m, 4d."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d"


def to_json(data: object) -> str:
    return json.dumps(data, indent=None, separators=(",", ":"), sort_keys=False) + "\n"


# -- list / status ----------------------------------------------------------


def console_dict(view: ConsoleView) -> dict[str, Any]:
    console = view.console
    return {
        "name": console.name,
        "state": view.state,
        "upstream": str(console.target),
        "connected": console.up,
        "child_pid": console.child_pid,
        "auto_restart": console.auto_restart,
        "write": console.lock.mode,
        "writer": console.writer_name(),
        "viewers": len(console.viewers),
        "last_output": iso(console.stats.last_output),
        "child_starts": console.stats.child_starts,
        "child_exits": console.stats.child_exits,
        "ioc": unit_dict(view.ioc_unit, view.health) if view.ioc_unit else None,
    }


def unit_dict(unit: str, health: UnitHealth | None) -> dict[str, Any]:
    if health is None:
        return {"unit": unit, "active_state": None}
    return {
        "unit": unit,
        "active_state": health.active_state,
        "sub_state": health.sub_state,
        "n_restarts": health.n_restarts,
        "main_pid": health.main_pid,
        "started_at": iso(health.started_at),
        "exit_status": health.exit_status,
        "memory_bytes": health.memory_bytes,
        "cpu_seconds": health.cpu_seconds,
    }


def list_json(views: Iterable[ConsoleView]) -> str:
    return to_json({"schema": SCHEMA, "consoles": [console_dict(view) for view in views]})


def list_table(views: Sequence[ConsoleView], *, numbered: bool = False) -> str:
    """NAME STATE WRITER VIEWERS, one console a line (the menu numbers them)."""
    rows = [("#",) * numbered + ("NAME", "STATE", "WRITER", "VIEWERS")]
    for index, view in enumerate(views, start=1):
        console = view.console
        writer = "(shared)" if console.lock.shared else (console.writer_name() or "-")
        rows.append(
            (str(index),) * numbered + (console.name, view.state, writer, str(len(console.viewers)))
        )
    return table(rows)


def status_text(view: ConsoleView, *, now: float) -> str:
    """The detailed status of one console (`status NAME`, ``^Eci``)."""
    console, data = view.console, console_dict(view)
    lines = [
        f"console   {console.name}: {view.state}",
        f"upstream  {console.target} ({'connected' if console.up else 'not connected'})",
        f"child     {_child_text(console)}",
        f"write     {_writer_text(console, now)}",
        f"viewers   {len(console.viewers)}",
        f"output    last {_ago(console.stats.last_output, now)}",
    ]
    if data["ioc"] is not None:
        lines.append(f"ioc       {_unit_text(data['ioc'])}")
    return "".join(line + "\n" for line in lines)


def _ago(timestamp: float | None, now: float) -> str:
    return "never" if timestamp is None else age(now - timestamp) + " ago"


def _child_text(console: Console) -> str:
    pid = f"pid {console.child_pid}" if console.child_pid else "not running"
    restart = f", auto-restart {console.auto_restart}" if console.auto_restart else ""
    exits = console.stats.child_exits
    return f"{pid}{restart}, {console.stats.child_starts} start(s), {exits} exit(s)"


def _writer_text(console: Console, now: float) -> str:
    if console.lock.shared:
        return "shared (every read-write user writes)"
    writer = console.writer_name()
    if writer is None:
        return "nobody"
    since = console.lock.since
    queue = f", {len(console.lock.queue)} waiting" if console.lock.queue else ""
    return f"{writer} for {age(now - since) if since else '-'}{queue}"


def _unit_text(unit: dict[str, Any]) -> str:
    if unit["active_state"] is None:
        return f"{unit['unit']}: state unknown"
    text = f"{unit['unit']}: {unit['active_state']} ({unit['sub_state']})"
    if unit["main_pid"]:
        text += f", pid {unit['main_pid']}"
    if unit["n_restarts"]:
        text += f", {unit['n_restarts']} automatic restart(s)"
    if unit["started_at"]:
        text += f", since {unit['started_at']}"
    return text


def status_table(views: Sequence[ConsoleView], *, now: float) -> str:
    """All consoles: NAME STATE CHILD WRITER VIEWERS LAST-OUTPUT IOC."""
    rows = [("NAME", "STATE", "CHILD", "WRITER", "VIEWERS", "OUTPUT", "UNIT")]
    for view in views:
        console = view.console
        rows.append(
            (
                console.name,
                view.state,
                str(console.child_pid or "-"),
                "(shared)" if console.lock.shared else (console.writer_name() or "-"),
                str(len(console.viewers)),
                _ago(console.stats.last_output, now),
                view.health.active_state if view.health else ("-" if not view.ioc_unit else "?"),
            )
        )
    return table(rows)


# -- who ----------------------------------------------------------------------


def who_dict(console: str, entry: WhoEntry) -> dict[str, Any]:
    return {
        "console": console,
        "user": entry.user,
        "mode": entry.mode,
        "since": iso(entry.since),
        "idle_seconds": None if entry.idle is None else round(entry.idle, 1),
        "login": entry.login,
        "from": entry.peer,
    }


def who_json(rows: Iterable[tuple[str, WhoEntry]]) -> str:
    return to_json({"schema": SCHEMA, "users": [who_dict(name, e) for name, e in rows]})


def who_table(rows: Sequence[tuple[str, WhoEntry]], *, now: float, console_column: bool) -> str:
    header = ("CONSOLE",) * console_column + ("USER", "MODE", "IDLE", "ATTACHED", "LOGIN", "FROM")
    lines = [header]
    for name, entry in rows:
        lines.append(
            (name,) * console_column
            + (
                entry.user,
                entry.mode,
                age(entry.idle),
                age(now - entry.since) + " ago",
                entry.login or "-",
                entry.peer or "-",
            )
        )
    return table(lines) + _who_summary(rows)


def _who_summary(rows: Sequence[tuple[str, WhoEntry]]) -> str:
    """A line for each console with a writer: how many are attached, and that the writer
    is one of them (the VIEWERS of list and status count everyone, the writer too)."""
    counts: dict[str, int] = {}
    writers: dict[str, str] = {}
    for name, entry in rows:
        counts[name] = counts.get(name, 0) + 1
        if entry.mode == "writer":
            writers[name] = entry.user
    return "".join(
        f"{name}: {counts[name]} attached (VIEWERS in list); {writer} writes and is one of them\n"
        for name, writer in writers.items()
    )


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )
