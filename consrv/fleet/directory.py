"""The fleet's directory: which peer runs which console, and what each peer said last.

Owns the gateway's picture of its peers, built from their change feeds (the
events of ``protocol/feed.py``, written by ``host/feed.py``): per peer, up or
down (and since when), its users' groups, its consoles' routing entries; and the
answers built on it: which consoles a user may see (the owning peer's own rules,
`access.role_for`), and where a name the user typed lives (``NAME`` or
``NAME@HOST``; ambiguous, unknown, unreachable).

Pure: no I/O, no clock (times are passed in), no SSH.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consrv.access import Role, role_for
from consrv.protocol.feed import ConsoleEntry, Event, Hello, Removed, Sync, decode

HOST_SEPARATOR = "@"  # NAME@HOST: '@' is not a console-name character
# Consoles kept for one peer: a peer announcing more (a bug, or a hostile host) costs
# the gateway this many entries, not what it sends; the rest are dropped and counted.
MAX_CONSOLES_PER_PEER = 2000


@dataclass
class Peer:
    """One peer as the directory knows it."""

    name: str  # the HOST users type after '@'
    address: str  # host:port
    up: bool = False
    since: float | None = None  # when it went up or down; None: never reached
    changed: float | None = None  # the last feed line seen
    error: str = ""  # why it is down
    users: dict[str, frozenset[str]] = field(default_factory=dict)
    consoles: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: int = 0  # console entries over MAX_CONSOLES_PER_PEER, ever
    # A feed being read: entries since its `hello`, swapped in at its `sync`.
    _pending: dict[str, dict[str, Any]] | None = None

    def role(
        self, user: str, name: str, *, read_only: bool, unix_groups: frozenset[str] | None = None
    ) -> Role | None:
        """The role ``user`` has on console ``name`` by this peer's rules, or None.

        ``unix_groups``: the user's groups in the facility's directory, as the gateway's
        NSS says (None: the gateway has none): a user the peer's YAML does not list may
        still be its user through the same directory (docs/identity.md); the peer
        judges again when the user gets there."""
        entry, groups = self.consoles.get(name), self._groups(user, unix_groups)
        if entry is None or groups is None:
            return None
        role = role_for(user, groups, entry.get("rw", ()), entry.get("ro", ()))
        return Role.RO if role is not None and read_only else role

    def may_operate(self, user: str, name: str, unix_groups: frozenset[str] | None = None) -> bool:
        entry, groups = self.consoles.get(name), self._groups(user, unix_groups)
        if entry is None or groups is None:
            return False
        return role_for(user, groups, entry.get("operate", ()), ()) is Role.RW

    def _groups(self, user: str, unix_groups: frozenset[str] | None) -> frozenset[str] | None:
        if user in self.users:
            return self.users[user] | (unix_groups or frozenset())
        return unix_groups


@dataclass(frozen=True)
class Found:
    """A console the user may see, and the peer that owns it."""

    peer: Peer
    name: str


@dataclass(frozen=True)
class Ambiguous:
    """The name is on several peers: ``NAME@HOST`` picks one."""

    choices: tuple[str, ...]  # NAME@HOST, sorted


@dataclass(frozen=True)
class Missing:
    """No peer has a console of that name that the user may see (or no such host)."""


class Directory:
    """Peers by name, and the consoles each one reported."""

    def __init__(self, peers: Iterable[tuple[str, str]] = ()) -> None:
        self.peers: dict[str, Peer] = {}
        for name, address in peers:
            self.add_peer(name, address)

    def add_peer(self, name: str, address: str) -> Peer:
        peer = self.peers[name] = Peer(name, address)
        return peer

    # -- the feed ----------------------------------------------------------------
    def connected(self, peer: Peer, now: float) -> None:
        """A feed starts: entries gather until its `sync`."""
        peer._pending = {}

    def receive(self, peer: Peer, line: bytes, now: float) -> None:
        """One feed line from ``peer``. Raises FeedError for anything else."""
        self.apply(peer, decode(line), now)

    def apply(self, peer: Peer, event: Event, now: float) -> None:
        """One feed event from ``peer``."""
        consoles = peer._pending
        target = consoles if consoles is not None else peer.consoles
        if isinstance(event, Hello):
            peer.users = {user: frozenset(groups) for user, groups in event.users.items()}
        elif isinstance(event, ConsoleEntry):
            if event.name in target or len(target) < MAX_CONSOLES_PER_PEER:
                target[event.name] = event.entry
            else:
                peer.dropped += 1
        elif isinstance(event, Removed):
            target.pop(event.name, None)
        elif isinstance(event, Sync):
            if consoles is not None:
                peer.consoles, peer._pending = consoles, None
            if not peer.up:
                peer.up, peer.since, peer.error = True, now, ""
        peer.changed = now

    def lost(self, peer: Peer, now: float, error: str) -> None:
        """The peer's feed ended: it is down (its last consoles are kept, as unreachable)."""
        peer._pending = None
        if peer.up or peer.since is None:
            peer.since = now
        peer.up, peer.error = False, error

    # -- answers -------------------------------------------------------------------
    def visible(
        self, user: str, *, read_only: bool, unix_groups: frozenset[str] | None = None
    ) -> list[Found]:
        """Every console ``user`` may see, on every peer (down ones too), by name then host."""
        found = [
            Found(peer, name)
            for peer in self.peers.values()
            for name in peer.consoles
            if peer.role(user, name, read_only=read_only, unix_groups=unix_groups) is not None
        ]
        return sorted(found, key=lambda f: (f.name, f.peer.name))

    def missing(self) -> list[Peer]:
        """Peers whose consoles are not known now (down, or not reached yet)."""
        return [peer for peer in self.peers.values() if not peer.up]

    def lookup(
        self, user: str, text: str, *, read_only: bool, unix_groups: frozenset[str] | None = None
    ) -> Found | Ambiguous | Missing:
        """Where ``NAME`` or ``NAME@HOST`` lives, among the consoles ``user`` may see."""
        name, _, host = text.partition(HOST_SEPARATOR)
        # Only the peers that have the name are judged (a login through a gateway of 1,000
        # peers must not cost a role check of every console of the fleet).
        found = [
            Found(peer, name)
            for peer in sorted(self.peers.values(), key=lambda p: p.name)
            if name in peer.consoles
            and (not host or peer.name == host)
            and peer.role(user, name, read_only=read_only, unix_groups=unix_groups) is not None
        ]
        if not found:
            return Missing()
        if len(found) > 1:
            return Ambiguous(tuple(f"{f.name}{HOST_SEPARATOR}{f.peer.name}" for f in found))
        return found[0]

    def size(self) -> int:
        return sum(len(peer.consoles) for peer in self.peers.values())


def split_host(text: str) -> tuple[str, str]:
    """``("NAME", "HOST")`` for ``NAME@HOST``; ``("NAME", "")`` for a bare name."""
    name, _, host = text.partition(HOST_SEPARATOR)
    return name, host
