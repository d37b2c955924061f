"""The SSH command language: its grammar as data (`grammar`), and this host's
meaning of a command line (`Shell`, a ``contracts.Commands``).

Fronts other than ``ssh/`` read only `grammar` (a fleet gateway decides with it
what to forward); daemon.py hands a `Shell` to the SSH front, or to the gateway
that stands in front of it.
"""

from consrv.commands.grammar import HELP, VERBS, Verb, name_index
from consrv.commands.shell import CommandRun, Shell

__all__ = ["HELP", "VERBS", "CommandRun", "Shell", "Verb", "name_index"]
