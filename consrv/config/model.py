"""The resolved config: frozen dataclasses the rest of consrv reads."""

import dataclasses
import ipaddress
import re
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from consrv.names import (
    validate_console_name,
)
from consrv.protocol.escape import DEFAULT_PREFIX
from consrv.revocation import Revoked

DEFAULT_HOST_KEY = Path("/var/lib/consrv/ssh_host_ed25519_key")
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_SOCKET_PATH = 107


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A TCP address. `host` is a name, an IPv4 address or a bare IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


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


# -- the `fleet:` section (docs/fleet.md) ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class PeerAddress:
    """One peer: the HOST users type after '@' (``name``), and where it listens."""

    name: str
    endpoint: Endpoint

    @property
    def address(self) -> str:
        return str(self.endpoint)


@dataclasses.dataclass(frozen=True)
class PrometheusPeers:
    """Peers from Prometheus: the targets of one job (fleet/targets.py)."""

    url: str
    job: str
    ssh_port: int = 22
    interval: float = 30.0


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    name: str = ""
    peers: tuple[PeerAddress, ...] = ()
    known_hosts: Path | None = None
    key: Path | None = None
    ca_key: Path | None = None
    bind: str | None = None
    connect_timeout: float = 4.0
    keepalive_interval: float = 2.0
    keepalive_count_max: int = 2
    gateway_users: tuple[str, ...] = ()
    prometheus: PrometheusPeers | None = None

    @property
    def gateway(self) -> bool:
        """True if this consrv is a gateway (it has peers, or reads them from Prometheus)."""
        return bool(self.peers) or self.prometheus is not None


# -- the `web:` section (docs/web.md) -------------------------------------------------

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_LISTEN = Endpoint("127.0.0.1", 8443)


@dataclasses.dataclass(frozen=True)
class WebTls:
    cert: Path
    key: Path


@dataclasses.dataclass(frozen=True)
class WebLimits:
    streams_per_user: int = 8  # live console pages open at once, per user
    searches: int = 4  # log searches at once (all users)
    downloads: int = 4  # log downloads at once (all users)
    viewer_buffer: int = 256 << 10  # bytes queued for one browser before it is dropped
    sessions: int = 1000  # signed-in browsers kept
    send_timeout: float = 10.0  # seconds one frame may take to go out before the browser is dropped


@dataclasses.dataclass(frozen=True)
class WebConfig:
    listen: Endpoint = DEFAULT_LISTEN
    url: str | None = None  # the address users open (behind a proxy); None: from listen
    tls: WebTls | None = None
    trusted_proxies: tuple[IpNetwork, ...] = ()
    identity_header: str | None = None  # a user name set by an authenticating proxy
    login_ttl: float = 60.0  # the one-time link from `ssh ... web`
    session_ttl: float = 12 * 3600.0  # a signed-in browser, from its sign-in
    limits: WebLimits = WebLimits()


# What a reload cannot change (read once at start): the listener, and the sizes of
# the stores and pools made at start. The rest is read from the config in force.
RESTART_ONLY = (
    "listen", "tls", "login_ttl", "session_ttl",
    "limits.searches", "limits.downloads", "limits.sessions", "limits.send_timeout",
)  # fmt: skip


def restart_only(web: WebConfig | None) -> dict[str, object]:
    """The `RESTART_ONLY` settings of `web` (empty without a web section)."""
    if web is None:
        return {}
    found: dict[str, object] = {}
    for key in RESTART_ONLY:
        value: object = web
        for part in key.split("."):
            value = getattr(value, part)
        found[key] = value
    return found


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


# The `pva:` section (consrv/pva/, docs/pva.md): what each console's PVs alarm on.
PV_PREFIX = "CONSRV:{host}:{console}:"
PV_HOST_PREFIX = "CONSRV:{host}:"


@dataclasses.dataclass(frozen=True)
class PvaAlarms:
    """The alarm severity (0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID) of each condition."""

    down: int = 2  # procServ unreachable: gone, or its socket missing
    no_child: int = 2  # procServ up, the IOC (its child) not running
    unit_failed: int = 2  # the ioc@ unit is failed
    unit_inactive: int = 1  # the ioc@ unit is stopped (or stopping, or not loaded)
    crash_loop: int = 2  # `crash_loop` or more restarts in the last hour
    silent: int = 1  # no output for longer than `silent_after`


@dataclasses.dataclass(frozen=True)
class PvaConsole:
    """What one console's PVs alarm on (the section's defaults, then its `consoles` entry)."""

    silent_after: float | None = None  # seconds; None: never silent
    crash_loop: int = 3  # restarts in the last hour that mean crash-looping
    alarms: PvaAlarms = PvaAlarms()
    text: bool = False  # publish the last output line (consoles show passwords: off)


@dataclasses.dataclass(frozen=True)
class PvaConfig:
    host: str
    prefix: str = PV_PREFIX  # {host} and {console}
    host_prefix: str = PV_HOST_PREFIX  # {host}
    interfaces: tuple[str, ...] = ("127.0.0.1",)  # EPICS_PVAS_INTF_ADDR_LIST
    server_port: int = 5075  # EPICS_PVAS_SERVER_PORT (0: any free port)
    broadcast_port: int = 5076  # EPICS_PVAS_BROADCAST_PORT: UDP searches (0: any)
    own_process: bool = True  # serve from a child process at nice 19 (docs/pva.md)
    defaults: PvaConsole = PvaConsole()
    consoles: Mapping[str, PvaConsole] = dataclasses.field(default_factory=dict)

    def for_console(self, name: str) -> PvaConsole:
        return self.consoles.get(name, self.defaults)

    def console_prefix(self, name: str) -> str:
        return self.prefix.format(host=self.host, console=validate_console_name(name))

    def host_pv_prefix(self) -> str:
        return self.host_prefix.format(host=self.host)

    def server_conf(self) -> dict[str, str]:
        """The EPICS_PVAS_* settings of the server (the process environment is not read)."""
        interfaces = " ".join(self.interfaces)
        return {
            "EPICS_PVAS_INTF_ADDR_LIST": interfaces,
            "EPICS_PVAS_BEACON_ADDR_LIST": interfaces,
            "EPICS_PVAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_PVAS_SERVER_PORT": str(self.server_port),
            "EPICS_PVAS_BROADCAST_PORT": str(self.broadcast_port),
        }


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
    pva: PvaConfig | None = None  # PVs over pvAccess (config/pva.py; None: off)
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
