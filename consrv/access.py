"""Access: which role a user has on a console, from the console's `rw` and `ro` lists.

An ACL entry is a user name, `@group` or `*` (any authenticated user). A user in
`rw` is read-write even if also in `ro`; a user in neither has no access.
Must not know: config files, SSH, login names (the observer login's "always
read-only" is applied by the caller).
"""

import enum
from collections.abc import Sequence

__all__ = ["ANY_USER", "GROUP_PREFIX", "Role", "role_for"]

ANY_USER = "*"
GROUP_PREFIX = "@"


class Role(enum.Enum):
    RW = "rw"
    RO = "ro"


def _matches(entry: str, user: str, groups: frozenset[str]) -> bool:
    if entry == ANY_USER:
        return True
    if entry.startswith(GROUP_PREFIX):
        return entry[len(GROUP_PREFIX) :] in groups
    return entry == user


def role_for(
    user: str, groups: frozenset[str], rw: Sequence[str], ro: Sequence[str]
) -> Role | None:
    """The best role `user` (member of `groups`) has, or None for no access."""
    if any(_matches(entry, user, groups) for entry in rw):
        return Role.RW
    if any(_matches(entry, user, groups) for entry in ro):
        return Role.RO
    return None
