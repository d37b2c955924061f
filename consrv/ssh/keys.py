"""The server's host key: loaded, or generated (ed25519, mode 0600) on first start."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncssh

logger = logging.getLogger(__name__)


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """Read the host key at ``path``; create an ed25519 key there if it is missing."""
    if not path.exists():
        _create(path)
    return asyncssh.read_private_key(path)


def _create(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="consrv host key")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: never overwrite a key another process created meanwhile.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    logger.info("generated SSH host key %s (%s)", path, key.get_fingerprint())
