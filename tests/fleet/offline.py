"""A gateway with no network: its directory fed by hand (unit tests, metrics, alerts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncssh

from consrv.commands import Shell
from consrv.config import parse_config
from consrv.fleet.gateway import Gateway
from consrv.fleet.identity import Minter
from consrv.fleet.link import LinkSettings
from consrv.host import Host
from consrv.registry import Registry


def line(**message: Any) -> bytes:
    return json.dumps({"schema": 1, **message}).encode()


def entry(name: str, **fields: Any) -> dict[str, Any]:
    """A console's feed entry, as consrv/host/feed.py writes it."""
    return {
        "name": name,
        "state": "up",
        "writer": None,
        "viewers": 0,
        "write": "exclusive",
        "who": [],
        "rw": ["alice"],
        "ro": ["*"],
        "operate": [],
        **fields,
    }


NO_HOSTS = asyncssh.import_known_hosts("")  # a gateway that trusts no peer's host key


def offline_gateway(now: float = 1000.0) -> Gateway:
    """Two peers: iochost-17 up with ``ioc-a``, iochost-18 never reached."""
    host = Host(Registry(parse_config({}, Path("/"))))
    settings = LinkSettings(asyncssh.generate_private_key("ssh-ed25519"), NO_HOSTS)
    minter = Minter(asyncssh.generate_private_key("ssh-ed25519"), "gw")
    peers = [("iochost-17", "127.0.0.17:22"), ("iochost-18", "127.0.0.18:22")]
    gateway = Gateway(host, Shell(host), "gw", peers, settings, minter, clock=lambda: now)
    directory, peer = gateway.directory, gateway.directory.peers["iochost-17"]
    directory.connected(peer, now)
    for message in (
        line(type="hello", users={"alice": []}),
        line(type="console", console=entry("ioc-a")),
        line(type="sync"),
    ):
        directory.receive(peer, message, now)
    return gateway
