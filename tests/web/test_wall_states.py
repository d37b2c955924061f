"""consrv/web/wall.py without a browser: the word for each state, problems first, the
counts, UTC clock and ages (tests/web/test_wall.py has the pages in chromium)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from consrv.web import wall


def entry(name: str, state: str, **more: Any) -> dict[str, Any]:
    found = {"name": name, "state": state, "auto_restart": None, "ioc": None, **more}
    label, _, level = wall.STATES[wall.wall_state(found)]
    found["wall"] = {"state": wall.wall_state(found), "label": label, "level": level}
    return found


@pytest.mark.parametrize(
    ("state", "more", "shown"),
    [
        ("up", {}, "up"),
        ("down", {}, "down"),
        ("child-down", {"auto_restart": "OFF"}, "child-down"),
        ("child-down", {"auto_restart": "ON"}, "restarting"),  # procServ brings it back
        ("down", {"ioc": {"active_state": "activating"}}, "restarting"),  # systemd does
        ("stopped", {"ioc": {"active_state": "inactive"}}, "stopped"),
        ("failed", {"ioc": {"active_state": "failed"}}, "failed"),
    ],
)
def test_the_state_shown(state: str, more: dict[str, Any], shown: str) -> None:
    assert wall.wall_state({"state": state, **more}) == shown


def test_problems_first_then_by_name_with_the_counts() -> None:
    entries = [entry("b-up", "up"), entry("a-up", "up"), entry("z-down", "down"),
               entry("m-stop", "stopped"), entry("c-ioc", "child-down")]  # fmt: skip
    board = wall.board(entries, now=0.0)
    assert [e["name"] for e in board["consoles"]] == ["c-ioc", "z-down", "m-stop", "a-up", "b-up"]
    assert board["counts"] == {"down": 1, "child-down": 1, "stopped": 1, "up": 2}
    assert (board["zone"], board["now"]) == ("UTC", "1970-01-01T00:00:00Z")


def test_times_are_utc_with_the_date_when_not_today() -> None:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    today = now.isoformat().replace("+00:00", "Z")
    assert wall.clock(today) == now.strftime("%H:%M:%S UTC")
    assert wall.clock("2020-01-02T03:04:05Z") == "2020-01-02 03:04:05 UTC"
    assert wall.clock(None) == "-"
    assert wall.ago("2026-12-06T03:00:00Z", "2026-12-06T05:05:00Z") == "2h05m"
    assert wall.ago(None, today) == "never"
