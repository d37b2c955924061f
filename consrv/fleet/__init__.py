"""The fleet front: one namespace over many consrv hosts (docs/fleet.md).

A front like ``ssh/``: it stands on the host layer (``contracts``, ``host``, the
command grammar) and never imports another front. daemon.py wires a `Gateway` in as the SSH front's
``contracts.Commands`` when the config has peers, and hands it each reloaded config
(`Identity` read first, so a key that cannot be read fails the reload whole).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import asyncssh

from consrv.config import Config, FleetConfig
from consrv.contracts import Commands
from consrv.fleet.gateway import Gateway, Identity
from consrv.fleet.identity import Minter
from consrv.fleet.link import LinkSettings, Tune
from consrv.fleet.targets import TargetSource
from consrv.host import Host

__all__ = ["Gateway", "GatewayKeyError", "Identity", "build_gateway", "prepare_reload"]

logger = logging.getLogger(__name__)


class GatewayKeyError(ValueError):
    """A gateway key or CA key that cannot be read (or others may read): named, with why."""


def read_identity(config: Config) -> Identity:
    """The gateway's key, CA and link settings from ``config``; GatewayKeyError names a
    key that cannot be read (a reload keeps what it has)."""
    fleet = config.fleet
    assert fleet is not None
    assert fleet.gateway
    assert fleet.key is not None
    assert fleet.ca_key is not None
    assert fleet.known_hosts is not None
    settings = LinkSettings(
        key=_read_key("fleet.key", fleet.key),
        known_hosts=_read_known_hosts(fleet.known_hosts),
        login=config.ssh.observer_login,
        bind=fleet.bind,
        connect_timeout=fleet.connect_timeout,
        keepalive_interval=fleet.keepalive_interval,
        keepalive_count_max=fleet.keepalive_count_max,
    )
    return Identity(settings, Minter(_read_key("fleet.ca_key", fleet.ca_key), fleet.name))


def _read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """``fleet.known_hosts``, parsed once for every link (a reload reads it again)."""
    try:
        return asyncssh.read_known_hosts(str(path))
    except OSError as exc:
        why = exc.strerror or str(exc)
    except (asyncssh.KeyImportError, ValueError) as exc:
        why = str(exc)
    raise GatewayKeyError(f"fleet.known_hosts: {path}: {why}")


def _read_key(name: str, path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(path)
    except OSError as exc:
        why = exc.strerror or str(exc)
    except asyncssh.KeyImportError as exc:
        why = str(exc)
    raise GatewayKeyError(f"{name}: {path}: {why}")


def build_gateway(
    config: Config, host: Host, local: Commands, tune: Tune | None = None
) -> Gateway | None:
    """The gateway the config asks for (``fleet.peers``), or None. Reads its keys now.
    ``tune``: done to every connection it makes to a peer (link.Tune)."""
    fleet = config.fleet
    if fleet is None or not fleet.gateway:
        return None
    identity = read_identity(config)
    gateway = Gateway(
        host, local, fleet.name, static_peers(fleet), identity.settings, identity.minter,
        tune=tune,
    )  # fmt: skip
    gateway.source = _source(fleet)
    return gateway


def prepare_reload(gateway: Gateway | None, config: Config) -> Callable[[], None]:
    """What a reload to ``config`` does to the gateway: checked (its keys read) now,
    applied when the returned function is called. Raises GatewayKeyError."""
    fleet = config.fleet
    wants = fleet is not None and fleet.gateway
    if gateway is None or fleet is None or not wants:
        if (gateway is None) == wants:
            change = "becomes a gateway" if wants else "stops being a gateway"
            logger.warning("reload: fleet: this consrv %s when it restarts", change)
        return lambda: None
    identity = read_identity(config)
    if fleet.name != gateway.name or _source(fleet) != gateway.source:
        logger.warning("reload: fleet.name or fleet.prometheus changed: it takes effect "
                       "when consrv restarts")  # fmt: skip
    peers = static_peers(fleet)
    return lambda: gateway.reconfigure(peers, identity)


def static_peers(fleet: FleetConfig) -> list[tuple[str, str]]:
    """``fleet.peers`` and ``peers_file``: (name, HOST:PORT) each."""
    return [(peer.name, peer.address) for peer in fleet.peers]


def _source(fleet: FleetConfig) -> TargetSource | None:
    p = fleet.prometheus
    if p is None:
        return None
    return TargetSource(p.url, p.job, p.ssh_port, p.interval)
