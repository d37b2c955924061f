"""The resolved optional sections: ``fleet:``, ``web:``, ``identity:``, ``pva:``.

Frozen dataclasses the rest of consrv reads, as in model.py, for the sections whose
absence turns a feature off (`Config` holds them; None or the defaults when absent).
"""

import dataclasses
import ipaddress
from collections.abc import Mapping
from pathlib import Path

from consrv.config.values import Endpoint
from consrv.names import validate_console_name

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


# -- identity: ------------------------------------------------------------------------


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
    # A plain key offered to the service or observer login: whose it may be (%f %t %k;
    # user names out). Only a suggestion: the keys command of the user named decides.
    owner_command: tuple[str, ...] = ()

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
