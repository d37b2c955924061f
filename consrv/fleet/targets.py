"""Peers from the facility's Prometheus: the targets of one job, read from its HTTP API.

Owns reading ``GET /api/v1/targets?state=active`` (every target Prometheus scrapes,
up or down: a down peer is still a peer, reported missing) and turning the targets
of ``fleet.prometheus.job`` into peers: the host of each target's ``instance``
label, and its SSH port from the target's ``ssh_port`` label if it has one (a
relabelling rule can set it), else ``fleet.prometheus.ssh_port``. A failed read
keeps the peers last read: Prometheus being away never empties the directory.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import trio

logger = logging.getLogger(__name__)

PORT_LABEL = "ssh_port"
MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class TargetSource:
    url: str  # Prometheus' base URL: http://prometheus:9090
    job: str
    ssh_port: int = 22
    interval: float = 30.0
    timeout: float = 4.0


def peers_of(data: Any, job: str, ssh_port: int) -> list[tuple[str, str]]:
    """``(name, HOST:PORT)`` for every active target of ``job`` in an API answer."""
    if not isinstance(data, dict) or data.get("status") != "success":
        raise ValueError("not a successful /api/v1/targets answer")
    found: dict[str, str] = {}
    for target in data["data"]["activeTargets"]:
        labels = target.get("labels", {})
        if labels.get("job") != job or "instance" not in labels:
            continue
        host = _host(str(labels["instance"]))
        port = int(labels.get(PORT_LABEL, ssh_port))
        if not 0 < port < 65536:
            raise ValueError(f"target {labels['instance']!r}: bad {PORT_LABEL} {port}")
        found.setdefault(host, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return sorted(found.items())


def _host(instance: str) -> str:
    """The host of an ``instance`` label: ``iochost-17:9108`` → ``iochost-17``."""
    if instance.startswith("["):
        return instance[1:].split("]", 1)[0]
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def targets_url(base: str) -> str:
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected an http(s) URL, not {base!r}")
    return urllib.parse.urljoin(base.rstrip("/") + "/", "api/v1/targets?state=active")


def _get(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) only: targets_url checks
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
        return json.loads(answer.read(MAX_BYTES))


async def read_peers(source: TargetSource) -> list[tuple[str, str]]:
    """The job's peers now. Raises OSError or ValueError (the caller keeps the old ones)."""
    url = targets_url(source.url)
    with trio.fail_after(source.timeout + 1):
        data = await trio.to_thread.run_sync(_get, url, source.timeout, abandon_on_cancel=True)
    return peers_of(data, source.job, source.ssh_port)


def describe(peers: Iterable[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in peers) or "none"
