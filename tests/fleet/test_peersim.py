"""The scale bench's simulated peer sends a gateway the feed a real peer sends (issue 29).

A real `consrv serve` peer with two procServ ``cat`` consoles, and bench/peersim.py with
one peer whose consoles have the same names, both read as a gateway reads them: its
own key on the observer login, ``watch --json``, the lines decoded by
`consrv.protocol.feed`. The same events in the same order (hello, one entry a console,
sync), the same keys in every entry and the same values wherever the two hosts are in
the same state; only what names the host's own processes differs (socket path, pid,
the users' list: the simulator's users are the bench's).

Policy: loopback only, port 0; every wait is bounded and names what it waits for;
every process is stopped here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import trio_asyncio

from consrv.protocol.feed import ConsoleEntry, Event, FeedDecoder, Hello, Sync
from tests.fleet.sim import Peer, fleet_init, peer_section, start_peers
from tests.harness import make_key
from tests.waits import deadline

pytestmark = pytest.mark.integration

# What names the host's own processes and people, or when consrv met its console (a child
# that started after consrv connected counts in child_starts): differs between hosts.
HOST_FACTS = ("upstream", "child_pid", "who", "child_starts")


async def feed_events(
    address: str, port: int, keys: Path, known_hosts: Path, until: int
) -> list[Event]:
    """The first ``until`` events of a peer's feed, read as a gateway reads it."""
    decoder, events = FeedDecoder(), list[Event]()

    async def read() -> None:
        async with asyncssh.connect(
            address, port, username="observer",
            client_keys=[str(keys / "gateway_key")], known_hosts=str(known_hosts),
            config=None, agent_path=None,
        ) as conn:  # fmt: skip
            process = await conn.create_process("watch --json", encoding=None)
            while len(events) < until:
                decoder.receive_data(await process.stdout.read(65536))
                while (event := decoder.next_event()) is not None:
                    events.append(event)
            process.close()

    async with trio_asyncio.open_loop():
        with deadline(20, f"the first {until} events of {address}:{port}'s feed"):
            await trio_asyncio.aio_as_trio(read)()
    return events[:until]


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Peer, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("peersim")
    keys = root / "gateway-keys"
    section = peer_section(fleet_init(keys, addresses=("127.0.0.53",)))
    users = {name: make_key(root, name) for name in ("alice", "bob", "olga")}
    peers: list[Peer] = []
    sim_dir = root / "sim"
    sim_dir.mkdir()
    argv = [sys.executable, "-m", "bench.peersim", "--dir", str(sim_dir), "--keys", str(keys),
            "--peers", "1", "--names", "dup-ioc,ioc-00", "--keepalive", "60"]  # fmt: skip
    sim = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        start_peers(root, users, section, keys / "known_hosts", 1, peers)
        assert sim.stdout is not None
        line = sim.stdout.readline()
        assert "listening" in line, f"peersim did not start: {line!r}"
        with (keys / "known_hosts").open("a") as known:
            known.write((sim_dir / "known_hosts").read_text())
        [simulated] = json.loads((sim_dir / "peersim.json").read_text())["peers"]
        simulated["keys"] = keys
        yield peers[0], simulated
    finally:
        for peer in peers:
            peer.consrv.stop()
            for ps in peer.procservs.values():
                ps.stop()
        sim.terminate()
        sim.wait(timeout=10)
        if sim.stdout is not None:
            sim.stdout.close()


def shape(events: list[Event]) -> list[str]:
    return [type(event).__name__ for event in events]


async def test_a_simulated_peer_sends_what_a_real_one_sends(
    hosts: tuple[Peer, dict[str, Any]],
) -> None:
    real_peer, simulated = hosts
    keys: Path = simulated["keys"]
    known = keys / "known_hosts"
    real = await feed_events(real_peer.name, real_peer.port, keys, known, until=4)
    address, port = simulated["address"].rsplit(":", 1)
    sim = await feed_events(address, int(port), keys, known, until=4)
    assert shape(real) == shape(sim) == ["Hello", "ConsoleEntry", "ConsoleEntry", "Sync"]
    assert isinstance(real[0], Hello)
    assert isinstance(sim[0], Hello)
    assert "gateway" in real[0].users
    assert "gateway" in sim[0].users
    for mine, theirs in zip(real[1:3], sim[1:3], strict=True):
        assert isinstance(mine, ConsoleEntry)
        assert isinstance(theirs, ConsoleEntry)
        assert mine.entry.keys() == theirs.entry.keys()
        for key, value in mine.entry.items():
            if key not in HOST_FACTS:
                assert theirs.entry[key] == value, key
            elif key in ("child_pid", "child_starts"):
                assert isinstance(theirs.entry[key], int)
                assert isinstance(value, int)
    assert isinstance(real[3], Sync)
