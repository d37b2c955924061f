"""Many simulated fleet peers in one process, for the gateway's scale bench (not the product).

``python -m bench.peersim --dir DIR --peers 1000 --keys GATEWAY_KEYS [--consoles 5]``:
peer number i listens on 127.2.(i // 200).(10 + i % 200), a real SSH server (asyncssh)
with a host key of its own (``DIR/known_hosts`` lists them, for the gateway's
``fleet.known_hosts``), real keep-alives both ways, that lets in

- the gateway's own key on the observer login: ``watch --json``, the real feed, written
  by consrv's own code (`consrv.host.feed.Feed`: the same snapshot and diff as a real
  peer, the same `consrv.protocol.feed` lines);
- a user certificate from the gateway's CA naming the user (checked as a real peer
  checks it: signature, validity, principals): any other command is a console that
  echoes what is typed (a proxied session lands somewhere real).

Churn, scripted: ``--churn R`` console state changes a second across the fleet (up /
child-down, writers coming and going), while it is on: SIGUSR1 turns it on and off;
``--restarts R`` peers restarted a second (their connections dropped, the listener
re-opened). The bench reads ``DIR/peersim.json``
(addresses, ports) once everything listens, and reads the counts it prints on SIGTERM.

A peer announcing ``--flood-consoles N`` consoles (the first peer) or sending a line
every ``--flood-interval`` (the second) plays the bad peer of tests/fleet/test_bad_peer.py;
SIGUSR2 stops (or starts) the last peer's first console's child, for a test to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from consrv.host.feed import Feed
from consrv.views import iso

FIRST = 10
FEED = "watch --json"
USERS = ("alice", "bob", "olga")


def address_of(index: int) -> str:
    return f"127.2.{index // 200}.{FIRST + index % 200}"


@dataclass
class SimConsole:
    """One console's routing facts, as a real peer reports them (host/feed.console_entry)."""

    name: str
    up: bool = True
    child_running: bool = True
    writer: str | None = None
    viewers: int = 0
    child_pid: int = 4000

    def entry(self, socket: str) -> dict[str, Any]:
        state = ("up" if self.child_running else "child-down") if self.up else "down"
        now = time.time()
        who = []
        if self.writer is not None:
            who.append(
                {"user": self.writer, "mode": "rw", "since": iso(now), "login": "console",
                 "from": "127.0.0.1:40000", "last_input": None}
            )  # fmt: skip
        return {
            "name": self.name,
            "state": state,
            "upstream": f"unix:{socket}",
            "connected": self.up,
            "child_pid": self.child_pid if self.up and self.child_running else None,
            "auto_restart": "ON" if self.up else None,  # procServ's word, from its greeting
            "write": "exclusive",  # the console's write mode (config), not who writes
            "writer": self.writer,
            "viewers": self.viewers,
            "child_starts": 0,  # starts consrv saw: the child was running before it came
            "child_exits": 0,
            "ioc": None,
            "who": who,
            "rw": ["alice", "bob"],
            "ro": ["*"],
            "operate": [],
        }


@dataclass
class SimPeer:
    index: int
    port: int
    key: asyncssh.SSHKey
    consoles: dict[str, SimConsole]
    feeds: set[FeedWriter] = field(default_factory=set)
    server: asyncssh.SSHAcceptor | None = None
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)

    @property
    def address(self) -> str:
        return address_of(self.index)

    def entries(self) -> dict[str, dict[str, Any]]:
        return {
            name: console.entry(f"/run/procServ/{name}/control")
            for name, console in self.consoles.items()
        }

    def changed(self) -> None:
        entries = self.entries()
        for writer in list(self.feeds):
            writer.send(entries)


