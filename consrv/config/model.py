"""The resolved config: frozen dataclasses the rest of consrv reads, the core sections'
here (``ssh:``, ``log:``, ``users:``, ``consoles:``, ``ioc:`` ...) and `Config`; the
optional sections' in model_optional.py."""

import dataclasses
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from consrv.config.model_optional import FleetConfig, IdentityConfig, PvaConfig, WebConfig
from consrv.config.values import Endpoint
from consrv.names import (
    validate_console_name,
)
from consrv.protocol.escape import DEFAULT_PREFIX
from consrv.revocation import Revoked

DEFAULT_HOST_KEY = Path("/var/lib/consrv/ssh_host_ed25519_key")
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


# The ciphers consrv can offer: asyncssh's, less CBC (never: see ssh/compat.py).
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
    # sshd's HostCertificate: an OpenSSH certificate of host_key (consrv.ssh.keys).
    host_certificate: Path | None = None


@dataclasses.dataclass(frozen=True)
class LogConfig:
    timestamps: bool
    max_size: int
    keep: int
    record: bool = False  # each console's output with timing, beside its log (recording.py)


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
    fleet: FleetConfig | None = None  # the `fleet:` section
    web: WebConfig | None = None  # the browser view (None: off)
    identity: IdentityConfig | None = None  # keys command, NSS (None: YAML only)
    pva: PvaConfig | None = None  # PVs over pvAccess (None: off)
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
