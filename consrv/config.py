"""Config: the YAML file → a validated, frozen `Config`; every error names its key path.

pydantic v2 does the validation: it is well kept, and every error it reports
carries the location (`loc`) of the bad value, which becomes the key path in our
messages (`consoles.my-ioc.socket: expected a path`). Two steps:

1. the private `_Raw*` models mirror the file: frozen, unknown keys forbidden,
   each value parsed by a small validator (sizes, HOST:PORT, public keys, names);
2. `_resolve` turns them into the frozen dataclasses the rest of consrv uses:
   relative paths joined to the config file's directory, `keys_file` read, ACL
   entries checked against the configured users and groups, defaults applied.

All problems of a step are reported together, one `<key.path>: <problem>` a line.
Must not know: trio, sockets, SSH sessions. docs/configuration.md is the reference.
"""

import dataclasses
import difflib
import ipaddress
import os
import re
import types
import typing
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, NoReturn

import asyncssh
import pydantic
import yaml
from pydantic import AfterValidator, Field, PlainValidator, StrictBool, StrictInt
from pydantic_core import PydanticCustomError

from consrv.access import ANY_USER, GROUP_PREFIX
from consrv.names import (
    InvalidName,
    safe_repr,
    validate_console_name,
    validate_group_name,
    validate_user_name,
)
from consrv.protocol.escape import DEFAULT_PREFIX, parse_prefix
from consrv.revocation import Revoked, is_binary_krl, parse_revoked

__all__ = [
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "ConsoleDefaults",
    "Endpoint",
    "IocConfig",
    "LogConfig",
    "MessageLimits",
    "Problem",
    "SshConfig",
    "User",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_endpoint",
    "parse_public_key",
    "parse_size",
]

DEFAULT_HOST_KEY = Path("/var/lib/consrv/ssh_host_ed25519_key")
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


