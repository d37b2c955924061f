"""OpenSSH host certificates (``ssh.host_certificate``): one ``@cert-authority`` line
trusts every consrv host, with the real OpenSSH client and ``StrictHostKeyChecking=yes``.

Real ``ssh-keygen`` makes the CA, the host keys and signs them (``-h``); the client
has no line for the host itself, only the CA's, as a user's known_hosts would.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Consrv, make_key, write_config

pytestmark = pytest.mark.integration


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)  # fmt: skip
    return path


def sign(ca: Path, key: Path, *flags: str, principal: str = "127.0.0.1") -> Path:
    """``ssh-keygen -s CA``: a host certificate of ``key`` (``-h`` in ``flags``) for 127.0.0.1."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), *flags, "-I", f"{key.name}-id",
                    "-n", principal, "-V", "-5m:+1h", f"{key}.pub"], check=True)  # fmt: skip
    return Path(f"{key}-cert.pub")


def fingerprint(key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return out.split()[1]


class Site:
    """consrv with one user and no consoles; its host key and certificate change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = keygen(root / "host_ca")
        self.user = make_key(root, "alice")
        self.config = root / "consrv.yaml"
        self.known_hosts = root / "known_hosts"
        # What a user keeps: the CA, for every host. Nothing about this host itself.
        self.known_hosts.write_text(f"@cert-authority * {(root / 'host_ca.pub').read_text()}")

    def write(self, host_key: Path, host_certificate: Path | None) -> None:
        ssh = {"listen": ["127.0.0.1:0"], "host_key": str(host_key)}
        if host_certificate is not None:
            ssh["host_certificate"] = str(host_certificate)
        write_config(self.config, {"ssh": ssh, "users": {"alice": {"keys": [self.user.public]}}})

    def login(self, port: int, *options: str) -> subprocess.CompletedProcess[str]:
        """``ssh ... list``; ``options`` come first: for ssh, the first value given wins."""
        argv = ["ssh", "-T", "-p", str(port), "-i", str(self.user.private), *options,
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5",
                "-o", f"UserKnownHostsFile={self.known_hosts}",
                "console@127.0.0.1", "list"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path)


@pytest.fixture
def running(site: Site) -> Iterator[Consrv]:
    """consrv with a host key but no certificate yet (the test adds it by reload)."""
    site.write(keygen(site.root / "host_a"), None)
    consrv = Consrv(site.config, site.root).start()
    try:
        yield consrv
    finally:
        consrv.stop()


def test_a_fresh_host_is_trusted_by_the_cas_line_alone(site: Site) -> None:
    key = keygen(site.root / "host_key")
    site.write(key, sign(site.ca, key, "-h"))
    consrv = Consrv(site.config, site.root).start()
    try:
        result = site.login(consrv.port)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0].split()[0] == "NAME"
    finally:
        consrv.stop()


def test_a_reload_presents_a_new_certificate_and_key_and_a_bad_one_keeps_them(
    site: Site, running: Consrv
) -> None:
    assert running.process is not None
    refused = site.login(running.port)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr

    # A fresh key and its certificate, by reload (SIGHUP), without a restart.
    new_key = keygen(site.root / "host_b")
    site.write(new_key, sign(site.ca, new_key, "-h"))
    running.process.send_signal(signal.SIGHUP)
    running.wait_for_log(re.escape(f"host key {fingerprint(new_key)}, certificate ".encode()))
    accepted = site.login(running.port)
    assert accepted.returncode == 0, accepted.stderr
    plain = site.root / "known_hosts_b"  # the key itself is offered too, without the cert
    plain.write_text(f"[127.0.0.1]:{running.port} {(site.root / 'host_b.pub').read_text()}")
    assert site.login(running.port, "-o", f"UserKnownHostsFile={plain}",
                      "-o", "HostKeyAlgorithms=ssh-ed25519").returncode == 0  # fmt: skip

    # A user certificate where a host certificate belongs: logged, the running pair stays.
    user_cert_key = keygen(site.root / "host_c")
    site.write(user_cert_key, sign(site.ca, user_cert_key, principal="alice"))
    running.process.send_signal(signal.SIGHUP)
    running.wait_for_log(rb"the host key and certificate stay as they were: .*host_c-cert\.pub"
                         rb": Invalid certificate type")  # fmt: skip
    assert site.login(running.port).returncode == 0


@pytest.mark.parametrize(
    ("flags", "signed", "message"),
    [
        (("-h",), "other", "certifies SHA256:"),
        ((), "host_key", "Invalid certificate type (a host certificate is needed"),
    ],
)
def test_check_config_refuses_a_certificate_serve_could_not_use(
    site: Site, flags: tuple[str, ...], signed: str, message: str
) -> None:
    key = keygen(site.root / "host_key")
    cert = sign(site.ca, keygen(site.root / signed) if signed == "other" else key, *flags)
    site.write(key, cert)
    argv = [sys.executable, "-m", "consrv", "check-config", "--config", str(site.config)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert f"ssh.host_certificate: {cert}: {message}" in result.stderr + result.stdout


def test_serve_refuses_to_start_with_a_certificate_of_another_key(site: Site) -> None:
    """What the unit's ExecStartPre check would have caught: one line, exit status 1."""
    key = keygen(site.root / "host_key")
    other = keygen(site.root / "other")
    site.write(key, sign(site.ca, other, "-h"))
    consrv = Consrv(site.config, site.root).spawn()
    assert consrv.process is not None
    assert consrv.process.wait(timeout=30) == 1
    assert f"ERROR consrv.daemon: cannot serve: {other}-cert.pub: certifies SHA256:" in (
        consrv.stderr()
    )
    assert "Traceback" not in consrv.stderr()
