"""The fleet through the real OpenSSH client: one namespace over many real consrv hosts."""

from __future__ import annotations

import pytest

from tests.fleet.conftest import DUPLICATE, PEERS, SECRET, Fleet

pytestmark = pytest.mark.integration


def test_list_covers_every_peer_with_a_host_column(fleet: Fleet) -> None:
    data = fleet.listing("alice")
    assert data["schema"] == 1
    assert data["missing_peers"] == []
    rows = {(row["name"], row["host"]) for row in data["consoles"]}
    for index, peer in enumerate(fleet.peers):
        assert (f"ioc-{index:02d}", peer.name) in rows
    assert (DUPLICATE, fleet.peers[0].name) in rows
    assert (DUPLICATE, fleet.peers[1].name) in rows
    assert (SECRET, fleet.peers[3].name) in rows
    assert len(rows) == PEERS + 4
    table = fleet.ssh("alice", "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "HOST", "STATE", "WRITER", "VIEWERS"]
