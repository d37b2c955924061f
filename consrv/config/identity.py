"""Users from the directory: ``ssh.authorized_keys_command`` and the ``identity:`` section.

Owns the raw models and the resolved ``IdentityConfig`` (``Config.identity``): the
keys command as an argument vector whose tokens are checked here (sshd's ``%u``,
``%U``, ``%f``, ``%t``, ``%k``, ``%h``, ``%%``), whether NSS defines users and
groups, and the cache's timings (docs/identity.md). Must not know: trio, processes,
NSS calls.
"""

import dataclasses
import re
import shlex
from typing import Annotated

import pydantic
from pydantic import Field, StrictBool, StrictInt

from consrv.config.errors import Problem
from consrv.config.fields import Duration, UserName, checked

TOKENS = frozenset("uUftkh%")
_TOKEN_RE = re.compile(r"%(.?)")


@dataclasses.dataclass(frozen=True)
class IdentityConfig:
    """Where users, keys and groups come from besides the YAML, and how long answers hold."""

    command: tuple[str, ...] = ()  # argv with %-tokens; empty: no keys command
    command_user: str | None = None  # run the command as this user (None: consrv's own)
    nss: bool = False  # the host's NSS defines users and their Unix groups
    timeout: float = 5.0  # one command run or NSS lookup, queueing included
    ttl: float = 300.0  # a positive answer is used without asking again
    negative_ttl: float = 30.0  # "no such user / no keys" is used without asking again
    grace: float = 3600.0  # after the ttl, while the directory does not answer
    concurrency: int = 8  # commands (and NSS lookups) running at once

    @property
    def enabled(self) -> bool:
        return bool(self.command) or self.nss

    @property
    def recheck_interval(self) -> float:
        """How often sessions of directory users are checked again (revocation)."""
        return max(0.5, min(self.ttl, self.negative_ttl) / 2)


def parse_command(value: object) -> tuple[str, ...]:
    """An absolute program and its arguments, split as a shell would (but run without one)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a command line such as '/usr/bin/sss_ssh_authorizedkeys %u'")
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot split the command line: {exc}") from None
    if not argv[0].startswith("/"):
        raise ValueError("the program must be an absolute path (as sshd requires)")
    if "%" in argv[0]:
        raise ValueError("the program path may not contain %-tokens")
    for arg in argv:
        for match in _TOKEN_RE.finditer(arg):
            if match[1] not in TOKENS:
                raise ValueError(
                    f"unknown token %{match[1]} in {arg!r}: known are %u %U %f %t %k %h %%"
                )
    return argv


Command = Annotated[tuple[str, ...], checked(parse_command)]
Positive = Annotated[StrictInt, Field(ge=1, le=1000)]


class RawIdentity(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    nss: StrictBool = False
    timeout: Duration = IdentityConfig.timeout
    ttl: Duration = IdentityConfig.ttl
    negative_ttl: Duration = IdentityConfig.negative_ttl
    grace: Duration = IdentityConfig.grace
    concurrency: Positive = IdentityConfig.concurrency

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data


def resolve_identity(
    command: tuple[str, ...] | None, command_user: str | None, raw: RawIdentity | None
) -> tuple[IdentityConfig, list[Problem]]:
    """``ssh.authorized_keys_command(_user)`` and the ``identity:`` section together."""
    raw = raw or RawIdentity()
    problems = []
    if command_user is not None and not command:
        problems.append(
            Problem("ssh.authorized_keys_command_user", "set without ssh.authorized_keys_command")
        )
    return (
        IdentityConfig(
            command=command or (),
            command_user=command_user,
            nss=raw.nss,
            timeout=raw.timeout,
            ttl=raw.ttl,
            negative_ttl=raw.negative_ttl,
            grace=raw.grace,
            concurrency=raw.concurrency,
        ),
        problems,
    )


__all__ = ["Command", "IdentityConfig", "RawIdentity", "UserName", "resolve_identity"]
