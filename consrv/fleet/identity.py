"""Per-hop identity: the short-lived user certificate a gateway mints for one session.

Owns the gateway's CA and what a minted certificate says: the user as its only
principal, valid for `VALIDITY` seconds (from a minute ago, for clock skew),
``key_id`` = ``GATEWAY:SESSION`` (the peer's audit log records it as ``via``),
usable only from the gateway's own address (``source-address``), no forwarding
of any kind, a pty allowed. A fresh key pair per session: nothing is reused.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import asyncssh

VALIDITY = 120.0
SKEW = 60.0
KEY_TYPE = "ssh-ed25519"

_sessions = itertools.count(1)


@dataclass(frozen=True)
class Credential:
    """A key pair and its certificate, as asyncssh's ``client_keys`` wants them."""

    key: asyncssh.SSHKey
    certificate: asyncssh.SSHCertificate
    key_id: str


class Minter:
    """Signs one certificate per proxied session with the gateway's CA."""

    def __init__(self, ca: asyncssh.SSHKey, gateway: str) -> None:
        self.ca, self.gateway = ca, gateway

    def mint(self, user: str, source_address: str | None, now: float | None = None) -> Credential:
        now = time.time() if now is None else now
        key = asyncssh.generate_private_key(KEY_TYPE)
        key_id = f"{self.gateway}:{next(_sessions)}"
        certificate = self.ca.generate_user_certificate(
            key, key_id, principals=[user],
            valid_after=int(now - SKEW), valid_before=int(now + VALIDITY),
            source_address=[source_address] if source_address else None,
            permit_x11_forwarding=False, permit_agent_forwarding=False,
            permit_port_forwarding=False, permit_pty=True, permit_user_rc=False,
            touch_required=False,
        )  # fmt: skip
        return Credential(key, certificate, key_id)
