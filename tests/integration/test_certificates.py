"""OpenSSH user certificates: a trusted CA's certificate logs in as its principal.

Real `ssh-keygen` makes the CA and signs the certificates; the real OpenSSH client
logs in with them (it picks up KEY-cert.pub next to KEY).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Consrv, write_config
from tests.sshclients import ssh_argv

pytestmark = pytest.mark.integration


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)  # fmt: skip
    return path


def sign(ca: Path, key: Path, principal: str, validity: str = "-5m:+1h") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", f"{principal}-id", "-n", principal,
                    "-V", validity, str(key) + ".pub"], check=True)  # fmt: skip
    return Path(str(key) + "-cert.pub")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Consrv, Path]]:
    ca = keygen(tmp_path / "ca")
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {
                "listen": ["127.0.0.1:0"],
                "host_key": str(tmp_path / "host_key"),
                "trusted_user_ca_keys": [(tmp_path / "ca.pub").read_text().strip()],
            },
            "users": {"alice": {}, "bob": {}},  # no keys: certificates only
            "consoles": {
                "alices-ioc": {"tcp": "127.0.0.1:9", "ro": ["alice"]},
                "bobs-ioc": {"tcp": "127.0.0.1:9", "ro": ["bob"]},
            },
        },
    )
    consrv = Consrv(config, tmp_path).start()
    try:
        yield consrv, ca
    finally:
        consrv.stop()


def login(consrv: Consrv, key: Path, command: str) -> subprocess.CompletedProcess[str]:
    argv = ssh_argv(consrv.port, key, "console", command, tty=False)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)


def test_a_certificate_logs_in_as_its_principal(
    server: tuple[Consrv, Path], tmp_path: Path
) -> None:
    consrv, ca = server
    key = keygen(tmp_path / "id_alice")
    sign(ca, key, "alice")
    result = login(consrv, key, "list")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["alices-ioc"]
    consrv.wait_for_log(rb"login alice as console")


@pytest.mark.parametrize(
    ("principal", "validity", "ca_name"),
    [
        ("alice", "-2d:-1d", "ca"),  # expired
        ("alice", "+1d:+2d", "ca"),  # not yet valid
        ("alice", "-5m:+1h", "other-ca"),  # signed by a CA consrv does not trust
        ("mallory", "-5m:+1h", "ca"),  # a principal that is no configured user
    ],
)
def test_bad_certificates_are_refused(
    server: tuple[Consrv, Path], tmp_path: Path, principal: str, validity: str, ca_name: str
) -> None:
    consrv, trusted = server
    ca = trusted if ca_name == "ca" else keygen(tmp_path / ca_name)
    key = keygen(tmp_path / "id_user")
    sign(ca, key, principal, validity)
    result = login(consrv, key, "list")
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    assert b"login " not in consrv.stderr().encode().split(b"ssh listening", 1)[1]
