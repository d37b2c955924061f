"""The ``web:`` section: the read-only browser view (docs/web.md).

Its raw model (wired into `schema.RawConfig`), its frozen dataclasses (``Config.web``)
and its resolution (paths joined to the config's directory, TLS files checked).
Absent section: no web view.
"""

import dataclasses
import ipaddress
from pathlib import Path
from typing import Annotated

import pydantic
from pydantic import Field, StrictInt

from consrv.config.errors import Problem
from consrv.config.fields import Duration, ListenEndpoint, PathValue, Size, checked, fail
from consrv.config.model import Endpoint

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_LISTEN = Endpoint("127.0.0.1", 8443)
HEADER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


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


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise ValueError("expected an http(s) URL such as https://iochost.example:8443")
    if any(c.isspace() or c in "?#\"'<>" for c in value):
        raise ValueError("a base URL without spaces, quotes, query or fragment")
    return value.rstrip("/")


Network = Annotated[IpNetwork, checked(_network)]
Positive = Annotated[StrictInt, Field(ge=1)]


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
    url: Annotated[str, checked(_url)] | None = None
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


def resolve_web(raw: RawWeb | None, base_dir: Path) -> tuple[WebConfig | None, list[Problem]]:
    """The ``web:`` section resolved; TLS files that cannot be read are problems."""
    if raw is None:
        return None, []
    problems: list[Problem] = []
    tls = None
    if raw.tls is not None:
        tls = WebTls(base_dir / raw.tls.cert, base_dir / raw.tls.key)
        for key, path in (("cert", tls.cert), ("key", tls.key)):
            if not path.is_file():
                problems.append(Problem(f"web.tls.{key}", f"no such file: {path}"))
    limits = WebLimits(**raw.limits.model_dump())
    web = WebConfig(
        listen=raw.listen,
        url=raw.url,
        tls=tls,
        trusted_proxies=raw.trusted_proxies,
        identity_header=raw.identity_header,
        login_ttl=raw.login_ttl,
        session_ttl=raw.session_ttl,
        limits=limits,
    )
    return web, problems
