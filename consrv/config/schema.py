"""The file's shape: frozen pydantic models, unknown keys forbidden, one per section."""

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
    fail,
    not_empty,
)
from consrv.config.model import (
    DEFAULT_CIPHERS,
    DEFAULT_HOST_KEY,
    KeyPolicy,
    Scope,
    WriteMode,
)
from consrv.config.schema_optional import RawFleet, RawIdentity, RawPva, RawWeb
from consrv.config.values import Endpoint
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
