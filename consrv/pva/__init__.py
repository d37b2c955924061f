"""The pvAccess front (docs/pva.md): console and IOC health as read-only EPICS PVs.

Needs p4p (``pip install 'consrv[pva]'``): import this package only when the config
has a ``pva:`` section. Stands on the core's public API (the registry's observers,
the IOC manager's health); the core never imports it. `PvaFront` is imported on first
use, so the PV server's own process (``python -m consrv.pva.worker``) loads neither
trio nor the core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consrv.pva.front import PvaFront

__all__ = ["PvaFront"]


def __getattr__(name: str) -> Any:
    if name == "PvaFront":
        from consrv.pva.front import PvaFront

        return PvaFront
    raise AttributeError(name)
