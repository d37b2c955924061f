"""The fleet's list, who and status: schema 1 reports with a HOST column and ``host`` key.

Owns the shape of fleet-wide reports. Rows are `views.console_dict` dictionaries
(local consoles) or the entries peers send (consrv/host/feed.py: the same keys, less the
volatile ones), each with ``host`` added. A console whose peer is down is listed
with state ``unreachable``; the JSON says which peers are missing, so a partial
answer is never mistaken for a whole one. Schema 1 is extended, not changed:
every key it had keeps its meaning.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from consrv import views
from consrv.fleet.directory import Peer

UNREACHABLE = "unreachable"


def missing_dict(peer: Peer) -> dict[str, Any]:
    return {"host": peer.name, "address": peer.address, "since": views.iso(peer.since),
            "error": peer.error or None}  # fmt: skip


# Routing data in a row that is not for users' eyes (or not in list's schema).
_INTERNAL = ("rw", "ro", "operate", "who")


def list_json(rows: Sequence[dict[str, Any]], missing: Sequence[Peer]) -> str:
    shown = [{k: v for k, v in row.items() if k not in _INTERNAL} for row in rows]
    return views.to_json(
        {"schema": views.SCHEMA, "consoles": shown,
         "missing_peers": [missing_dict(p) for p in missing]}
    )  # fmt: skip


def web_rows(rows: Sequence[dict[str, Any]], here: str) -> list[dict[str, Any]]:
    """`rows` for the web's list (contracts.FleetView): no routing data, ``local`` and
    ``id`` (``NAME@HOST`` where the name is on more than one host) added."""
    count: dict[str, int] = {}
    for row in rows:
        count[row["name"]] = count.get(row["name"], 0) + 1
    return [
        {k: v for k, v in row.items() if k not in _INTERNAL}
        | {"local": row["host"] == here,
           "id": row["name"] if count[row["name"]] == 1 else f"{row['name']}@{row['host']}"}
        for row in rows
    ]  # fmt: skip


def _writer(row: dict[str, Any]) -> str:
    return "(shared)" if row.get("write") == "shared" else (row.get("writer") or "-")


def list_table(
    rows: Sequence[dict[str, Any]], missing: Sequence[Peer], now: float, *, numbered: bool = False
) -> str:
    """NAME HOST STATE WRITER VIEWERS (numbered for the menu), then a line per missing peer."""
    lines = [("#",) * numbered + ("NAME", "HOST", "STATE", "WRITER", "VIEWERS")]
    lines += [
        (str(index),) * numbered + (r["name"], r["host"], r["state"], _writer(r), str(r["viewers"]))
        for index, r in enumerate(rows, start=1)
    ]
    return views.table(lines) + missing_text(missing, now)


def status_table(rows: Sequence[dict[str, Any]], missing: Sequence[Peer], now: float) -> str:
    lines = [("NAME", "HOST", "STATE", "CHILD", "WRITER", "VIEWERS", "UNIT")]
    for r in rows:
        unit = r.get("ioc") or {}
        lines.append((r["name"], r["host"], r["state"], str(r.get("child_pid") or "-"),
                      _writer(r), str(r["viewers"]), unit.get("active_state") or "-"))  # fmt: skip
    return views.table(lines) + missing_text(missing, now)


def who_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per attached user, from the consoles' ``who`` lists."""
    return [
        {"console": r["name"], "host": r["host"], "user": w["user"], "mode": w["mode"],
         "since": w["since"], "idle_seconds": w.get("idle_seconds"), "login": w["login"],
         "from": w["from"]}
        for r in rows for w in r.get("who", ())
    ]  # fmt: skip


def with_idle(who: Sequence[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """A peer's ``who`` entries with ``idle_seconds`` as of ``now``, from their
    ``last_input`` (None from a peer that does not send it, as for no keystroke yet)."""
    return [{**w, "idle_seconds": _idle(w.get("last_input"), now)} for w in who]


def _idle(last_input: object, now: float) -> float | None:
    if not isinstance(last_input, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(last_input).timestamp()
    except ValueError:
        return None
    return round(max(0.0, now - moment), 1)


def who_json(rows: Sequence[dict[str, Any]], missing: Sequence[Peer]) -> str:
    return views.to_json(
        {"schema": views.SCHEMA, "users": who_rows(rows),
         "missing_peers": [missing_dict(p) for p in missing]}
    )  # fmt: skip


def who_table(rows: Sequence[dict[str, Any]], missing: Sequence[Peer], now: float) -> str:
    lines = [("CONSOLE", "HOST", "USER", "MODE", "IDLE", "SINCE", "LOGIN", "FROM")]
    for w in who_rows(rows):
        lines.append((w["console"], w["host"], w["user"], w["mode"], views.age(w["idle_seconds"]),
                      w["since"] or "-", w["login"] or "-", w["from"] or "-"))  # fmt: skip
    return views.table(lines) + missing_text(missing, now)


def missing_text(missing: Sequence[Peer], now: float) -> str:
    return "".join(f"# {unreachable_text(peer, now)}\n" for peer in missing)


def unreachable_text(peer: Peer, now: float) -> str:
    """``iochost-17 unreachable since 2026-12-03T21:40:12Z (3m ago): why``."""
    if peer.since is None:
        return f"{peer.name} not reached yet"
    since = f"since {views.iso(peer.since)} ({views.age(now - peer.since)} ago)"
    why = f": {peer.error}" if peer.error else ""
    return f"{peer.name} unreachable {since}{why}"
