"""Names: the rules for console, user and group names, and how to show an untrusted one.

Every console name from the config, from discovery or from a user passes through
`validate_console_name` before it touches a path, a systemd unit name or a log.
Must not know: config files, SSH, sockets.
"""

import re

__all__ = [
    "CONSOLE_NAME_RE",
    "GROUP_NAME_RE",
    "RESERVED_WORDS",
    "USER_NAME_RE",
    "InvalidName",
    "safe_repr",
    "validate_console_name",
    "validate_group_name",
    "validate_user_name",
]

# Used with fullmatch(). The first character is never "." or "-", so a name is never
# ".", "..", a hidden file or an option; ":" and "." allow EPICS-style names.
CONSOLE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
USER_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
GROUP_NAME_RE = USER_NAME_RE

# The SSH command words: a console may not be called one of these, so that
# `ssh console@host NAME` never means two things.
RESERVED_WORDS = frozenset(
    {
        "attach", "cast", "follow", "help", "list", "log", "play", "restart", "start",
        "status", "stop", "tail", "version", "watch", "web", "who",
    }
)  # fmt: skip

_CONSOLE_RULE = "1-64 characters from A-Z a-z 0-9 _ . : -, starting with a letter or digit"
_USER_RULE = "1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or _"

SAFE_REPR_LIMIT = 40


class InvalidName(ValueError):
    """A name that breaks its rule. The message shows the name only through safe_repr."""


def safe_repr(value: str, limit: int = SAFE_REPR_LIMIT) -> str:
    """Show an untrusted string in a message: quoted, ASCII only, at most `limit` characters.

    `ascii()` escapes control characters, bidi overrides and any other non-ASCII
    character, so the result can go to a terminal or a log as it is.
    """
    if len(value) <= limit:
        return ascii(value)
    return f"{value[:limit]!a}... ({len(value)} characters)"


def _validate(kind: str, rule_text: str, pattern: re.Pattern[str], name: object) -> str:
    if not isinstance(name, str):
        raise InvalidName(f"{kind} name must be a string, not {type(name).__name__}")
    if pattern.fullmatch(name) is None:
        raise InvalidName(f"invalid {kind} name {safe_repr(name)}: use {rule_text}")
    return name


def validate_console_name(name: str) -> str:
    """Return `name` if it is a valid console name, else raise InvalidName.

    Command words (`RESERVED_WORDS`) are refused too: they are valid as paths,
    but `ssh console@host list` must never mean a console called "list".
    """
    _validate("console", _CONSOLE_RULE, CONSOLE_NAME_RE, name)
    if name in RESERVED_WORDS:
        raise InvalidName(f"{name!r} is a command word and cannot name a console")
    return name


def validate_user_name(name: str) -> str:
    """Return `name` if it is a valid user name, else raise InvalidName."""
    return _validate("user", _USER_RULE, USER_NAME_RE, name)


def validate_group_name(name: str) -> str:
    """Return `name` if it is a valid group name (the user-name rule), else raise InvalidName."""
    return _validate("group", _USER_RULE, GROUP_NAME_RE, name)
