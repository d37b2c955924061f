"""The optional sections' shape: ``fleet:``, ``web:``, ``identity:``, ``pva:``.

Frozen pydantic models, unknown keys forbidden, as in schema.py (whose `RawConfig`
holds them), each with the validators only it uses.
"""

import ipaddress
import re
import types
from collections.abc import Mapping
from typing import Annotated, Literal

import pydantic
from pydantic import Field, StrictBool, StrictInt

from consrv.config.fields import (
    Command,
    ConsoleName,
    Duration,
    ListenEndpoint,
    NoneIsEmpty,
    PathValue,
    Positive,
    Size,
    TcpEndpoint,
    UserName,
    checked,
    fail,
)
from consrv.config.model_optional import (
    DEFAULT_LISTEN,
    PV_HOST_PREFIX,
    PV_PREFIX,
    IdentityConfig,
    IpNetwork,
    WebLimits,
)
from consrv.config.values import parse_duration

# -- fleet: ---------------------------------------------------------------------------

# A gateway must answer a user within 5 s, so no wait on a peer may be longer.
MAX_CONNECT_TIMEOUT = 4.5
HEADER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def _address(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IP address")
    return str(ipaddress.ip_address(value))


def _timeout(value: object) -> float:
    seconds = parse_duration(value)
    if not 0 < seconds <= MAX_CONNECT_TIMEOUT:
        raise ValueError(f"must be more than 0 and at most {MAX_CONNECT_TIMEOUT:g} s "
                         "(a user is answered within 5 s)")  # fmt: skip
    return seconds


def _prometheus_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL (Prometheus' base URL)")
    if any(c.isspace() for c in value):
        raise ValueError("a URL has no spaces")
    return value


class RawPrometheus(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, checked(_prometheus_url)]
    job: Annotated[str, Field(min_length=1, max_length=200)]
    ssh_port: Annotated[StrictInt, Field(ge=1, le=65535)] = 22
    interval: Duration = 30.0


class RawFleet(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data

    name: Annotated[str, checked(lambda v: _host_name(v))] | None = None
    peers: tuple[TcpEndpoint, ...] = ()
    peers_file: PathValue | None = None
    known_hosts: PathValue | None = None
    key: PathValue | None = None
    ca_key: PathValue | None = None
    bind: Annotated[str, checked(_address)] | None = None
    connect_timeout: Annotated[float, checked(_timeout)] = 4.0
    keepalive_interval: Duration = 2.0
    keepalive_count_max: Annotated[StrictInt, Field(ge=1, le=100)] = 2
    gateway_users: tuple[UserName, ...] = ()
    prometheus: RawPrometheus | None = None

    @pydantic.model_validator(mode="after")
    def _gateway_needs(self) -> "RawFleet":
        if self.peers or self.peers_file or self.prometheus:
            missing = [k for k in ("known_hosts", "key", "ca_key") if getattr(self, k) is None]
            if missing:
                fail(f"a gateway (peers) needs {', '.join(missing)} (consrv fleet init makes them)")
        if self.keepalive_interval <= 0:
            fail("keepalive_interval must be more than 0")
        return self


def _host_name(value: object) -> str:
    if not isinstance(value, str) or not value or "@" in value or any(c.isspace() for c in value):
        raise ValueError("expected a host name (no spaces, no '@')")
    return value


# -- web: -----------------------------------------------------------------------------


def _network(value: object) -> IpNetwork:
    if not isinstance(value, str):
        raise ValueError("expected an IP address or network (127.0.0.1, 10.0.0.0/24)")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or network: {value[:60]!r}") from None


def _header(value: object) -> str:
    if not isinstance(value, str) or not value or not set(value) <= HEADER_CHARS:
        raise ValueError("expected an HTTP header name such as X-Remote-User")
    return value.lower()


def _base_url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError("expected an http(s) URL such as https://iochost.example:8443")
    if any(c.isspace() or c in "?#\"'<>" for c in value):
        raise ValueError("a base URL without spaces, quotes, query or fragment")
    return value.rstrip("/")


Network = Annotated[IpNetwork, checked(_network)]


class RawTls(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    cert: PathValue
    key: PathValue


class RawLimits(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    streams_per_user: Positive = WebLimits.streams_per_user
    searches: Positive = WebLimits.searches
    downloads: Positive = WebLimits.downloads
    viewer_buffer: Size = WebLimits.viewer_buffer
    sessions: Positive = WebLimits.sessions
    send_timeout: Duration = WebLimits.send_timeout


class RawWeb(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    listen: ListenEndpoint = DEFAULT_LISTEN
    url: Annotated[str, checked(_base_url)] | None = None
    tls: RawTls | None = None
    trusted_proxies: tuple[Network, ...] = ()
    identity_header: Annotated[str, checked(_header)] | None = None
    login_ttl: Duration = 60.0
    session_ttl: Duration = 12 * 3600.0
    limits: RawLimits = Field(default_factory=RawLimits)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data

    @pydantic.model_validator(mode="after")
    def _proxy_needs_both(self) -> "RawWeb":
        if self.identity_header and not self.trusted_proxies:
            fail("identity_header needs trusted_proxies (the proxies allowed to set it)")
        if self.login_ttl <= 0 or self.session_ttl <= 0:
            fail("login_ttl and session_ttl must be more than 0")
        return self


# -- identity: ------------------------------------------------------------------------


class RawIdentity(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    nss: StrictBool = False
    timeout: Duration = IdentityConfig.timeout
    ttl: Duration = IdentityConfig.ttl
    negative_ttl: Duration = IdentityConfig.negative_ttl
    grace: Duration = IdentityConfig.grace
    concurrency: Annotated[StrictInt, Field(ge=1, le=1000)] = IdentityConfig.concurrency
    key_owner_command: Command | None = None  # whose is this key? (%f %t %k): a suggestion

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data


# -- pva: ----------------------------------------------------------------------------

Severity = Literal["NO_ALARM", "MINOR", "MAJOR", "INVALID"]
SEVERITIES: Mapping[str, int] = types.MappingProxyType(
    {"NO_ALARM": 0, "MINOR": 1, "MAJOR": 2, "INVALID": 3}
)
# What a PV name may hold besides the console name (which follows consrv's own rule).
_PV_CHARS = re.compile(r"[A-Za-z0-9_:.\-{}]*")


def _interface(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IP address of this host (127.0.0.1, 0.0.0.0)")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value[:60]!r}") from None


def _template(value: object, fields: tuple[str, ...], needs: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not _PV_CHARS.fullmatch(value):
        raise ValueError("expected a PV name template of A-Z a-z 0-9 _ : . - and {fields}")
    try:
        value.format(**dict.fromkeys(fields, "x"))
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"only {', '.join('{' + f + '}' for f in fields)} may be used") from None
    for field in needs:
        if "{" + field + "}" not in value:
            raise ValueError(f"needs {{{field}}}: every console needs its own names")
    return value


Interface = Annotated[str, checked(_interface)]
ConsoleTemplate = Annotated[str, checked(lambda v: _template(v, ("host", "console"), ("console",)))]
HostTemplate = Annotated[str, checked(lambda v: _template(v, ("host",), ()))]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]


class RawAlarms(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    down: Severity | None = None
    no_child: Severity | None = None
    unit_failed: Severity | None = None
    unit_inactive: Severity | None = None
    crash_loop: Severity | None = None
    silent: Severity | None = None


class RawPvaConsole(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    silent_after: Duration | None = None
    crash_loop: Annotated[StrictInt, Field(ge=1)] | None = None
    alarms: RawAlarms = Field(default_factory=RawAlarms)
    text: StrictBool | None = None


class RawPva(RawPvaConsole):
    host: ConsoleName | None = None
    prefix: ConsoleTemplate = PV_PREFIX
    host_prefix: HostTemplate = PV_HOST_PREFIX
    interfaces: tuple[Interface, ...] = ("127.0.0.1",)
    server_port: Port = 5075
    broadcast_port: Port = 5076
    own_process: StrictBool = True
    consoles: Annotated[dict[ConsoleName, RawPvaConsole], NoneIsEmpty] = Field(default_factory=dict)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data

    @pydantic.model_validator(mode="after")
    def _interfaces(self) -> "RawPva":
        if not self.interfaces:
            fail("interfaces: give at least one address (127.0.0.1 keeps PVs on this host)")
        return self
