"""consrv: a multi-user console server for EPICS IOCs under procServ, over SSH."""

__version__ = "0.1.0"
