"""What a front may ask of the fleet without knowing it: every console a user may see.

A contract, not an implementation: a fleet gateway (consrv/fleet/) provides it and
the daemon hands it to the web front, so neither front imports the other. Rows are
`views.console_dict` dictionaries with ``host`` (the console's host), ``local``
(True for this host's own consoles) and ``id`` (``NAME``, or ``NAME@HOST`` when the
name is on more than one host); a console whose host is down has state
``unreachable``. Routing data (rights, who) is never in a row.
"""

from __future__ import annotations

from typing import Any, Protocol

from consrv.service import Login

__all__ = ["FleetView"]


class FleetView(Protocol):
    def fleet_rows(self, login: Login) -> list[dict[str, Any]]:
        """The consoles `login` may see on this host and every peer, by name then host."""

    def fleet_missing(self) -> list[dict[str, Any]]:
        """The peers that cannot be reached now: host, address, since, error."""
