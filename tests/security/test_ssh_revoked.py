"""Revoked keys and certificates (issue 13: certificate revocation, sshd's RevokedKeys).

``ssh.revoked_keys`` names a text file of public keys (a user's, or a CA's: all
its certificates), ``serial: N`` and ``id: KEY_ID`` lines. It is read with the
config and again on every reload; a revoked key or certificate cannot log in,
and a session that logged in with one ends at the reload that revokes it. The
clients are the real OpenSSH client and certificates made by ``ssh-keygen``.

Policy: loopback only, port 0, every wait bounded; consrv and procServ are
stopped by the ``site`` fixture.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from tests.integration.test_metrics_live import key, scrape
from tests.reliability.conftest import Site
from tests.reliability.probes import CAT
from tests.sshclients import scripted_ssh, ssh_argv

pytestmark = pytest.mark.integration

IOC = "rev-ioc"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True, timeout=10)  # fmt: skip
    return path


def sign(ca: Path, user_key: Path, principal: str, serial: int) -> None:
    """``USER_KEY-cert.pub``, which ``ssh -i USER_KEY`` offers by itself."""
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", f"{principal}-{serial}",
                    "-n", principal, "-z", str(serial), "-V", "-5m:+1h", str(user_key) + ".pub"],
                   check=True, timeout=10)  # fmt: skip


def login(site: Site, private: Path, command: str = "list") -> subprocess.CompletedProcess[str]:
    argv = ssh_argv(site.port, private, "console", command, tty=False)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=20)


def start(site: Site, revoked: str, **ssh: Any) -> int:
    (site.root / "revoked_keys").write_text(revoked)
    site.procserv(IOC, CAT)
    site.start(
        {IOC: site.socket_of(IOC)},
        ssh={"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"),
             "revoked_keys": str(site.root / "revoked_keys"), **ssh},
        metrics={"listen": "127.0.0.1:0"},
        audit_log=str(site.root / "audit.jsonl"),
    )  # fmt: skip
    return site.consrv.metrics_port()


async def test_a_revoked_key_is_refused_and_a_reload_ends_its_sessions(site: Site) -> None:
    metrics = start(site, f"# revoked\n{site.keys['alice'].public}\n")
    refused = await trio.to_thread.run_sync(login, site, site.key("alice"))
    assert refused.returncode == 255, refused
    assert "Permission denied" in refused.stderr, refused.stderr
    allowed = await trio.to_thread.run_sync(login, site, site.key("bob"))
    assert allowed.returncode == 0, allowed
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, site.key("bob"), "console", IOC, pty=True) as bob,
    ):
        await bob.expect(rb"attached to rev-ioc", stderr=True)
        with (site.root / "revoked_keys").open("a") as file:
            file.write(site.keys["bob"].public + "\n")
        assert site.consrv.process is not None
        site.consrv.process.send_signal(signal.SIGHUP)
        await bob.expect(rb"your key was revoked", stderr=True)
        await bob.wait_closed()
    again = await trio.to_thread.run_sync(login, site, site.key("bob"))
    assert again.returncode == 255, again
    got = await scrape(metrics)
    assert got[key("consrv_ssh_auth_attempt_failures_total", reason="revoked")] >= 2
    audit = [json.loads(line) for line in (site.root / "audit.jsonl").read_text().splitlines()]
    reasons = [r["reason"] for r in audit if r["event"] == "auth_failed"]
    assert reasons.count("revoked") >= 2, audit


@pytest.mark.parametrize(
    ("revoked", "refused"),
    [
        ("serial: 42", {42}),
        ("serial: 40-45", {42, 43}),
        ("id: alice-43", {43}),
        ("CA", {42, 43, 47}),
    ],
)
def test_certificates_are_revoked_by_serial_id_or_ca(
    site: Site, revoked: str, refused: set[int]
) -> None:
    ca = keygen(site.root / "ca")
    if revoked == "CA":
        revoked = (site.root / "ca.pub").read_text()
    start(site, revoked + "\n", trusted_user_ca_keys=[(site.root / "ca.pub").read_text().strip()])
    for serial in (42, 43, 47):
        user_key = keygen(site.root / f"user{serial}")
        sign(ca, user_key, "alice", serial)
        result = login(site, user_key)
        if serial in refused:
            assert result.returncode == 255, (serial, result)
        else:
            assert result.returncode == 0, (serial, result)
            assert IOC in result.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"ssh-ed25519 notbase64\n", "line 1: expected an OpenSSH public key"),
        (b"# ok\nserial: x\n", "line 2: expected serial: N"),
        (b"SSHKRL\n\x00\x00\x00\x01", "binary KRLs are not read"),
    ],
)
def test_a_bad_revocation_file_is_a_config_error(site: Site, content: bytes, problem: str) -> None:
    (site.root / "revoked_keys").write_bytes(content)
    ssh = {"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"),
           "revoked_keys": str(site.root / "revoked_keys")}  # fmt: skip
    config = site.config({}, ssh=ssh)
    checked = subprocess.run(
        [sys.executable, "-m", "consrv", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert checked.returncode == 2, checked
    assert f"ssh.revoked_keys: {problem}" in checked.stderr, checked.stderr


async def test_a_reload_that_drops_a_ca_ends_the_sessions_it_certified(site: Site) -> None:
    """Two trusted CAs; a reload keeps one: only the other one's certificates are sent away."""
    old_ca, kept_ca = keygen(site.root / "old_ca"), keygen(site.root / "kept_ca")
    alice, bob = keygen(site.root / "alice_cert_key"), keygen(site.root / "bob_cert_key")
    sign(old_ca, alice, "alice", 1)
    sign(kept_ca, bob, "bob", 2)
    cas = [(ca.with_suffix(".pub")).read_text().strip() for ca in (old_ca, kept_ca)]
    start(site, "", trusted_user_ca_keys=cas)
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(site.port, alice, "console", IOC, pty=True) as by_old,
        scripted_ssh(site.port, bob, "console", IOC, pty=True) as by_kept,
    ):
        await by_old.expect(rb"attached to rev-ioc", stderr=True)
        await by_kept.expect(rb"attached to rev-ioc", stderr=True)
        site.config(
            {IOC: site.socket_of(IOC)},
            ssh={"listen": ["127.0.0.1:0"], "host_key": str(site.root / "host_key"),
                 "revoked_keys": str(site.root / "revoked_keys"),
                 "trusted_user_ca_keys": cas[1:]},
            metrics={"listen": "127.0.0.1:0"},
            audit_log=str(site.root / "audit.jsonl"),
        )  # fmt: skip
        assert site.consrv.process is not None
        site.consrv.process.send_signal(signal.SIGHUP)
        await by_old.expect(
            rb"the CA that signed your certificate is no longer trusted", stderr=True
        )
        await by_old.wait_closed()
        by_kept.stderr.clear()
        by_kept.send(b"\x05cw")  # ^Ecw: who, answered only to a live session
        await by_kept.expect(rb"bob", stderr=True)
        assert b"alice" not in by_kept.stderr  # her session is gone from the console
        assert not by_kept.collector.closed.is_set()
    refused = await trio.to_thread.run_sync(login, site, alice)
    assert refused.returncode == 255, refused
