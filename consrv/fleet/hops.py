"""Per-hop connections kept a few seconds for one user's browser reads of one peer.

Owns reusing the connection a gateway's web page read a peer's logs by
(`Gateway.fleet_read`: a listing, a search, a file's window, a cast, each one short
command). Without it each read is a new SSH connection, a new certificate and a
login in the peer's audit, two for a search. A connection is opened under a
certificate naming its one user (identity.py), so it is kept only for that user,
that peer, that login name and the same rights (`Key`: the user's groups and mode
as the gateway sees them now); while reads use it and `IDLE` seconds after, never
past `MAX_AGE` from its opening (inside the certificate's `VALIDITY`); closed
at once when the peer's link is down (`sweep`) or on a reload (`close_all`). At
most one kept per key: up to `MAX_READS` reads at the same time share it (one
channel each).
Knows nothing of commands, pages or the directory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh

from consrv.contracts import Login
from consrv.fleet.identity import Credential

IDLE = 5.0  # seconds a connection with no read is kept
MAX_AGE = 60.0  # seconds from its opening a connection is lent out (certificates: 120 s)
# Reads sharing one connection at most (a peer allows ssh.max_sessions channels on one,
# 10 by default): one more gets a new connection, which is then the one kept.
MAX_READS = 4


@dataclass(frozen=True)
class Key:
    """Whose connection: one user, with these rights, on one peer, as one login name."""

    user: str
    groups: frozenset[str]
    unix_groups: frozenset[str]
    read_only: bool
    peer: str
    login: str

    @classmethod
    def of(cls, login: Login, peer: str, hop_login: str) -> Key:
        return cls(login.user, login.groups, login.unix_groups, login.read_only, peer, hop_login)


@dataclass
class _Kept:
    key: Key
    conn: asyncssh.SSHClientConnection
    credential: Credential
    opened: float
    reads: int = 1  # reads using it now
    idle_since: float = 0.0
    retired: bool = False  # no longer lent: closed when its last read ends


class HopPool:
    """The kept connections, by `Key`; `clock` is monotonic seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._kept: dict[Key, _Kept] = {}
        self._lent: dict[asyncssh.SSHClientConnection, _Kept] = {}  # kept or retired, in use
        self.opened = 0  # connections kept, ever (each one login on its peer)

    def __len__(self) -> int:
        return len(self._kept)

    def take(self, key: Key) -> tuple[asyncssh.SSHClientConnection, Credential] | None:
        """The key's open connection, now used by one more read (None: open a new one)."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.conn.is_closed() or self.clock() - kept.opened > MAX_AGE:
            self._retire(key)
            return None
        if kept.reads >= MAX_READS:
            return None
        kept.reads += 1
        self._lent[kept.conn] = kept
        return kept.conn, kept.credential

    def add(self, key: Key, conn: asyncssh.SSHClientConnection, credential: Credential) -> None:
        """A new connection for `key`, used by one read (it replaces any kept before)."""
        if key in self._kept:
            self._retire(key)
        self._kept[key] = self._lent[conn] = _Kept(key, conn, credential, self.clock())
        self.opened += 1

    def release(self, conn: asyncssh.SSHClientConnection, failed: bool) -> None:
        """A read on `conn` ended; a connection that failed is not lent again."""
        kept = self._lent.get(conn)
        if kept is None:
            conn.abort()
            return
        kept.reads -= 1
        kept.idle_since = self.clock()
        if failed or conn.is_closed():
            self._retire_conn(kept)
        if kept.reads == 0:
            del self._lent[conn]
            if kept.retired:
                conn.abort()

    def sweep(self, up: Callable[[str], bool]) -> None:
        """Close what is idle past `IDLE`, too old, or to a peer whose link is down."""
        now = self.clock()
        for key, kept in list(self._kept.items()):
            idle = kept.reads == 0 and now - kept.idle_since > IDLE
            old = now - kept.opened > MAX_AGE
            if idle or old or not up(key.peer) or kept.conn.is_closed():
                self._retire(key)

    def close_all(self) -> None:
        for key in list(self._kept):
            self._retire(key)

    def _retire(self, key: Key) -> None:
        self._retire_conn(self._kept[key])

    def _retire_conn(self, kept: _Kept) -> None:
        """Lent no more; closed now if no read uses it, else when its last one ends."""
        kept.retired = True
        if self._kept.get(kept.key) is kept:
            del self._kept[kept.key]
        if kept.reads == 0:
            kept.conn.abort()
