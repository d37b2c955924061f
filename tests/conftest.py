"""Test-wide settings: hypothesis without per-example deadlines.

The suite runs on 2 shared cores next to real procServ, IOC and SSH processes;
a wall-clock deadline per example would fail on load, not on a bug. Each
property test still bounds its work through max_examples.
"""

from hypothesis import settings

settings.register_profile("consrv", deadline=None)
settings.load_profile("consrv")
