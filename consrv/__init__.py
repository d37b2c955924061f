"""consrv: a multi-user console server for EPICS IOCs under procServ, over SSH."""

import warnings

__version__ = "0.1.0"

# asyncssh 2.24 names cryptography's DSA classes in its type hints, and cryptography 51
# warns on every such access (ten lines on stderr for every `consrv` command). The
# warning is asyncssh's to fix, not ours: filtered by its exact message and only where
# it comes from asyncssh. Remove once the locked asyncssh no longer touches `dsa.*` at
# import (docs/dependencies.md, "Filters").
warnings.filterwarnings(
    "ignore",
    message=r"DSA is deprecated and support will be removed in a future release",
    module=r"asyncssh(\..*)?$",
)
