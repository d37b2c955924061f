"""The host layer: this host's consoles as fronts may see and act on them.

Owns the access policy (`Host`: who may see, write and operate which console),
IOC actions (`IocControl`, `run_action`) and what this host says in the fleet
feed (`feed`). Fronts (``ssh/``, ``web/``, ``fleet/``) reach the core through
here and ``consrv.contracts``; the host knows no front and no command line.
"""

from consrv.host.actions import IOC_VERBS, ActionDenied, ActionFailed, IocControl, run_action
from consrv.host.policy import Host, LiveMessages
from consrv.ioc import UnitHealth  # an IOC unit's health, as fronts read it (pva/)

__all__ = [
    "IOC_VERBS",
    "ActionDenied",
    "ActionFailed",
    "Host",
    "IocControl",
    "LiveMessages",
    "UnitHealth",
    "run_action",
]
