"""The file's shape: frozen pydantic models, unknown keys forbidden, one per section."""

import ipaddress
from typing import Annotated

import pydantic
from pydantic import AfterValidator, Field, StrictBool, StrictInt

from consrv.access import ANY_USER
from consrv.config.fields import (
    AclEntry,
    CaKey,
    Cipher,
    Command,
    ConsoleName,
    DiscoverPattern,
    Duration,
    Escape,
    GroupName,
    Lines,
    ListenEndpoint,
    MetricsEndpoint,
    NoneIsEmpty,
    PathValue,
    PatternName,
    Positive,
    PublicKey,
    Regex,
    Size,
    SocketPath,
    SocketTemplate,
    TcpEndpoint,
    UnitTemplate,
    UserName,
    check_ciphers,
    checked,
    fail,
    not_empty,
)
from consrv.config.model import (
    DEFAULT_CIPHERS,
    DEFAULT_HOST_KEY,
    DEFAULT_LISTEN,
    Endpoint,
    IdentityConfig,
    IpNetwork,
    KeyPolicy,
    Scope,
    WebLimits,
    WriteMode,
)
from consrv.config.pva import RawPva
from consrv.config.values import parse_duration
from consrv.protocol.escape import DEFAULT_PREFIX

# Lines of recent output a user sees on attaching (0 in 0.1.0: docs/changes.md).
DEFAULT_REPLAY = 20


class Raw(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        """`section:` with nothing under it (YAML null) means all defaults."""
        return {} if data is None else data


class RawSsh(Raw):
    listen: Annotated[tuple[ListenEndpoint, ...], AfterValidator(not_empty)] = (
        Endpoint("127.0.0.1", 2222),
    )
    host_key: PathValue = DEFAULT_HOST_KEY
    host_certificate: PathValue | None = None
    login: UserName = "console"
    observer_login: UserName = "observer"
    trusted_user_ca_keys: tuple[CaKey, ...] = ()
    login_timeout: Duration = 30.0
    max_startups: Positive = 100
    max_startups_per_source: Positive = 20
    max_auth_tries: Positive = 6
    max_sessions: Positive = 10
    revoked_keys: PathValue | None = None
    authorized_keys_command: Command | None = None  # sshd's: keys from a command
    authorized_keys_command_user: UserName | None = None
    ciphers: Annotated[tuple[Cipher, ...], AfterValidator(check_ciphers)] = DEFAULT_CIPHERS

    @pydantic.model_validator(mode="after")
    def _logins_differ(self) -> "RawSsh":
        if self.login == self.observer_login:
            fail("login and observer_login must differ")
        return self


class RawMessages(Raw):
    burst: Annotated[StrictInt, Field(ge=1, le=100000)] = 10
    per_minute: Annotated[float, Field(gt=0, le=600)] = 6.0
    max_length: Annotated[StrictInt, Field(ge=1, le=1000)] = 200


class RawMetrics(Raw):
    listen: MetricsEndpoint | None = None


class RawLog(Raw):
    timestamps: StrictBool = True
    max_size: Size = 10 << 20
    keep: Annotated[StrictInt, Field(ge=1)] = 5
    record: StrictBool = False


class RawUser(Raw):
    keys: tuple[PublicKey, ...] = ()
    keys_file: PathValue | None = None
    groups: tuple[GroupName, ...] = ()


class RawDefaults(Raw):
    rw: tuple[AclEntry, ...] = ()
    ro: tuple[AclEntry, ...] = (ANY_USER,)
    operate: tuple[AclEntry, ...] = ()
    scrollback: Size = 256 << 10
    viewer_buffer: Size = 1 << 20
    write: WriteMode = "exclusive"
    writer_idle_timeout: Duration | None = None
    procserv_keys: KeyPolicy = "confirm"
    replay: Lines = DEFAULT_REPLAY
    escape: Escape = DEFAULT_PREFIX
    ioc: StrictBool | None = None
    patterns: Annotated[dict[PatternName, Regex], NoneIsEmpty] = Field(default_factory=dict)
    audit_input: StrictBool = False


class RawIoc(Raw):
    scope: Scope = "system"
    unit: UnitTemplate = "ioc@{name}.service"
    socket: SocketTemplate | None = None
    discover: StrictBool = True
    poll_interval: Duration = 5.0


class RawConsole(Raw):
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
    def _one_upstream(self) -> "RawConsole":
        if self.socket is not None and self.tcp is not None:
            fail("give one of 'socket' (a UNIX socket path) or 'tcp' (HOST:PORT), not both")
        return self


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


class RawConfig(Raw):
    ssh: RawSsh = Field(default_factory=RawSsh)
    metrics: RawMetrics | None = None
    log_dir: PathValue | None = None
    log: RawLog = Field(default_factory=RawLog)
    users: Annotated[dict[UserName, RawUser], NoneIsEmpty] = Field(default_factory=dict)
    groups: Annotated[dict[GroupName, tuple[UserName, ...]], NoneIsEmpty] = Field(
        default_factory=dict
    )
    defaults: RawDefaults = Field(default_factory=RawDefaults)
    consoles: Annotated[dict[ConsoleName, RawConsole], NoneIsEmpty] = Field(default_factory=dict)
    discover: Annotated[
        tuple[DiscoverPattern, ...], pydantic.BeforeValidator(lambda v: () if v is None else v)
    ] = ()
    ioc: RawIoc | None = None
    audit_log: PathValue | None = None
    messages: RawMessages = Field(default_factory=RawMessages)
    fleet: RawFleet | None = None
    # `web:` with nothing under it turns the web view on with the defaults.
    web: Annotated[RawWeb | None, NoneIsEmpty] = None
    identity: Annotated[RawIdentity | None, NoneIsEmpty] = None  # NSS, the cache (identity.py)
    # `pva:` with nothing under it serves PVs on loopback with the defaults (docs/pva.md).
    pva: Annotated[RawPva | None, NoneIsEmpty] = None
