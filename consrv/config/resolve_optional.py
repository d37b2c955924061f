"""Resolving the optional sections: ``fleet:``, ``web:``, ``identity:``, ``pva:``.

Each raw model of schema_optional.py → its dataclass of model_optional.py, with the
problems found (files that cannot be read, names given twice, p4p missing); the
`Resolver` (resolve.py) calls them and collects the problems.
"""

import dataclasses
import importlib.util
import re
import socket
import types
from collections.abc import Iterator
from pathlib import Path

from consrv.config.errors import Problem
from consrv.config.model_optional import (
    FleetConfig,
    IdentityConfig,
    PeerAddress,
    PrometheusPeers,
    PvaConfig,
    PvaConsole,
    WebConfig,
    WebLimits,
    WebTls,
)
from consrv.config.schema_optional import (
    SEVERITIES,
    RawFleet,
    RawIdentity,
    RawPva,
    RawPvaConsole,
    RawWeb,
)
from consrv.config.values import Endpoint, parse_endpoint
from consrv.names import InvalidName, validate_console_name

# -- fleet: ---------------------------------------------------------------------------


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


# -- web: -----------------------------------------------------------------------------


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


# -- identity: ------------------------------------------------------------------------


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
    owner = raw.key_owner_command or ()
    if owner and not command:
        problems.append(
            Problem(
                "identity.key_owner_command",
                "set without ssh.authorized_keys_command (it only suggests a user: that"
                " user's keys, from the keys command, decide)",
            )
        )
    user_tokens = [arg for arg in owner if re.search(r"%[uUh]", arg.replace("%%", ""))]
    if user_tokens:
        problems.append(
            Problem(
                "identity.key_owner_command",
                f"{user_tokens[0]!r}: %u, %U and %h are not known when the command is asked"
                " whose key it is (use %f, %t or %k)",
            )
        )
    return (
        IdentityConfig(
            owner_command=owner,
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


# -- pva: ----------------------------------------------------------------------------


INSTALL_HINT = "pip install 'consrv[pva]' (consrv from its .deb or .rpm: install consrv-pva)"


def _merge(raw: RawPvaConsole, base: PvaConsole) -> PvaConsole:
    alarms = {k: SEVERITIES[v] for k, v in raw.alarms.model_dump().items() if v is not None}
    return PvaConsole(
        silent_after=raw.silent_after if raw.silent_after is not None else base.silent_after,
        crash_loop=raw.crash_loop if raw.crash_loop is not None else base.crash_loop,
        alarms=dataclasses.replace(base.alarms, **alarms),
        text=raw.text if raw.text is not None else base.text,
    )


def p4p_installed() -> bool:
    try:
        return importlib.util.find_spec("p4p") is not None
    except ImportError:  # a finder that refuses it
        return False


def default_host() -> str:
    """This machine's short host name, as PVs carry it."""
    return socket.gethostname().split(".")[0]


def resolve_pva(raw: RawPva | None) -> tuple[PvaConfig | None, list[Problem]]:
    """The ``pva:`` section resolved; p4p missing or a bad host name are problems."""
    if raw is None:
        return None, []
    problems: list[Problem] = []
    if not p4p_installed():
        problems.append(Problem("pva", f"needs p4p, which is not installed: {INSTALL_HINT}"))
    host = raw.host if raw.host is not None else default_host()
    try:
        validate_console_name(host)
    except InvalidName as exc:
        problems.append(Problem("pva.host", f"{exc} (set pva.host to a valid name)"))
    defaults = _merge(raw, PvaConsole())
    consoles = {name: _merge(entry, defaults) for name, entry in raw.consoles.items()}
    pva = PvaConfig(
        host=host,
        prefix=raw.prefix,
        host_prefix=raw.host_prefix,
        interfaces=raw.interfaces,
        server_port=raw.server_port,
        broadcast_port=raw.broadcast_port,
        own_process=raw.own_process,
        defaults=defaults,
        consoles=types.MappingProxyType(consoles),
    )
    return pva, problems
