"""A gateway's list in the browser view, in process: the web front fed through the
`contracts.FleetView` contract (a hand-written one here; tests/fleet/test_fleet.py
has the real gateway with real peers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from consrv.contracts import Channel, Input, Login
from tests.web.site import web_site


class Fleet:
    """Rows as the gateway gives them: its own console, two peers' (one down), a duplicate."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def fleet_rows(self, login: Login) -> list[dict[str, Any]]:
        self.asked.append(login.user)
        base = {"writer": None, "viewers": 0, "ioc": None, "last_output": None}
        return [
            {**base, "name": "dup", "host": "h1", "state": "up", "local": False, "id": "dup@h1"},
            {**base, "name": "dup", "host": "h2", "state": "unreachable", "local": False,
             "id": "dup@h2"},
            {**base, "name": "ioc-a", "host": "gw", "state": "up", "local": True, "id": "ioc-a"},
        ]  # fmt: skip

    async def fleet_stream(
        self, login: Login, target: str, sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        sink.write_notice(b"[consrv: not in this test]\r\n")
        return 1

    async def fleet_read(
        self, login: Login, words: list[str], sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        sink.write_notice(b"consrv: not in this test\n")
        return 1

    def fleet_missing(self) -> list[dict[str, Any]]:
        return [{"host": "h2", "address": "127.1.0.2:22", "since": "2026-12-06T03:00:00Z",
                 "error": "connection refused"}]  # fmt: skip


async def test_the_list_has_a_host_column_and_names_the_unreachable(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        fleet = Fleet()
        site.web.fleet = fleet
        client = await site.signed_in("olga")
        page = (await client.get("/")).text
        assert "<th>host</th>" in page
        assert '<td class="host">h2</td>' in page
        assert "dup@h2" in page
        assert "level-unreachable" in page  # the wall's badge (web/wall.py)
        assert "h2 unreachable since 2026-12-06T03:00:00Z: connection refused." in page
        assert 'href="/c/ioc-a"' in page  # the gateway's own console has its page here
        assert 'href="/c/dup%40h2"' in page  # a peer's streams through the gateway
        data = (await client.get("/api/consoles")).json()
        # problems first (the wall): the unreachable host's console, then by name
        assert [row["id"] for row in data["consoles"]] == ["dup@h2", "dup@h1", "ioc-a"]
        assert data["missing_peers"][0]["host"] == "h2"
        assert fleet.asked == ["olga", "olga"]  # judged for the user asking


async def test_without_a_fleet_the_list_is_this_hosts(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        client = await site.signed_in("olga")
        page = (await client.get("/")).text
        assert "<th>host</th>" not in page
        assert "missing_peers" not in (await client.get("/api/consoles")).json()
