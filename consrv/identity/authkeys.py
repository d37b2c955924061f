"""A keys command's output read as authorized_keys lines, with the options consrv honours.

Owns parsing (one line at a time, through asyncssh's authorized_keys reader) and
answering "may this key, or this CA's certificate, log in from here?". Options:

- honoured: ``from=`` (asyncssh matches it), ``cert-authority`` with ``principals=``
  (the line is a CA; its certificates must also name the user, as in sshd),
  ``expiry-time=`` (sshd's YYYYMMDD[HHMM[SS]][Z], local time unless Z);
- harmless: ``no-agent-forwarding``, ``no-X11-forwarding``, ``no-port-forwarding``,
  ``no-user-rc`` (consrv never offers those);
- anything else (``command=``, ``environment=``, ``no-pty``, ``restrict``, ...): consrv
  cannot honour it, so the whole line is refused, with a problem naming the option.

Also reads the key owner command's output (user names, ``parse_owners``).
Must not know: processes, users' groups, connections.
"""

from __future__ import annotations

import calendar
import dataclasses
import re
import time
import typing
from typing import Any

import asyncssh

from consrv.names import InvalidName, validate_user_name

HONOURED = frozenset({"from", "cert-authority", "principals", "expiry-time"})
HARMLESS = frozenset(
    {"no-agent-forwarding", "no-x11-forwarding", "no-port-forwarding", "no-user-rc"}
)
MAX_LINES = 1000  # a user with more keys than this is a command gone wrong
_EXPIRY_RE = re.compile(r"(\d{8})(\d{4}(\d{2})?)?(Z?)")


@dataclasses.dataclass(frozen=True)
class _Line:
    entries: asyncssh.SSHAuthorizedKeys
    expires: float | None  # epoch seconds; None: never


@dataclasses.dataclass(frozen=True)
class AuthorizedKeys:
    """The usable lines of one command output, and why the others were refused."""

    lines: tuple[_Line, ...] = ()
    problems: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.lines)

    def allows_key(self, key: asyncssh.SSHKey, host: str, addr: str, now: float) -> bool:
        return any(
            _live(line, now) and line.entries.validate(key, host, addr) is not None
            for line in self.lines
        )

    def allows_ca(
        self,
        ca: asyncssh.SSHKey,
        host: str,
        addr: str,
        principals: typing.Sequence[str],
        now: float,
    ) -> bool:
        return any(
            _live(line, now)
            and line.entries.validate(ca, host, addr, principals, ca=True) is not None
            for line in self.lines
        )


def _live(line: _Line, now: float) -> bool:
    return line.expires is None or now < line.expires


def parse_authorized_keys(text: str) -> AuthorizedKeys:
    """Every line of ``text``: usable ones kept, the others described (line number, why)."""
    lines: list[_Line] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if len(lines) >= MAX_LINES:
            problems.append(f"more than {MAX_LINES} keys: the rest ignored")
            break
        try:
            lines.append(_parse_line(line))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    return AuthorizedKeys(tuple(lines), tuple(problems))


def _parse_line(line: str) -> _Line:
    try:
        keys = asyncssh.import_authorized_keys(line)
    except (ValueError, asyncssh.KeyImportError):
        raise ValueError("not an authorized_keys line") from None
    # asyncssh keeps an entry's options without a public accessor (2.17 to 2.24).
    facts = typing.cast(Any, keys)
    entries = facts._user_entries + facts._ca_entries
    if len(entries) != 1:
        raise ValueError("not an OpenSSH public key (X.509 is not accepted here)")
    options: dict[str, object] = entries[0].options
    unknown = sorted(name for name in options if name.lower() not in HONOURED | HARMLESS)
    if unknown:
        raise ValueError(f"option {unknown[0]!r} cannot be honoured by consrv: line refused")
    expiry = options.get("expiry-time")
    return _Line(keys, _expiry(expiry) if expiry is not None else None)


def _expiry(values: object) -> float:
    """sshd's ``expiry-time="YYYYMMDD[HHMM[SS]][Z]"`` as epoch seconds (the earliest if several)."""
    times = []
    for value in typing.cast("list[str]", values):
        match = _EXPIRY_RE.fullmatch(value)
        if match is None:
            raise ValueError(f"expiry-time {value[:20]!r}: expected YYYYMMDD[HHMM[SS]][Z]")
        digits = match[1] + (match[2] or "0000") + ("" if match[3] else "00")
        try:
            parsed = time.strptime(digits, "%Y%m%d%H%M%S")
        except ValueError:
            raise ValueError(f"expiry-time {value[:20]!r}: not a date") from None
        times.append(calendar.timegm(parsed) if match[4] else time.mktime(parsed))
    return min(times)


MAX_OWNERS = 8  # user names of the key owner command's output looked at


def parse_owners(output: str) -> tuple[tuple[str, ...], int]:
    """The key owner command's output: (user names, at most MAX_OWNERS, in order; how many
    lines were no user name). Blank lines and ``#`` comments are skipped."""
    names: list[str] = []
    refused = 0
    for line in output.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            name = validate_user_name(line)
        except InvalidName:
            refused += 1
            continue
        if name not in names and len(names) < MAX_OWNERS:
            names.append(name)
    return tuple(names), refused
