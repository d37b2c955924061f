"""The ``fleet:`` section: a gateway's peers and identity, a peer's gateway users.

Gateway side (any of ``peers`` / ``peers_file`` makes this consrv a gateway):
``name`` (this host in the HOST column; default the host name), ``peers``
(``HOST:PORT`` each) and/or ``peers_file`` (one ``HOST:PORT`` a line, ``#``
comments: what config management writes), ``known_hosts`` (the peers' host keys,
``@cert-authority`` lines accepted; required), ``key`` (the gateway's own private
key: its identity on every peer; required), ``ca_key`` (the private key of the CA
that signs the users' per-hop certificates; required), ``bind`` (the local address
to connect from), ``connect_timeout``, ``keepalive_interval``,
``keepalive_count_max``; ``prometheus`` (``url``, ``job``, ``ssh_port``,
``interval``): more peers, the targets of one job of the facility's Prometheus.

Peer side: ``gateway_users``: the users (configured in ``users:`` with a gateway's
public key) who may read this host's change feed (``watch --json``). The gateway's
CA goes into ``ssh.trusted_user_ca_keys``, limited to the gateways' addresses with
``from="..."`` (docs/fleet.md). ``consrv fleet init`` prints all of these.
"""

import dataclasses
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pydantic
from pydantic import Field, StrictInt

from consrv.config.errors import Problem
from consrv.config.fields import Duration, PathValue, TcpEndpoint, UserName, checked, fail
from consrv.config.model import Endpoint
from consrv.config.values import parse_duration, parse_endpoint

# A gateway must answer a user within 5 s, so no wait on a peer may be longer.
MAX_CONNECT_TIMEOUT = 4.5


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


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError("expected an http:// or https:// URL (Prometheus' base URL)")
    if any(c.isspace() for c in value):
        raise ValueError("a URL has no spaces")
    return value


class RawPrometheus(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    url: Annotated[str, checked(_url)]
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


def resolve_fleet(
    raw: RawFleet | None, base_dir: Path, users: set[str]
) -> tuple[FleetConfig | None, list[Problem]]:
    """The section resolved: paths joined, ``peers_file`` read, names made unique."""
    if raw is None:
        return None, []
    problems: list[Problem] = []
    endpoints = [(f"fleet.peers[{i}]", ep) for i, ep in enumerate(raw.peers)]
    if raw.peers_file is not None:
        endpoints += _read_peers(base_dir / raw.peers_file, problems)
    problems += [
        Problem(f"fleet.gateway_users[{i}]", f"unknown user {user!r} (not in users:)")
        for i, user in enumerate(raw.gateway_users)
        if user not in users
    ]
    peers = _named(endpoints, problems)
    joined = {k: base_dir / getattr(raw, k) if getattr(raw, k) else None
              for k in ("known_hosts", "key", "ca_key")}  # fmt: skip
    config = FleetConfig(
        name=raw.name or socket.gethostname(), peers=tuple(peers),
        known_hosts=joined["known_hosts"], key=joined["key"], ca_key=joined["ca_key"],
        bind=raw.bind, connect_timeout=raw.connect_timeout,
        keepalive_interval=raw.keepalive_interval, keepalive_count_max=raw.keepalive_count_max,
        gateway_users=raw.gateway_users,
        prometheus=PrometheusPeers(**raw.prometheus.model_dump()) if raw.prometheus else None,
    )  # fmt: skip
    return config, problems


def _read_peers(path: Path, problems: list[Problem]) -> list[tuple[str, Endpoint]]:
    where = "fleet.peers_file"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(where, f"cannot read {path}: {exc}"))
        return []
    found = []
    for number, line in _lines(text):
        try:
            found.append((f"{where} ({path}:{number})", parse_endpoint(line)))
        except ValueError as exc:
            problems.append(Problem(where, f"{path}:{number}: {exc}"))
    return found


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            yield number, line


def _named(endpoints: list[tuple[str, Endpoint]], problems: list[Problem]) -> list[PeerAddress]:
    """Each peer's name: its host, or HOST:PORT where two peers share a host."""
    hosts = [ep.host for _, ep in endpoints]
    peers, seen = [], set()
    for where, ep in endpoints:
        name = ep.host if hosts.count(ep.host) == 1 else str(ep)
        if name in seen:
            problems.append(Problem(where, f"peer {str(ep)!r} is listed twice"))
            continue
        seen.add(name)
        peers.append(PeerAddress(name, ep))
    return peers
