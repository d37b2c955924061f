"""Users from a real sssd: what most facilities run, against this module's own slapd.

Real parts: Debian's ``slapd`` (tests/slapd.py) with posixAccount / posixGroup entries
and sshPublicKey; Debian's ``sssd`` with the LDAP provider, in the foreground with a
config file this module writes (tests/sssd.py: one at a time per host, the host's
caches put back after); consrv's keys command is sssd's own
``/usr/bin/sss_ssh_authorizedkeys %u`` as ``nobody``; consrv's NSS is glibc's with
``sss`` in passwd and group, as on a facility's host, but for consrv's process only: it
runs in a mount namespace of its own where a copy of /etc/nsswitch.conf with ``sss``
is bind-mounted (tests/sssd.py, `with_nsswitch`); the host's file is not touched. The
OpenSSH client, procServ with a soft IOC for the roles.

Why not nss_wrapper's module mode (NSS_WRAPPER_MODULE_SO_PATH=libnss_sss.so.2,
NSS_WRAPPER_MODULE_FN_PREFIX=sss), the first choice: it answers getpwnam and getgrnam
from sssd, but its getgrouplist (libnss-wrapper 1.1.12, what consrv asks for a user's
groups) does not ask the module's initgroups: with sssd's default ``enumerate =
false`` alice's groups came back as her primary group only ([5000], not [5000, 5100]),
while ``getent -s sss initgroups alice`` said 5100. A test of that would test
nss_wrapper, not sssd.
"""

from __future__ import annotations

import pwd
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.slapd import PEOPLE, SUFFIX, Slapd
from tests.sshclients import PtySSH, ssh_argv
from tests.sssd import (
    AUTHORIZED_KEYS,
    ENTRY_CACHE_TIMEOUT,
    MEMCACHE_TIMEOUT,
    Sssd,
    nsswitch_with_sss,
    with_nsswitch,
)

pytestmark = pytest.mark.integration

GROUPS = f"ou=groups,{SUFFIX}"
TTL, NEGATIVE_TTL, GRACE, TIMEOUT = 2.0, 1.0, 6.0, 5.0
# A key removed from LDAP: sssd's entry cache, consrv's ttl, its check interval (ttl/2)
# and a generous margin for a busy host.
REVOKED_WITHIN = ENTRY_CACHE_TIMEOUT + TTL + 1.0 + 10.0
# A group left in LDAP: sssd's entry cache, then its memory cache, consrv's ttl, its
# check interval and the same margin.
GROUP_LEFT_WITHIN = ENTRY_CACHE_TIMEOUT + MEMCACHE_TIMEOUT + TTL + 1.0 + 10.0
# Directory users: (name, uid number, in the ops group).
USERS = (("probe", 5001, False), ("alice", 5002, True), ("bob", 5003, False),
         ("carol", 5004, False), ("dave", 5005, True))  # fmt: skip


@dataclass
class Directory:
    slapd: Slapd
    sssd: Sssd
    keys: dict[str, UserKey]


def _ldif(keys: dict[str, UserKey]) -> str:
    entries = [
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        f"dn: cn=staff,{GROUPS}\nobjectClass: posixGroup\ncn: staff\ngidNumber: 5000\n",
        f"dn: cn=ops,{GROUPS}\nobjectClass: posixGroup\ncn: ops\ngidNumber: 5100\n"
        + "".join(f"memberUid: {name}\n" for name, _, ops in USERS if ops),
    ]
    for name, uid, _ in USERS:
        entries.append(
            f"dn: uid={name},{PEOPLE}\nobjectClass: account\nobjectClass: posixAccount\n"
            f"objectClass: ldapPublicKey\nuid: {name}\ncn: {name}\nuidNumber: {uid}\n"
            f"gidNumber: 5000\nhomeDirectory: /nonexistent\nloginShell: /bin/false\n"
            f"sshPublicKey: {keys[name].public}\n"
        )
    return "\n".join(entries)


