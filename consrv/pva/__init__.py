"""The pvAccess front (docs/pva.md): console and IOC health as read-only EPICS PVs.

Needs p4p (``pip install 'consrv[pva]'``): import this package only when the config
has a ``pva:`` section. Stands on the core's public API (the registry's observers,
the IOC manager's health); the core never imports it.
"""

from consrv.pva.front import PvaFront

__all__ = ["PvaFront"]