# ---------------------------------------------------------------- errors


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a config: where (`consoles.my-ioc.socket`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be used. str() lists the problems, one a line."""

    def __init__(self, problems: Sequence[Problem], source: Path | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        super().__init__("\n".join(str(problem) for problem in self.problems))


# ---------------------------------------------------------------- resolved config


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A TCP address. `host` is a name, an IPv4 address or a bare IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# The ciphers consrv can offer: asyncssh's, less CBC (never: see ssh/wire.py).
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
# The default: no chacha20-poly1305. A client takes the first of its own list that
# the server offers, and OpenSSH lists chacha20 first, so offering it costs every
# OpenSSH viewer 1.0 CPU-s per GB (asyncssh, 32 KiB packets) where aes128-ctr with
# umac-64-etm costs 0.42 and AES-GCM 0.22 (docs/performance.md). Every client in the
# interop suite (OpenSSH >= 6.5, PuTTY, Dropbear, Paramiko) has AES-CTR.
DEFAULT_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


@dataclasses.dataclass(frozen=True)
class SshConfig:
    listen: tuple[Endpoint, ...]
    host_key: Path
    login: str
    observer_login: str
    # OpenSSH lines of trusted user CAs: a certificate they signed logs in as the
    # configured user named by its principal.
    trusted_user_ca_keys: tuple[str, ...] = ()
    # Limits under abuse (docs/security.md): sshd's LoginGraceTime, MaxStartups,
    # PerSourceMaxStartups, MaxAuthTries, MaxSessions.
    login_timeout: float = 30.0
    max_startups: int = 100
    max_startups_per_source: int = 20
    max_auth_tries: int = 6
    max_sessions: int = 10
    # sshd's Ciphers: what the server offers (the client's order picks).
    ciphers: tuple[str, ...] = DEFAULT_CIPHERS
    # sshd's RevokedKeys: keys, CAs, certificate serials and key ids (consrv.revocation).
    revoked_keys: Path | None = None
    revoked: Revoked = dataclasses.field(default_factory=Revoked)


@dataclasses.dataclass(frozen=True)
class LogConfig:
    timestamps: bool
    max_size: int
    keep: int


@dataclasses.dataclass(frozen=True)
class MessageLimits:
    """Broadcasts (``^Ecb``) and notes (``^Ecn``), per user over all sessions and consoles."""

    burst: int = 10  # messages at once
    per_minute: float = 6.0  # then this many a minute
    max_length: int = 200  # characters; longer text is cut


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: frozenset[str]
    keys: tuple[bytes, ...]  # asyncssh `public_data`: what the SSH server compares


WriteMode = Literal["exclusive", "shared"]
KeyPolicy = Literal["confirm", "pass", "block"]
Scope = Literal["system", "user"]


@dataclasses.dataclass(frozen=True)
class Pattern:
    """A named regular expression counted over a console's output lines (metrics)."""

    name: str
    regex: re.Pattern[bytes]


@dataclasses.dataclass(frozen=True)
class ConsoleDefaults:
    rw: tuple[str, ...]
    ro: tuple[str, ...]
    scrollback: int
    viewer_buffer: int
    operate: tuple[str, ...] = ()
    write: WriteMode = "exclusive"
    writer_idle_timeout: float | None = None
    procserv_keys: KeyPolicy = "confirm"
    replay: int = 0
    escape: bytes = DEFAULT_PREFIX
    ioc: bool = False
    patterns: tuple[Pattern, ...] = ()
    audit_input: bool = False


@dataclasses.dataclass(frozen=True)
class IocConfig:
    """How consrv reaches the `ioc@` units (the `ioc:` section)."""

    scope: Scope
    unit: str  # a template with {name}: "ioc@{name}.service"
    socket: str  # a template with {name}: "/run/procServ/{name}/control"
    discover: bool
    poll_interval: float

    def unit_for(self, name: str) -> str:
        """The unit of IOC `name`. Raises InvalidName before formatting anything."""
        return self.unit.format(name=validate_console_name(name))

    def socket_for(self, name: str) -> Path:
        return Path(self.socket.format(name=validate_console_name(name)))


@dataclasses.dataclass(frozen=True)
class ConsoleConfig:
    """One console. Exactly one of `socket` / `tcp` is set."""

    name: str
    socket: Path | None
    tcp: Endpoint | None
    rw: tuple[str, ...]
    ro: tuple[str, ...]
    scrollback: int
    viewer_buffer: int
    timestamps: bool
    operate: tuple[str, ...] = ()
    write: WriteMode = "exclusive"
    writer_idle_timeout: float | None = None  # seconds; None = the writer keeps the lock
    procserv_keys: KeyPolicy = "confirm"
    replay: int = 0  # lines of scrollback shown on attach
    escape: bytes = DEFAULT_PREFIX
    ioc: bool = False  # an `ioc@` unit: start/stop/restart, health
    autostart: bool = False
    patterns: tuple[Pattern, ...] = ()
    audit_input: bool = False  # every byte this console's writers send goes to the audit log


@dataclasses.dataclass(frozen=True)
class Config:
    ssh: SshConfig
    metrics_listen: Endpoint | None
    log_dir: Path | None
    log: LogConfig
    users: Mapping[str, User]
    groups: Mapping[str, frozenset[str]]  # the `groups:` section: group -> members
    defaults: ConsoleDefaults
    consoles: Mapping[str, ConsoleConfig]
    discover: tuple[str, ...]
    ioc: IocConfig | None = None
    audit_log: Path | None = None
    messages: MessageLimits = MessageLimits()
    _key_owner: Mapping[bytes, str] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        owners = {key: user.name for user in self.users.values() for key in user.keys}
        object.__setattr__(self, "_key_owner", types.MappingProxyType(owners))

    def user_for_key(self, public_data: bytes) -> str | None:
        """The user who owns this public key, or None."""
        return self._key_owner.get(public_data)

    def groups_of(self, user: str) -> frozenset[str]:
        """The user's groups: their own `groups` list and the `groups:` section."""
        listed = frozenset(group for group, members in self.groups.items() if user in members)
        own = self.users[user].groups if user in self.users else frozenset()
        return own | listed

    def discovered_console(self, name: str, socket: Path | None = None) -> ConsoleConfig:
        """A console found by discovery, with the defaults. Raises InvalidName.

        Without a `socket`, the console is an `ioc@` instance found through
        systemd: its socket comes from `ioc.socket`.
        """
        validate_console_name(name)
        d = self.defaults
        ioc = d.ioc and self.ioc is not None
        if socket is None:
            assert self.ioc is not None, "an IOC instance without the ioc section"
            socket, ioc = self.ioc.socket_for(name), True
        # Every default is a console setting of the same name.
        settings: dict[str, Any] = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
        settings["ioc"] = ioc
        return ConsoleConfig(
            name=name, socket=socket, tcp=None, timestamps=self.log.timestamps, **settings
        )


# ---------------------------------------------------------------- value parsers


_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([KMG]?)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE_HELP = "expected a size: bytes as an integer, or a number with K, M or G (256K, 10M, 1G)"


def parse_size(value: object) -> int:
    """Bytes from an int or a string like "64K", "10M", "1G" (binary). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(_SIZE_HELP)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)):
        size = int(match[1]) * _SIZE_UNITS[match[2].upper()]
    else:
        raise ValueError(_SIZE_HELP)
    if size <= 0:
        raise ValueError("must be a positive size")
    return size


_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_DURATION_HELP = "expected a duration: seconds as a number, or 500ms, 30s, 5m, 2h"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "500ms", "30s", "5m", "2h". Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    else:
        raise ValueError(_DURATION_HELP)
    if not 0 < seconds < 10 * 365 * 86400:
        raise ValueError("must be a positive duration")
    return seconds


def _check_template(value: object, *, suffix: str = "", absolute: bool = False) -> str:
    if not isinstance(value, str) or value.count("{name}") != 1:
        raise ValueError("expected a template with {name} exactly once")
    try:
        example = value.format(name="x")
    except (KeyError, IndexError, ValueError):
        raise ValueError("only {name} may appear in braces") from None
    if suffix and not example.endswith(suffix):
        raise ValueError(f"must end in {suffix}")
    if absolute and not example.startswith("/"):
        raise ValueError("must be an absolute path")
    if not absolute and any(c in example for c in "/ \t\n"):
        raise ValueError("a unit name has no '/' or spaces")
    return value


_PATTERN_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _compile_pattern(value: object) -> re.Pattern[bytes]:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a regular expression")
    try:
        return re.compile(value.encode())
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


def _check_pattern_name(value: object) -> str:
    if not isinstance(value, str) or not _PATTERN_NAME_RE.fullmatch(value):
        raise ValueError("a pattern name is 1-64 characters from A-Z a-z 0-9 _, not a digit first")
    return value


# procServ's default keys (PROCSERV.md): an escape prefix must not start with one, or
# a lone first key, passed on after a pause, would be that key.
_PROCSERV_KEYS = {
    0x18: "procServ's kill key",
    0x14: "procServ's auto-restart toggle key",
    0x12: "procServ's restart key",
    0x11: "procServ's quit key",
}


def _check_escape(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError('expected an escape like "^Ec"')
    prefix = parse_prefix(value)
    if prefix[0] in _PROCSERV_KEYS:
        key = "^" + chr(prefix[0] + 64)
        raise ValueError(
            f"escape prefix {value!r} starts with {key}, {_PROCSERV_KEYS[prefix[0]]}:"
            f" a lone {key} would reach procServ; start it with another control key"
            " (the default is ^Ec)"
        )
    return prefix


_BRACKETED_RE = re.compile(r"\[([^\]]+)\]:([0-9]{1,5})")
_HOST_PORT_RE = re.compile(r"([A-Za-z0-9_.-]+):([0-9]{1,5})")
_ENDPOINT_HELP = "expected HOST:PORT (127.0.0.1:2222, host.example:2222, [::1]:2222)"


def parse_endpoint(value: object, *, allow_port_zero: bool = False) -> Endpoint:
    """An Endpoint from "HOST:PORT" or "[IPv6]:PORT". Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(_ENDPOINT_HELP)
    if match := _BRACKETED_RE.fullmatch(value):
        try:
            host = str(ipaddress.IPv6Address(match[1]))
        except ValueError:
            raise ValueError(f"{safe_repr(match[1])} is not an IPv6 address") from None
    elif match := _HOST_PORT_RE.fullmatch(value):
        host = match[1]
    elif value.count(":") > 1:
        raise ValueError(f"{_ENDPOINT_HELP}; put an IPv6 address in brackets")
    else:
        raise ValueError(_ENDPOINT_HELP)
    port, lowest = int(match[2]), 0 if allow_port_zero else 1
    if not lowest <= port <= 65535:
        raise ValueError(f"port must be {lowest}-65535")
    return Endpoint(host, port)


_CERT_SUFFIX = "-cert-v01@openssh.com"
_KEY_HELP = "not an OpenSSH public key"


def parse_public_key(line: object) -> bytes:
    """The `public_data` of one OpenSSH public-key line ("TYPE BASE64 [COMMENT]").

    Refuses, with a message saying why: private keys (asyncssh would happily derive
    the public half), several lines, certificates and authorized_keys options.
    Raises ValueError.
    """
    if not isinstance(line, str):
        raise ValueError(f"{_KEY_HELP}: expected a string")
    text = line.strip()
    if "PRIVATE KEY" in text:
        raise ValueError("this is a PRIVATE key: give the public key (the .pub file)")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{_KEY_HELP}: expected one line, TYPE BASE64 [COMMENT]")
    fields = text.split()
    if fields and fields[0].endswith(_CERT_SUFFIX):
        raise ValueError("certificates are not supported here: give the user's public key")
    key = _import_key(text)
    if key is None or key.algorithm.decode("ascii") != fields[0]:
        if _has_options(fields):
            raise ValueError("authorized_keys options are not supported: remove them")
        raise ValueError(_KEY_HELP)
    return bytes(key.public_data)


def _ca_line(value: object) -> str:
    """A CA public key, checked like a user key, kept as "TYPE BASE64"."""
    parse_public_key(value)
    assert isinstance(value, str)
    return " ".join(value.split()[:2])


def _import_key(text: str) -> asyncssh.SSHKey | None:
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        return None


def _has_options(fields: list[str]) -> bool:
    """True if the key proper starts after some leading fields (authorized_keys options)."""
    for start in range(1, min(len(fields) - 1, 16)):
        if fields[start + 1].startswith("AAAA") and _import_key(" ".join(fields[start:])):
            return True
    return False


def _check_discover_pattern(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a glob pattern such as /run/procServ/*/control")
    pattern = PurePosixPath(value)
    example = "e.g. /run/procServ/*/control"
    if not pattern.is_absolute():
        raise ValueError(f"must be an absolute path ({example})")
    if ".." in pattern.parts:
        raise ValueError("must not contain '..'")
    parts = pattern.parts[1:]
    if len(parts) < 2 or parts[-2] != "*":
        raise ValueError(
            f"must end in /*/FILE: the directory '*' matches names the console ({example})"
        )
    if any(_has_glob(part) for part in (*parts[:-2], parts[-1])):
        raise ValueError(
            f"only the console directory may be a wildcard, and it must be '*' ({example})"
        )
    return str(pattern)


def _has_glob(part: str) -> bool:
    return any(char in part for char in "*?[")


def _check_acl_entry(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a user name, '@group' or '*'")
    if value == ANY_USER:
        return value
    try:
        if value.startswith(GROUP_PREFIX):
            validate_group_name(value[len(GROUP_PREFIX) :])
        else:
            validate_user_name(value)
    except InvalidName:
        raise ValueError(f"{safe_repr(value)} is not a user name, '@group' or '*'") from None
    return value


# ---------------------------------------------------------------- raw models (the file)


def _fail(message: str) -> NoReturn:
    raise PydanticCustomError("consrv", "{message}", {"message": message})


def _checked(check: typing.Callable[[Any], object]) -> PlainValidator:
    """A pydantic validator from a plain `check` that raises ValueError (or InvalidName)."""

    def validate(value: object) -> object:
        try:
            return check(value)
        except ValueError as exc:
            _fail(str(exc))

    return PlainValidator(validate)


def _path(value: object) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError("expected a path")
    return Path(value)


def _socket_path(value: object) -> Path:
    """A console's UNIX socket: an absolute path to a socket file.

    procServ's endpoint syntax (``unix:USER:GROUP:MODE:/path``, ``unix:@name``) is
    not a path: saying so here keeps a pasted ``--port`` value from becoming a
    relative path under the config directory that no procServ will ever create.
    """
    path = _path(value)
    text = str(value)
    if text.startswith("unix:"):
        raise ValueError(f"give the socket's path, not procServ's endpoint {text!r}")
    if text.startswith("@"):
        raise ValueError("abstract UNIX sockets are not supported: give procServ a socket path")
    if not path.is_absolute():
        raise ValueError(
            f"must be an absolute path (e.g. /run/procServ/NAME/control), not {text!r}"
        )
    return path


PathValue = Annotated[Path, _checked(_path)]
SocketPath = Annotated[Path, _checked(_socket_path)]
Size = Annotated[int, _checked(parse_size)]
ListenEndpoint = Annotated[Endpoint, _checked(lambda v: parse_endpoint(v, allow_port_zero=True))]
TcpEndpoint = Annotated[Endpoint, _checked(parse_endpoint)]


def _metrics_endpoint(value: object) -> Endpoint:
    """``metrics.listen``: HOST:PORT, or a bare port, which listens on loopback only."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.isdigit():
        value = f"127.0.0.1:{value}"
    return parse_endpoint(value, allow_port_zero=True)


MetricsEndpoint = Annotated[Endpoint, _checked(_metrics_endpoint)]
PublicKey = Annotated[bytes, _checked(parse_public_key)]
ConsoleName = Annotated[str, _checked(validate_console_name)]
UserName = Annotated[str, _checked(validate_user_name)]
GroupName = Annotated[str, _checked(validate_group_name)]
AclEntry = Annotated[str, _checked(_check_acl_entry)]
DiscoverPattern = Annotated[str, _checked(_check_discover_pattern)]
CaKey = Annotated[str, _checked(lambda v: _ca_line(v))]
Duration = Annotated[float, _checked(parse_duration)]
UnitTemplate = Annotated[str, _checked(lambda v: _check_template(v, suffix=".service"))]
SocketTemplate = Annotated[str, _checked(lambda v: _check_template(v, absolute=True))]
PatternName = Annotated[str, _checked(_check_pattern_name)]
Regex = Annotated[re.Pattern[bytes], _checked(_compile_pattern)]
Escape = Annotated[bytes, _checked(_check_escape)]
Lines = Annotated[StrictInt, Field(ge=0, le=10000)]
Positive = Annotated[StrictInt, Field(ge=1)]


def _cipher(value: object) -> str:
    if value not in CIPHERS:
        hint = " (CBC is never offered)" if isinstance(value, str) and "cbc" in value else ""
        raise ValueError(f"unknown cipher {value!r}{hint}; choose from {', '.join(CIPHERS)}")
    return str(value)


def _ciphers(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        _fail("must not be empty")
    if len(set(value)) != len(value):
        _fail("names a cipher twice")
    return value


Cipher = Annotated[str, _checked(_cipher)]


def _not_empty(value: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    if not value:
        _fail("must not be empty")
    return value


NoneIsEmpty = pydantic.BeforeValidator(lambda v: {} if v is None else v)


class _Raw(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        """`section:` with nothing under it (YAML null) means all defaults."""
        return {} if data is None else data


class _RawSsh(_Raw):
    listen: Annotated[tuple[ListenEndpoint, ...], AfterValidator(_not_empty)] = (
        Endpoint("127.0.0.1", 2222),
    )
    host_key: PathValue = DEFAULT_HOST_KEY
    login: UserName = "console"
    observer_login: UserName = "observer"
    trusted_user_ca_keys: tuple[CaKey, ...] = ()
    login_timeout: Duration = 30.0
    max_startups: Positive = 100
    max_startups_per_source: Positive = 20
    max_auth_tries: Positive = 6
    max_sessions: Positive = 10
    revoked_keys: PathValue | None = None
    ciphers: Annotated[tuple[Cipher, ...], AfterValidator(_ciphers)] = DEFAULT_CIPHERS

    @pydantic.model_validator(mode="after")
    def _logins_differ(self) -> "_RawSsh":
        if self.login == self.observer_login:
            _fail("login and observer_login must differ")
        return self


class _RawMessages(_Raw):
    burst: Annotated[StrictInt, Field(ge=1, le=100000)] = 10
    per_minute: Annotated[float, Field(gt=0, le=600)] = 6.0
    max_length: Annotated[StrictInt, Field(ge=1, le=1000)] = 200


class _RawMetrics(_Raw):
    listen: MetricsEndpoint | None = None


class _RawLog(_Raw):
    timestamps: StrictBool = False
    max_size: Size = 10 << 20
    keep: Annotated[StrictInt, Field(ge=1)] = 5


class _RawUser(_Raw):
    keys: tuple[PublicKey, ...] = ()
    keys_file: PathValue | None = None
    groups: tuple[GroupName, ...] = ()


class _RawDefaults(_Raw):
    rw: tuple[AclEntry, ...] = ()
    ro: tuple[AclEntry, ...] = (ANY_USER,)
    operate: tuple[AclEntry, ...] = ()
    scrollback: Size = 256 << 10
    viewer_buffer: Size = 1 << 20
    write: WriteMode = "exclusive"
    writer_idle_timeout: Duration | None = None
    procserv_keys: KeyPolicy = "confirm"
    replay: Lines = 0
    escape: Escape = DEFAULT_PREFIX
    ioc: StrictBool | None = None
    patterns: Annotated[dict[PatternName, Regex], NoneIsEmpty] = Field(default_factory=dict)
    audit_input: StrictBool = False


class _RawIoc(_Raw):
    scope: Scope = "system"
    unit: UnitTemplate = "ioc@{name}.service"
    socket: SocketTemplate | None = None
    discover: StrictBool = True
    poll_interval: Duration = 5.0


class _RawConsole(_Raw):
    socket: SocketPath | None = None
    tcp: TcpEndpoint | None = None
    rw: tuple[AclEntry, ...] | None = None
    ro: tuple[AclEntry, ...] | None = None
    scrollback: Size | None = None
    viewer_buffer: Size | None = None
    timestamps: StrictBool | None = None
    operate: tuple[AclEntry, ...] | None = None
    write: WriteMode | None = None
    writer_idle_timeout: Duration | None = None
    procserv_keys: KeyPolicy | None = None
    replay: Lines | None = None
    escape: Escape | None = None
    ioc: StrictBool | None = None
    autostart: StrictBool = False
    patterns: dict[PatternName, Regex] | None = None
    audit_input: StrictBool | None = None

    @pydantic.model_validator(mode="after")
    def _one_upstream(self) -> "_RawConsole":
        if self.socket is not None and self.tcp is not None:
            _fail("give one of 'socket' (a UNIX socket path) or 'tcp' (HOST:PORT), not both")
        return self


class _RawConfig(_Raw):
    ssh: _RawSsh = Field(default_factory=_RawSsh)
    metrics: _RawMetrics | None = None
    log_dir: PathValue | None = None
    log: _RawLog = Field(default_factory=_RawLog)
    users: Annotated[dict[UserName, _RawUser], NoneIsEmpty] = Field(default_factory=dict)
    groups: Annotated[dict[GroupName, tuple[UserName, ...]], NoneIsEmpty] = Field(
        default_factory=dict
    )
    defaults: _RawDefaults = Field(default_factory=_RawDefaults)
    consoles: Annotated[dict[ConsoleName, _RawConsole], NoneIsEmpty] = Field(default_factory=dict)
    discover: Annotated[
        tuple[DiscoverPattern, ...], pydantic.BeforeValidator(lambda v: () if v is None else v)
    ] = ()
    ioc: _RawIoc | None = None
    audit_log: PathValue | None = None
    messages: _RawMessages = Field(default_factory=_RawMessages)


# ---------------------------------------------------------------- pydantic errors → problems


_TYPE_MESSAGES = {
    "missing": "required",
    "bool_type": "expected true or false",
    "int_type": "expected an integer",
    "string_type": "expected a string",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_@*][A-Za-z0-9_.:@*-]{0,63}")


def _problems_from(error: pydantic.ValidationError) -> Iterator[Problem]:
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        path = _format_loc(loc)
        if detail["type"] == "extra_forbidden":
            yield Problem(path, _unknown_key(loc))
        elif detail["type"] == "string_type" and loc[-1:] == ("[key]",):
            yield Problem(path, "expected a string as the name (quote it in YAML)")
        elif detail["type"] == "greater_than_equal":
            yield Problem(path, f"must be at least {detail.get('ctx', {}).get('ge')}")
        elif detail["type"] == "less_than_equal":
            yield Problem(path, f"must be at most {detail.get('ctx', {}).get('le')}")
        elif detail["type"] == "literal_error":
            yield Problem(path, f"expected {detail.get('ctx', {}).get('expected')}")
        else:
            yield Problem(path, _TYPE_MESSAGES.get(detail["type"], detail["msg"]))


def _format_loc(loc: tuple[int | str, ...]) -> str:
    text, annotation = "", typing.cast(object, _RawConfig)
    for segment in loc:
        if segment == "[key]":
            continue
        if isinstance(segment, int) and _origin(annotation) is tuple:
            text += f"[{segment}]"
        elif _PLAIN_KEY_RE.fullmatch(str(segment)):
            text += f".{segment}" if text else str(segment)
        else:
            text += f"[{safe_repr(str(segment))}]"
        annotation = _child(annotation, segment)
    return text or "(top level)"


def _unwrap(annotation: object) -> object:
    """Strip Annotated[...] and `| None` from a field's type."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation


def _origin(annotation: object) -> object:
    return typing.get_origin(_unwrap(annotation))


def _child(annotation: object, segment: int | str) -> object:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        field = annotation.model_fields.get(str(segment))
        return None if field is None else field.annotation
    args = typing.get_args(annotation)
    if _origin(annotation) is dict:
        return args[1]
    if _origin(annotation) is tuple:
        return args[0]
    return None


def _unknown_key(loc: tuple[int | str, ...]) -> str:
    parent = _unwrap(_RawConfig)
    for segment in loc[:-1]:
        parent = _unwrap(_child(parent, segment))
    if not (isinstance(parent, type) and issubclass(parent, pydantic.BaseModel)):
        return "unknown key"
    known = list(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key, did you mean {close[0]!r}?"
    return f"unknown key; known keys here: {', '.join(known)}"


# ---------------------------------------------------------------- resolution

_T = typing.TypeVar("_T")
_NEEDS_IOC_SECTION = "needs the top-level 'ioc' section (how to reach the ioc@ units)"
_NEEDS_UPSTREAM = (
    "needs 'socket' (a UNIX socket path) or 'tcp' (HOST:PORT), or ioc: true with an 'ioc' section"
)


def _user_runtime_dir() -> str:
    return os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"


class _Resolver:
    """Step 2: raw models → Config, collecting cross-reference problems."""

    def __init__(self, raw: _RawConfig, base_dir: Path) -> None:
        self.raw, self.base_dir = raw, base_dir
        self.problems: list[Problem] = []
        self.known_groups = set(raw.groups).union(*(u.groups for u in raw.users.values()))

    def config(self) -> Config:
        raw = self.raw
        users = self._users()
        self._check_members()
        self._check_acl("defaults", raw.defaults.rw, raw.defaults.ro)
        self._check_acl("defaults", raw.defaults.operate, None, keys=("operate",))
        self.ioc = self._ioc()
        defaults = self._defaults()
        consoles = {
            name: self._console(name, console, defaults) for name, console in raw.consoles.items()
        }
        revoked_path = self.base_dir / raw.ssh.revoked_keys if raw.ssh.revoked_keys else None
        revoked = self._revoked(revoked_path)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            ssh=SshConfig(
                listen=raw.ssh.listen,
                host_key=self.base_dir / raw.ssh.host_key,
                login=raw.ssh.login,
                observer_login=raw.ssh.observer_login,
                trusted_user_ca_keys=raw.ssh.trusted_user_ca_keys,
                login_timeout=raw.ssh.login_timeout,
                max_startups=raw.ssh.max_startups,
                max_startups_per_source=raw.ssh.max_startups_per_source,
                max_auth_tries=raw.ssh.max_auth_tries,
                max_sessions=raw.ssh.max_sessions,
                ciphers=raw.ssh.ciphers,
                revoked_keys=revoked_path,
                revoked=revoked,
            ),
            metrics_listen=raw.metrics.listen if raw.metrics else None,
            log_dir=self.base_dir / raw.log_dir if raw.log_dir else None,
            log=LogConfig(raw.log.timestamps, raw.log.max_size, raw.log.keep),
            users=types.MappingProxyType(users),
            groups=types.MappingProxyType(
                {group: frozenset(members) for group, members in raw.groups.items()}
            ),
            defaults=defaults,
            consoles=types.MappingProxyType(consoles),
            discover=raw.discover,
            ioc=self.ioc,
            audit_log=self.base_dir / raw.audit_log if raw.audit_log else None,
            messages=MessageLimits(
                raw.messages.burst, raw.messages.per_minute, raw.messages.max_length
            ),
        )

    def _revoked(self, file: Path | None) -> Revoked:
        """``ssh.revoked_keys``, read now (and again on every reload)."""
        if file is None:
            return Revoked()
        path = "ssh.revoked_keys"
        try:
            data = file.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(path, f"cannot read {file}: {exc.strerror}"))
            return Revoked()
        if is_binary_krl(data):
            self.problems.append(Problem(path, "binary KRLs are not read: list keys as text"))
            return Revoked()
        revoked, problems = parse_revoked(data.decode("utf-8", "replace"))
        self.problems.extend(Problem(path, f"line {n}: {text}") for n, text in problems)
        return revoked

    def _ioc(self) -> IocConfig | None:
        raw = self.raw.ioc
        if raw is None:
            return None
        socket = raw.socket
        if socket is None:
            run = "/run" if raw.scope == "system" else _user_runtime_dir()
            socket = f"{run}/procServ/{{name}}/control"
        return IocConfig(raw.scope, raw.unit, socket, raw.discover, raw.poll_interval)

    def _defaults(self) -> ConsoleDefaults:
        d = self.raw.defaults
        if d.ioc and self.ioc is None:
            self.problems.append(Problem("defaults.ioc", _NEEDS_IOC_SECTION))
        return ConsoleDefaults(
            rw=d.rw,
            ro=d.ro,
            scrollback=d.scrollback,
            viewer_buffer=d.viewer_buffer,
            operate=d.operate,
            write=d.write,
            writer_idle_timeout=d.writer_idle_timeout,
            procserv_keys=d.procserv_keys,
            replay=d.replay,
            escape=d.escape,
            ioc=self.ioc is not None if d.ioc is None else d.ioc,
            patterns=tuple(Pattern(name, regex) for name, regex in d.patterns.items()),
            audit_input=d.audit_input,
        )

    def _users(self) -> dict[str, User]:
        owners: dict[bytes, str] = {}
        users = {}
        for name, raw_user in self.raw.users.items():
            keys: dict[bytes, None] = {}
            for path, prefix, key in self._keys_of(name, raw_user):
                owner = owners.setdefault(key, name)
                if owner != name:
                    self.problems.append(Problem(path, f"{prefix}same key as user {owner!r}"))
                keys[key] = None
            users[name] = User(name, frozenset(raw_user.groups), tuple(keys))
        return users

    def _keys_of(self, name: str, raw_user: _RawUser) -> Iterator[tuple[str, str, bytes]]:
        for index, key in enumerate(raw_user.keys):
            yield f"users.{name}.keys[{index}]", "", key
        if raw_user.keys_file is not None:
            path = f"users.{name}.keys_file"
            for number, line in self._read_keys_file(path, self.base_dir / raw_user.keys_file):
                try:
                    yield path, f"line {number}: ", parse_public_key(line)
                except ValueError as exc:
                    self.problems.append(Problem(path, f"line {number}: {exc}"))

    def _read_keys_file(self, path: str, file: Path) -> Iterator[tuple[int, str]]:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            self.problems.append(Problem(path, f"cannot read {file}: {exc.strerror}"))
            return
        except UnicodeDecodeError:
            self.problems.append(Problem(path, f"cannot read {file}: not UTF-8 text"))
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                yield number, line

    def _check_members(self) -> None:
        for group, members in self.raw.groups.items():
            for index, member in enumerate(members):
                if member not in self.raw.users:
                    self._unknown(f"groups.{group}[{index}]", "user", member, self.raw.users)

    def _check_acl(
        self,
        where: str,
        rw: Sequence[str] | None,
        ro: Sequence[str] | None,
        keys: tuple[str, str] | tuple[str] = ("rw", "ro"),
    ) -> None:
        for key, entries in zip(keys, (rw or (), ro or ()), strict=False):
            for index, entry in enumerate(entries):
                path = f"{where}.{key}[{index}]"
                if entry.startswith(GROUP_PREFIX):
                    if entry[1:] not in self.known_groups:
                        self._unknown(path, "group", entry, [f"@{g}" for g in self.known_groups])
                elif entry != ANY_USER and entry not in self.raw.users:
                    self._unknown(path, "user", entry, self.raw.users)

    def _unknown(self, path: str, kind: str, name: str, known: typing.Iterable[str]) -> None:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        self.problems.append(Problem(path, f"unknown {kind} {safe_repr(name)}{hint}"))

    def _console(self, name: str, raw: _RawConsole, defaults: ConsoleDefaults) -> ConsoleConfig:
        where = f"consoles.{name}"
        self._check_acl(where, raw.rw, raw.ro)
        self._check_acl(where, raw.operate, None, keys=("operate",))
        ioc = defaults.ioc if raw.ioc is None else raw.ioc
        if ioc and self.ioc is None:
            self.problems.append(Problem(f"{where}.ioc", _NEEDS_IOC_SECTION))
            ioc = False
        if raw.autostart and not ioc:
            self.problems.append(Problem(f"{where}.autostart", "only an IOC console (ioc: true)"))
        socket = raw.socket
        if socket is None and raw.tcp is None:
            if self.ioc is not None and ioc:
                socket = self.ioc.socket_for(name)
            else:
                self.problems.append(Problem(where, _NEEDS_UPSTREAM))
        if socket is not None and len(bytes(socket)) > MAX_UNIX_SOCKET_PATH:
            self.problems.append(
                Problem(
                    f"consoles.{name}.socket",
                    f"too long for a UNIX socket path ({len(bytes(socket))} bytes, "
                    f"at most {MAX_UNIX_SOCKET_PATH})",
                )
            )
        d = defaults

        def pick(value: _T | None, default: _T) -> _T:
            return default if value is None else value

        patterns = d.patterns
        if raw.patterns is not None:
            patterns = tuple(Pattern(key, regex) for key, regex in raw.patterns.items())
        return ConsoleConfig(
            name=name,
            socket=socket,
            tcp=raw.tcp,
            rw=pick(raw.rw, d.rw),
            ro=pick(raw.ro, d.ro),
            scrollback=pick(raw.scrollback, d.scrollback),
            viewer_buffer=pick(raw.viewer_buffer, d.viewer_buffer),
            timestamps=pick(raw.timestamps, self.raw.log.timestamps),
            operate=pick(raw.operate, d.operate),
            write=pick(raw.write, d.write),
            writer_idle_timeout=pick(raw.writer_idle_timeout, d.writer_idle_timeout),
            procserv_keys=pick(raw.procserv_keys, d.procserv_keys),
            replay=pick(raw.replay, d.replay),
            escape=pick(raw.escape, d.escape),
            ioc=ioc,
            autostart=raw.autostart,
            patterns=patterns,
            audit_input=pick(raw.audit_input, d.audit_input),
        )


# ---------------------------------------------------------------- entry points


def parse_config(data: object, base_dir: Path) -> Config:
    """Validate loaded YAML data. Relative paths resolve against `base_dir`."""
    try:
        raw = _RawConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(list(_problems_from(exc))) from None
    return _Resolver(raw, base_dir).config()


def load_config(path: Path) -> Config:
    """Read, parse and validate a config file. Raises ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(path), f"cannot read: {exc.strerror}")], path) from None
    except UnicodeDecodeError as exc:
        problem = Problem(str(path), f"not UTF-8 text (byte {exc.start})")
        raise ConfigError([problem], path) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(path, exc)], path) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(str(path), f"YAML error: {exc}")], path) from None
    try:
        return parse_config(data, path.absolute().parent)
    except ConfigError as exc:
        raise ConfigError(exc.problems, path) from None


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    context = f" ({exc.context})" if exc.context else ""
    return Problem(where, f"YAML: {exc.problem}{context}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {safe_repr(str(key))} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