@pytest.fixture(scope="module")
def directory(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    keys_dir = tmp_path_factory.mktemp("sssd-keys")
    keys = {name: make_key(keys_dir, name) for name, _, _ in USERS}
    keys["mallory"] = make_key(keys_dir, "mallory")
    slapd.modify(_ldif(keys), add=True)
    with Sssd(slapd, probe="probe") as sssd:
        yield Directory(slapd, sssd, keys)


class NamespacedConsrv(Consrv):
    """consrv whose NSS is glibc's with ``sss`` (`with_nsswitch`): its process only."""

    def __init__(self, config: Path, workdir: Path) -> None:
        super().__init__(config, workdir)
        self.nsswitch = nsswitch_with_sss(workdir / "nsswitch.conf")

    def spawn(self) -> NamespacedConsrv:
        argv = [sys.executable, "-m", "consrv", "serve", "--config", str(self.config)]
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                with_nsswitch(self.nsswitch, argv),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        return self


def _consrv(tmp_path: Path, console: Path | None = None, *, nss: bool = True) -> Consrv:
    rw = ["@ops"] if nss else []  # without NSS a group must be consrv's own to be named
    data: dict[str, Any] = {
        "ssh": {
            "listen": ["127.0.0.1:0"],
            "host_key": str(tmp_path / "host_key"),
            "authorized_keys_command": f"{AUTHORIZED_KEYS} %u",
            "authorized_keys_command_user": "nobody",
        },
        "audit_log": str(tmp_path / "audit.log"),
        "metrics": {"listen": "127.0.0.1:0"},
        "identity": dict(nss=nss, ttl=TTL, negative_ttl=NEGATIVE_TTL, grace=GRACE, timeout=TIMEOUT),
        "consoles": {
            "lab-ioc": {"socket": str(console), "rw": rw, "ro": ["*"]}
            if console is not None
            else {"tcp": "127.0.0.1:9", "rw": rw, "ro": ["*"]},
        },
    }
    return NamespacedConsrv(write_config(tmp_path / "consrv.yaml", data), tmp_path).start()


def _ssh(
    consrv: Consrv, key: UserKey, login: str, *command: str
) -> subprocess.CompletedProcess[str]:
    argv = ssh_argv(consrv.port, key.private, login, *command, tty=False)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def test_sssd_answers_nss_for_one_process_and_the_host_is_untouched(
    directory: Directory, tmp_path: Path
) -> None:
    before = Path("/etc/nsswitch.conf").read_bytes()
    code = (
        "import os, pwd, grp; e = pwd.getpwnam('alice'); "
        "print(e.pw_uid, sorted(grp.getgrgid(g).gr_name "
        "for g in os.getgrouplist('alice', e.pw_gid)))"
    )
    argv = with_nsswitch(nsswitch_with_sss(tmp_path / "nsswitch.conf"), ["python3", "-c", code])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "5002 ['ops', 'staff']"
    with pytest.raises(KeyError):  # this process has the host's NSS: no directory users
        pwd.getpwnam("alice")
    assert Path("/etc/nsswitch.conf").read_bytes() == before


def test_a_directory_user_reaches_the_console_with_her_ldap_groups_role(
    directory: Directory, tmp_path: Path
) -> None:
    with ProcServ("lab-ioc", tmp_path / "ioc") as procserv:
        procserv.wait_ioc()
        consrv = _consrv(tmp_path, procserv.socket)
        try:
            refused = _ssh(consrv, directory.keys["mallory"], "mallory", "list")
            assert refused.returncode == 255  # no such user in the directory
            consrv.wait_for_log(rb"refused login name 'mallory': NSS knows no such user")
            for login in ("alice", "bob"):
                listed = _ssh(consrv, directory.keys[login], login, "list")
                assert listed.returncode == 0, listed.stderr + consrv.stderr()
                assert "lab-ioc" in listed.stdout
            wrong_key = _ssh(consrv, directory.keys["bob"], "alice", "list")
            assert wrong_key.returncode == 255  # alice's keys are hers only

            async def attach(login: str, mode: bytes) -> None:
                argv = ssh_argv(consrv.port, directory.keys[login].private, login, "lab-ioc")
                session = await PtySSH(argv).start()
                try:
                    await session.expect(rb"attached to lab-ioc: " + mode)
                finally:
                    await session.aclose()

            trio.run(attach, "alice", b"you write")  # in ops (LDAP posixGroup, via NSS)
            trio.run(attach, "bob", b"read-only")  # not in ops
        finally:
            consrv.stop()
    audit = (tmp_path / "audit.log").read_text()
    assert '"user":"alice"' in audit


def test_a_key_removed_from_ldap_ends_the_session_after_the_caches(
    directory: Directory, tmp_path: Path
) -> None:
    carol, new = directory.keys["carol"], make_key(tmp_path, "carol-new")
    consrv = _consrv(tmp_path)
    try:
        first = _ssh(consrv, carol, "carol", "list")
        assert first.returncode == 0, first.stderr + consrv.stderr()
        seconds = 0.0

        async def main() -> None:
            nonlocal seconds
            session = await PtySSH(ssh_argv(consrv.port, carol.private, "carol")).start()
            try:
                await session.expect(rb"number or name, empty to quit")
                directory.slapd.set_keys("carol", new.public)  # her old key is gone
                removed = time.monotonic()
                await session.expect(rb"the directory no longer lists your key", REVOKED_WITHIN)
                seconds = time.monotonic() - removed
                assert await session.wait() != 0
            finally:
                await session.aclose()

        trio.run(main)
        print(f"carol's session ended {seconds:.1f} s after her key left LDAP")
        after = _ssh(consrv, carol, "carol", "list")
        assert after.returncode == 255
        listed = subprocess.run([AUTHORIZED_KEYS, "carol"], capture_output=True, text=True,
                                check=False).stdout  # fmt: skip
        assert listed.split() == new.public.split()[:3]
        assert _ssh(consrv, new, "carol", "list").returncode == 0
    finally:
        consrv.stop()


def test_leaving_the_ldap_group_moves_a_user_from_rw_to_ro(
    directory: Directory, tmp_path: Path
) -> None:
    dave = directory.keys["dave"]
    with ProcServ("lab-ioc", tmp_path / "ioc") as procserv:
        procserv.wait_ioc()
        consrv = _consrv(tmp_path, procserv.socket)
        seconds = 0.0
        try:

            async def main() -> None:
                nonlocal seconds
                argv = ssh_argv(consrv.port, dave.private, "dave", "lab-ioc")
                session = await PtySSH(argv).start()
                try:
                    await session.expect(rb"attached to lab-ioc: you write")
                    directory.slapd.modify(
                        f"dn: cn=ops,{GROUPS}\nchangetype: modify\ndelete: memberUid\n"
                        "memberUid: dave\n"
                    )
                    left = time.monotonic()
                    await session.expect(
                        rb"your access to lab-ioc changed \(rw -> ro\)", GROUP_LEFT_WITHIN
                    )
                    seconds = time.monotonic() - left
                finally:
                    await session.aclose()

            trio.run(main)
        finally:
            consrv.stop()
    print(f"dave went from rw to ro {seconds:.1f} s after he left ops in LDAP")


def test_without_nss_a_made_up_name_does_not_put_the_keys_command_down(
    directory: Directory, tmp_path: Path
) -> None:
    """``sss_ssh_authorizedkeys`` exits 1 for a user sssd does not know, and with
    ``identity.nss`` off nothing refuses such a name before it runs. Its failure refuses
    that name only: the keys command is not marked down (no "not answering" line, its
    gauge stays 1), and users with nothing cached are still asked, not refused at once."""
    consrv = _consrv(tmp_path, nss=False)
    try:
        first = _ssh(consrv, directory.keys["alice"], "alice", "list")
        assert first.returncode == 0, first.stderr + consrv.stderr()
        for name in ("mallory", "nosuchuser", "mallory"):
            assert _ssh(consrv, directory.keys["mallory"], name, "list").returncode == 255
        consrv.wait_for_log(rb"keys command for nosuchuser failed: \S+ exited with status 1")
        listed = _ssh(consrv, directory.keys["bob"], "bob", "list")
        assert listed.returncode == 0, listed.stderr + consrv.stderr()
        metrics = subprocess.run(
            ["curl", "-sf", f"http://127.0.0.1:{consrv.metrics_port()}/metrics"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip
        assert 'consrv_identity_source_up{source="keys_command"} 1.0' in metrics
        assert "is not answering" not in consrv.stderr()
    finally:
        consrv.stop()