class FeedWriter:
    """One gateway reading one peer's feed: its own `Feed` (what it was last sent)."""

    def __init__(self, peer: SimPeer, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.peer, self.process, self.feed = peer, process, Feed()
        self.users: dict[str, list[str]] = {user: [] for user in (*USERS, "gateway")}

    def send(self, entries: dict[str, dict[str, Any]]) -> None:
        data = self.feed.update(self.users, entries)
        if data:
            self.process.stdout.write(data)


class Stats:
    def __init__(self) -> None:
        self.feeds = self.sessions = self.changes = self.restarts = self.refused = 0


class Fleet:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        keys = Path(args.keys)
        self.gateway_key = asyncssh.read_public_key(keys / "gateway_key.pub")
        ca = asyncssh.read_public_key(keys / "gateway_ca.pub").export_public_key().decode()
        lines = [f"{self.gateway_key.export_public_key().decode().strip()}"]
        lines += [f'cert-authority,principals="{u}" {ca.strip()}' for u in USERS]
        self.authorized = asyncssh.import_authorized_keys("\n".join(lines) + "\n")
        self.stats = Stats()
        self.peers: list[SimPeer] = []
        self.rng = random.Random(args.seed)  # noqa: S311 - a repeatable script, not secrets
        self.churning = False

    def make_peers(self) -> None:
        for index in range(self.args.peers):
            count = self.args.consoles
            if index == 0 and self.args.flood_consoles:
                count = self.args.flood_consoles
            names = [f"sim-{index:04d}-{n}" for n in range(count)]
            if self.args.names:
                names = [f"{name}{index or ''}" for name in self.args.names.split(",")]
            consoles = {name: SimConsole(name) for name in names}
            key = asyncssh.generate_private_key("ssh-ed25519")
            self.peers.append(SimPeer(index, 0, key, consoles))

    async def listen(self, peer: SimPeer, port: int = 0) -> None:
        fleet = self

        class Server(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                peer.connections.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                for conn in list(peer.connections):
                    if conn.is_closed():
                        peer.connections.discard(conn)

        async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
            await fleet.session(peer, process)

        peer.server = await asyncssh.create_server(
            Server, peer.address, port, server_host_keys=[peer.key],
            authorized_client_keys=self.authorized, process_factory=handle,
            encoding=None, keepalive_interval=self.args.keepalive, keepalive_count_max=3,
            login_timeout=10, agent_forwarding=False, allow_scp=False, line_editor=False,
        )  # fmt: skip
        peer.port = peer.server.sockets[0].getsockname()[1]

    async def session(self, peer: SimPeer, process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.command == FEED:
            if process.get_extra_info("username") != "observer":
                process.exit(3)
                return
            self.stats.feeds += 1
            writer = FeedWriter(peer, process)
            peer.feeds.add(writer)
            try:
                writer.send(peer.entries())
                if peer.index == 1 and self.args.flood_interval:
                    await self.flood(peer, writer)
                await process.stdin.read()  # until the gateway closes the feed
            except (asyncssh.Error, OSError, BrokenPipeError):
                pass
            finally:
                peer.feeds.discard(writer)
            return
        self.stats.sessions += 1
        try:  # a console that echoes: what a proxied keystroke meets
            while data := await process.stdin.read(4096):
                process.stdout.write(data)
        except (asyncssh.Error, OSError, BrokenPipeError):
            pass
        process.exit(0)

    async def flood(self, peer: SimPeer, writer: FeedWriter) -> None:
        """The bad peer: a changed entry every ``flood_interval`` seconds, for ever."""
        console = next(iter(peer.consoles.values()))
        while True:
            console.viewers = (console.viewers + 1) % 1000
            writer.send(peer.entries())
            await asyncio.sleep(self.args.flood_interval)

    async def churn(self) -> None:
        if not self.args.churn:
            return
        interval = 1 / self.args.churn
        while True:
            await asyncio.sleep(interval)
            if not self.churning:
                continue
            peer = self.rng.choice(self.peers)
            console = self.rng.choice(list(peer.consoles.values()))
            if self.rng.random() < 0.5:
                console.child_running = not console.child_running
            else:
                console.writer = None if console.writer else self.rng.choice(USERS)
            peer.changed()
            self.stats.changes += 1

    def flip_last(self) -> None:
        """SIGUSR2: the last peer's first console's child stops or starts (for a test)."""
        peer = self.peers[-1]
        console = next(iter(peer.consoles.values()))
        console.child_running = not console.child_running
        peer.changed()

    def toggle_churn(self) -> None:
        self.churning = not self.churning

    async def restarts(self) -> None:
        if not self.args.restarts:
            return
        while True:
            await asyncio.sleep(1 / self.args.restarts)
            peer = self.rng.choice(self.peers[2:])
            assert peer.server is not None
            peer.server.close()
            for conn in list(peer.connections):
                conn.abort()
            peer.connections.clear()
            await self.listen(peer, peer.port)
            self.stats.restarts += 1

    async def run(self) -> None:
        self.make_peers()
        for start in range(0, len(self.peers), 100):
            await asyncio.gather(*(self.listen(p) for p in self.peers[start : start + 100]))
        out = Path(self.args.dir)
        lines = [
            f"[{p.address}]:{p.port} {p.key.export_public_key().decode().strip()}"
            for p in self.peers
        ]
        (out / "known_hosts").write_text("\n".join(lines) + "\n")
        peers = [{"name": p.address, "address": f"{p.address}:{p.port}"} for p in self.peers]
        (out / "peersim.json").write_text(json.dumps({"peers": peers}))
        print(f"peersim: {len(self.peers)} peers listening", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.toggle_churn)
        loop.add_signal_handler(signal.SIGUSR2, self.flip_last)
        tasks = [asyncio.create_task(self.churn()), asyncio.create_task(self.restarts())]
        await stop.wait()
        for task in tasks:
            task.cancel()
        stats = vars(self.stats)
        print(json.dumps(stats), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.peersim", description=__doc__)
    parser.add_argument("--dir", required=True, help="where known_hosts and peersim.json go")
    parser.add_argument("--keys", required=True, help="consrv fleet init's --dir (the .pub files)")
    parser.add_argument("--peers", type=int, default=200)
    parser.add_argument("--consoles", type=int, default=5, help="consoles per peer")
    parser.add_argument("--churn", type=float, default=0.0, help="state changes a second")
    parser.add_argument("--restarts", type=float, default=0.0, help="peer restarts a second")
    parser.add_argument("--keepalive", type=float, default=2.0, help="server keep-alive (s)")
    parser.add_argument("--flood-consoles", type=int, default=0, help="peer 0's console count")
    parser.add_argument("--flood-interval", type=float, default=0.0, help="peer 1's line gap")
    parser.add_argument("--names", default="", help="console names (comma-separated)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    asyncio.run(Fleet(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
