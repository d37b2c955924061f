"""The peer's side of the fleet: ``watch --json`` on a live service (real consoles over
UNIX sockets, tests/test_service.py's site), for gateway users only."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from consrv.config import FleetConfig
from consrv.contracts import DENIED
from tests.fakes import wait_for
from tests.test_service import ALICE, OLGA, FakeChannel, site


def lines(channel: FakeChannel) -> list[dict[str, Any]]:
    return [json.loads(text) for text in channel.stdout.splitlines()]


async def test_the_feed_is_a_snapshot_then_changes_for_gateway_users_only(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        registry = s.service.host.registry
        status, out = await s.run(OLGA, "watch --json")
        assert status == DENIED
        assert "fleet gateways" in out.notices.decode()
        registry.config = dataclasses.replace(
            registry.config, fleet=FleetConfig(gateway_users=("olga",))
        )
        channel, result = s.start(OLGA, "watch --json")
        await wait_for(lambda: any(m["type"] == "sync" for m in lines(channel)))
        first = lines(channel)
        assert [m["type"] for m in first] == ["hello", *["console"] * 4, "sync"]
        assert first[0]["users"] == {"alice": [], "bob": [], "olga": []}
        secret = next(m["console"] for m in first if m.get("console", {}).get("name") == "secret")
        assert (secret["rw"], secret["ro"]) == (["bob"], [])
        s.start(ALICE, "ioc-a")

        def attached() -> bool:
            for message in lines(channel)[len(first) :]:
                entry = message.get("console", {})
                if entry.get("name") == "ioc-a" and entry["writer"] == "alice":
                    return bool(entry["who"][0]["user"] == "alice")
            return False

        await wait_for(attached)
        registry.config = dataclasses.replace(registry.config, fleet=FleetConfig())
        await wait_for(lambda: result() is not None)
        assert result() == DENIED  # a reload that takes the gateway user out ends the feed
