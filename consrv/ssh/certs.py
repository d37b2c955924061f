"""What a key or certificate blob from an authentication request says: its CA, its key
id, and whether `Revoked` names any of them. Must not know users or sessions.

An OpenSSH certificate's serial and key id have no public accessor in asyncssh: they
are read through `consrv.ssh.compat` (the certificate-facts hook).
"""

from __future__ import annotations

from typing import Any, cast

import asyncssh
import asyncssh.public_key
from asyncssh.packet import PacketDecodeError

from consrv.revocation import Revoked
from consrv.ssh import compat


def _certificate(key_data: bytes) -> asyncssh.SSHCertificate | None:
    try:
        return asyncssh.public_key.decode_ssh_certificate(key_data)
    except (asyncssh.KeyImportError, PacketDecodeError):  # a plain key (or nothing)
        return None


def _ca(cert: asyncssh.SSHCertificate) -> bytes:
    # Public on the OpenSSH certificates decode_ssh_certificate returns, untyped on the base.
    ca: bytes = cast(Any, cert).signing_key.public_data
    return ca


def _key_id(cert: asyncssh.SSHCertificate) -> str:
    key_id: str | bytes = compat.certificate_key_id(cert)
    return key_id.decode("utf-8", "replace") if isinstance(key_id, bytes) else str(key_id)


def certificate_revoked(revoked: Revoked, cert: asyncssh.SSHCertificate) -> bool:
    """The certificate's key, its CA, its serial or its key id is revoked."""
    if revoked.key(cert.key.public_data) or revoked.key(_ca(cert)):
        return True
    return revoked.serial(compat.certificate_serial(cert)) or revoked.key_id(_key_id(cert))


def revoked_blob(revoked: Revoked, key_data: bytes) -> bool:
    """A key or certificate as it arrives in an authentication request is revoked."""
    if not revoked:
        return False
    cert = _certificate(key_data)
    return revoked.key(key_data) if cert is None else certificate_revoked(revoked, cert)


def signing_ca(key_data: bytes) -> bytes | None:
    """The public data of the CA that signed a certificate blob (None: not a certificate)."""
    cert = _certificate(key_data)
    return None if cert is None else _ca(cert)


def certificate_key_id(key_data: bytes) -> str | None:
    """The key id of a certificate blob (None: not a certificate). A fleet gateway's
    certificates carry GATEWAY:SESSION there (the ``via`` of the audit log)."""
    cert = _certificate(key_data)
    return None if cert is None else _key_id(cert)
