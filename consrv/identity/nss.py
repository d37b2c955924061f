"""The host's NSS: does a user exist, and which Unix groups are theirs (``getgrouplist``).

Plain blocking calls (libc's getpwnam_r, getgrouplist, getgrgid_r), which may hang
as long as the directory behind NSS does (sssd, nslcd): the caller runs them in a
worker thread under a deadline (identity.directory). Must not know: trio, caching.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd


@dataclasses.dataclass(frozen=True)
class Passwd:
    """The parts of a passwd entry consrv uses."""

    name: str
    uid: int
    gid: int
    home: str


def passwd(name: str) -> Passwd | None:
    """The user's entry, or None if NSS knows no such user."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Passwd(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def group_names(name: str, gid: int) -> frozenset[str]:
    """The names of every group the user is in, their primary group included."""
    names = set()
    for member_of in os.getgrouplist(name, gid):
        try:
            names.add(grp.getgrgid(member_of).gr_name)
        except KeyError:  # a gid with no name: nothing an ACL can say
            continue
    return frozenset(names)


def unix_groups(name: str) -> frozenset[str] | None:
    """The user's group names, or None if NSS knows no such user (one thread, both calls)."""
    entry = passwd(name)
    return None if entry is None else group_names(entry.name, entry.gid)
