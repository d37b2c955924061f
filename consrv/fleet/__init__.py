"""The fleet front: one namespace over many consrv hosts (docs/fleet.md).

A front like ``ssh/``: it stands on the core (service, views, config) and never
imports another front. daemon.py wires a `Gateway` in as the SSH front's
``service.Commands`` when the config has peers.
"""

from __future__ import annotations

import asyncssh

from consrv.config import Config
from consrv.fleet.gateway import Gateway
from consrv.fleet.identity import Minter
from consrv.fleet.link import LinkSettings
from consrv.fleet.targets import TargetSource
from consrv.service import Service

__all__ = ["Gateway", "build_gateway"]


def build_gateway(config: Config, service: Service) -> Gateway | None:
    """The gateway the config asks for (``fleet.peers``), or None. Reads its keys now."""
    fleet = config.fleet
    if fleet is None or not fleet.gateway:
        return None
    assert fleet.key is not None
    assert fleet.ca_key is not None
    assert fleet.known_hosts is not None
    settings = LinkSettings(
        key=asyncssh.read_private_key(fleet.key),
        known_hosts=fleet.known_hosts,
        login=config.ssh.observer_login,
        bind=fleet.bind,
        connect_timeout=fleet.connect_timeout,
        keepalive_interval=fleet.keepalive_interval,
        keepalive_count_max=fleet.keepalive_count_max,
    )
    minter = Minter(asyncssh.read_private_key(fleet.ca_key), fleet.name)
    peers = [(peer.name, peer.address) for peer in fleet.peers]
    gateway = Gateway(service, fleet.name, peers, settings, minter)
    if fleet.prometheus is not None:
        p = fleet.prometheus
        gateway.source = TargetSource(p.url, p.job, p.ssh_port, p.interval)
    return gateway
