"""Users from the facility's directory: keys from a command, users and groups from NSS.

``Directory`` (directory.py) is the interface: the SSH front asks it who a user is,
which keys they may log in with and which Unix groups they are in; it answers from
its cache or asks the sources off the event loop under a deadline. docs/identity.md.
Must not know: SSH connections, sessions, consoles (a core module: no front imports).
"""

from consrv.identity.cache import Unavailable
from consrv.identity.directory import Directory, Person

__all__ = ["Directory", "Person", "Unavailable"]
