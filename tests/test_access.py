"""access.py: role_for over users, @groups and '*'; rw wins over ro."""

from collections.abc import Sequence

import pytest

from consrv.access import Role, role_for

NO_GROUPS: frozenset[str] = frozenset()
OPS = frozenset({"operators"})


@pytest.mark.parametrize(
    ("user", "groups", "rw", "ro", "expected"),
    [
        # nothing listed: no access
        ("alice", NO_GROUPS, [], [], None),
        # by user name
        ("alice", NO_GROUPS, ["alice"], [], Role.RW),
        ("alice", NO_GROUPS, [], ["alice"], Role.RO),
        ("alice", NO_GROUPS, ["bob"], ["carol"], None),
        # by group
        ("alice", OPS, ["@operators"], [], Role.RW),
        ("alice", OPS, [], ["@operators"], Role.RO),
        ("alice", NO_GROUPS, ["@operators"], [], None),
        ("alice", frozenset({"operatorsX"}), ["@operators"], [], None),
        # any authenticated user
        ("alice", NO_GROUPS, ["*"], [], Role.RW),
        ("alice", NO_GROUPS, [], ["*"], Role.RO),
        # rw wins over ro, whichever way each list matches
        ("alice", NO_GROUPS, ["alice"], ["alice"], Role.RW),
        ("alice", OPS, ["@operators"], ["*"], Role.RW),
        ("alice", NO_GROUPS, ["*"], ["alice"], Role.RW),
        ("bob", OPS, ["alice"], ["*"], Role.RO),
        # a group entry never matches a user of that name, nor the reverse
        ("operators", NO_GROUPS, ["@operators"], [], None),
        ("alice", frozenset({"alice"}), ["@bob"], ["bob"], None),
        # '*' is only special as a whole entry
        ("alice", NO_GROUPS, ["*alice"], [], None),
    ],
)
def test_role_for(
    user: str, groups: frozenset[str], rw: Sequence[str], ro: Sequence[str], expected: Role | None
) -> None:
    assert role_for(user, groups, rw, ro) is expected


def test_role_for_accepts_tuples() -> None:
    assert role_for("alice", OPS, ("@operators",), ("*",)) is Role.RW


def test_role_values() -> None:
    assert Role("rw") is Role.RW
    assert Role("ro") is Role.RO
