"""What a front may ask of the fleet without knowing it: every console a user may see.

A contract, not an implementation: a fleet gateway (consrv/fleet/) provides it and
the daemon hands it to the web front, so neither front imports the other. Rows are
`views.console_dict` dictionaries with ``host`` (the console's host), ``local``
(True for this host's own consoles) and ``id`` (``NAME``, or ``NAME@HOST`` when the
name is on more than one host); a console whose host is down has state
``unreachable``. Routing data (rights, who) is never in a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from consrv.service import Input, Login
from consrv.session import Channel

__all__ = ["FleetView"]


class FleetView(Protocol):
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
