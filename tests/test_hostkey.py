"""The SSH host key: created on first start with mode 0600, then reused."""

from __future__ import annotations

import stat
from pathlib import Path

from consrv.ssh.keys import load_or_create_host_key


def test_host_key_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ssh_host_ed25519_key"
    key = load_or_create_host_key(path)
    assert key.get_algorithm() == "ssh-ed25519"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.with_name(path.name + ".pub").read_bytes() == key.export_public_key()
    again = load_or_create_host_key(path)
    assert again.public_data == key.public_data
