"""SSH keys on disk: the server's host key (made on first start) and new ed25519 key pairs.

A private key that others may read is refused, as sshd refuses an "UNPROTECTED
PRIVATE KEY FILE" (its StrictModes check).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


class UnprotectedKeyError(PermissionError):
    """A private key file that other users may read or change."""


def key_file_problem(path: Path) -> str | None:
    """Why the private key at ``path`` must not be used, or None (also when it is missing).

    sshd's rule: a key file owned by the user running the server must give the group
    and others nothing (0600 or 0400); one owned by another user (root:consrv 0640,
    say) may be group-readable, never world-readable or writable.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    mode = stat.S_IMODE(st.st_mode)
    exposed = mode & 0o077 if st.st_uid == os.getuid() else mode & 0o007 | mode & 0o020
    if not exposed:
        return None
    return (
        f"{path}: UNPROTECTED PRIVATE KEY FILE: permissions {mode:04o} let other users "
        f"read it; consrv will not use it (chmod 600 {path})"
    )


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key at ``path``; create an ed25519 key there if it is missing.

    Raises UnprotectedKeyError for a key others may read (see `key_file_problem`).
    """
    if not path.exists():
        key = write_new_key(path, "consrv host key")
        logger.info("generated SSH host key %s (%s)", path, key.get_fingerprint())
    problem = key_file_problem(path)
    if problem is not None:
        raise UnprotectedKeyError(problem)
    return asyncssh.read_private_key(path)


def write_new_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """A new ed25519 key pair: the private key at ``path`` (0600), the public at ``path.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: never overwrite a key another process created meanwhile.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key


class HostCertificateError(OSError):
    """``ssh.host_certificate`` is no valid OpenSSH host certificate of ``ssh.host_key``
    (an OSError, as a missing file is: `consrv serve` says "cannot serve: ..." and exits)."""


def read_host_certificate(path: Path, key: asyncssh.SSHKey) -> asyncssh.SSHCertificate:
    """The OpenSSH host certificate at ``path`` (``ssh-keygen -h -s CA``) of host ``key``.

    Raises HostCertificateError saying why not: unreadable, not an OpenSSH
    certificate, a user certificate, expired or not yet valid, or of another key
    (sshd's ``HostCertificate`` must match its ``HostKey`` too).
    """
    try:
        cert = asyncssh.read_certificate(path)
    except (OSError, asyncssh.KeyImportError, ValueError) as exc:
        raise HostCertificateError(f"{path}: not an OpenSSH certificate: {exc}") from None
    if not isinstance(cert, asyncssh.public_key.SSHOpenSSHCertificate):
        raise HostCertificateError(f"{path}: an X.509 certificate, not an OpenSSH one")
    try:
        cert.validate(asyncssh.public_key.CERT_TYPE_HOST, None)
    except ValueError as exc:  # asyncssh says which: type, not yet valid, expired
        raise HostCertificateError(f"{path}: {exc} (a host certificate is needed: "
                                   "ssh-keygen -h -s CA ...)") from None  # fmt: skip
    if cert.key.public_data != key.public_data:
        raise HostCertificateError(
            f"{path}: certifies {cert.key.get_fingerprint()}, not the host key "
            f"({key.get_fingerprint()})"
        )
    return cert


def load_host_keys(
    key_path: Path, cert_path: Path | None
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHCertificate]]:
    """asyncssh's ``server_host_keys`` and ``server_host_certs``: the host key (made if
    missing) and its certificate, if one is configured. The key is offered with and
    without the certificate, as sshd does: clients that trust the CA check the
    certificate, others the plain key."""
    key = load_or_create_host_key(key_path)
    certs = [read_host_certificate(cert_path, key)] if cert_path is not None else []
    return [key], certs


def host_certificate_problem(key_path: Path, cert_path: Path | None) -> str | None:
    """Why ``consrv serve`` would refuse the certificate (check-config says it), or None.

    Nothing to say while the host key does not exist yet: it is made at first start,
    and a certificate can only be signed after that."""
    if cert_path is None or not key_path.exists():
        return None
    try:
        read_host_certificate(cert_path, asyncssh.read_private_key(key_path))
    except HostCertificateError as exc:
        return str(exc)
    except (OSError, asyncssh.KeyImportError) as exc:
        return f"cannot read the host key {key_path}: {exc}"
    return None
