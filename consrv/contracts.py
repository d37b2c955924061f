"""What every front shares with the host: the login, the channel, input, the command
interface, exit statuses and the text of notices.

Owns the small contracts between a front (``ssh/``, ``web/``, ``fleet/``, any later
one) and the host below it, and nothing else: no consoles, no config, no policy.
Must not know trio, asyncssh or any consrv module (it imports only the standard
library), so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# -- exit statuses (docs/usage.md, docs/fleet.md) ---------------------------------------
OK = 0
NOT_FOUND = 1  # unknown console (or one the user may not see: names do not leak)
USAGE = 2
DENIED = 3
FAILED = 4  # an IOC action, a search, a feed that fell behind
UNREACHABLE = 5  # a fleet gateway: the console's host cannot be reached now


# -- the login -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Login:
    """An authenticated user and how they logged in."""

    user: str
    groups: frozenset[str]
    read_only: bool  # the observer login: never more than read-only
    peer: str = ""
    login: str = ""  # the SSH login name (console / observer)
    unix_groups: frozenset[str] = frozenset()  # from NSS (consrv.identity): kept by reloads


# -- where bytes go, and where input comes from ----------------------------------------------
class Sink(Protocol):
    """Where a user's bytes go (an SSH channel, a browser's queue, a test's buffer)."""

    def write(self, data: bytes) -> None:
        """Queue bytes; never blocks."""

    def write_notice(self, data: bytes) -> None:
        """Queue a consrv message (stderr for SSH); never blocks."""

    def buffered(self) -> int:
        """Bytes queued and not yet taken by the peer."""


class Channel(Sink, Protocol):
    """A sink whose input can be paused: what a session needs of its SSH channel."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class Input(Protocol):
    """Whoever reads the channel's input: a session, the menu's line reader."""

    def feed(self, data: bytes) -> None: ...

    def eof(self) -> None: ...

    def drained(self) -> None: ...


# -- the command interface ---------------------------------------------------------------------
class Commands(Protocol):
    """What a front asks of whoever carries out a command line: this host's
    ``commands.Shell``, or a fleet gateway in front of it (wired in daemon.py)."""

    async def handle(
        self,
        login: Login,
        command: str,
        channel: Channel,
        *,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> int:
        """Carry out ``command``; returns the exit status for the channel."""


# -- the text of notices -----------------------------------------------------------------------
def text_bytes(text: str, *, pty: bool) -> bytes:
    """Text for the user's channel: a terminal wants \\r\\n line ends."""
    data = text.encode()
    return data.replace(b"\n", b"\r\n") if pty else data


def notice_bytes(text: str, *, pty: bool) -> bytes:
    """A consrv message on a line of its own (a terminal may be mid-line)."""
    message = b"[consrv: " + text.encode() + b"]"
    return b"\r\n" + message + b"\r\n" if pty else message + b"\n"


def error_bytes(text: str, *, pty: bool) -> bytes:
    """A command's error line (``consrv: TEXT``), for the channel's stderr."""
    return text_bytes(f"consrv: {text}\n", pty=pty)


# -- the fleet, as a front other than fleet/ may see it ------------------------------------
class FleetView(Protocol):
    """What a front may ask of the fleet (a gateway provides it; daemon.py wires it to web/)."""

    def fleet_rows(self, login: Login) -> list[dict[str, Any]]:
        """The consoles `login` may see on this host and every peer, by name then host."""

    def fleet_missing(self) -> list[dict[str, Any]]:
        """The peers that cannot be reached now: host, address, since, error."""

    async def fleet_stream(
        self, login: Login, target: str, sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        """Console `target` (``NAME`` or ``NAME@HOST``, on a peer) read-only into `sink`,
        through the gateway's link under the user's own per-hop identity (the peer judges),
        until the peer ends it; its exit status. `on_input` gets the reader of `sink`'s
        input: its ``drained()`` resumes a peer paused by a full `sink`."""

    async def fleet_read(
        self, login: Login, words: list[str], sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        """A read-only command line naming a peer's console (``log ...`` or ``cast ...``,
        the console as ``NAME`` or ``NAME@HOST``) run on that peer under the user's own
        per-hop identity (the peer judges, as for `fleet_stream`); its output into `sink`
        (errors by ``write_notice``), paused while `sink` is full; its exit status."""
