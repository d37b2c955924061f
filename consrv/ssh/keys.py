"""SSH keys on disk: the server's host key (made on first start) and new ed25519 key pairs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key at ``path``; create an ed25519 key there if it is missing."""
    if not path.exists():
        key = write_new_key(path, "consrv host key")
        logger.info("generated SSH host key %s (%s)", path, key.get_fingerprint())
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
