"""Users from a real directory: slapd with sshPublicKey, a keys command, NSS through nss_wrapper.

Real parts: Debian's ``slapd`` (tests/slapd.py, a temporary database on a loopback
port), a keys command that runs the real ``ldapsearch`` as ``nobody``, consrv as a
process whose NSS answers come from passwd and group files this test writes
(``libnss-wrapper``: LD_PRELOAD, NSS_WRAPPER_PASSWD/GROUP; nss_wrapper reads a
file again when it changes), the OpenSSH client, ``ssh-keygen`` for certificates,
procServ with a soft IOC for the rw → ro case.

Why nss_wrapper rather than nslcd or sssd against the same slapd here: these cases
change groups and users by rewriting files, at once, with no daemon cache between;
what consrv does with NSS answers (getpwnam, getgrouplist) is the same whatever
module gives them. A real sssd (LDAP provider, sss_ssh_authorizedkeys, libnss_sss) is
tested in test_sssd.py, for consrv's process only (a mount namespace with its own
nsswitch.conf: the host's is not touched).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, safe_tempdir, write_config
from tests.slapd import PEOPLE, Slapd
from tests.sshclients import PtySSH, ssh_argv

pytestmark = pytest.mark.integration

NSS_WRAPPER = "libnss_wrapper.so"
TTL, NEGATIVE_TTL, GRACE, TIMEOUT = 2.0, 1.0, 6.0, 2.0
# A login of another user may take this much longer while a keys command hangs (issue 26).
OTHERS_DELAY = 0.1
# Revocation: the ttl, the check interval (ttl/2 here) and a generous margin for a busy host.
REVOKED_WITHIN = TTL + 1.0 + 8.0
SLEEP = "29.97"  # the hanging command's sleep (30 s), a value no other process uses

KEYS_SCRIPT = """\
#!/bin/sh
# consrv's keys command for these tests: $1 is the user (%u).
case "$1" in
  sleepy) exec sleep {sleep} ;;
  garbage) echo "this is not a key"; echo 'command="/bin/sh" {garbage_key}'; exit 0 ;;
esac
ldapsearch -x -LLL -o ldif-wrap=no -H {uri} -b {base} "(uid=$1)" sshPublicKey \\
  | sed -n 's/^sshPublicKey: //p'
"""


@dataclass
class Site:
    root: Path
    slapd: Slapd
    consrv: Consrv
    ca: Path
    passwd: Path
    group: Path
    keys: dict[str, UserKey] = field(default_factory=dict)
    group_mtime: float = 0.0
    bin_dir: Path = Path("/")  # the commands' directory (root's: sshd's safe_path)

    def key(self, name: str) -> UserKey:
        if name not in self.keys:
            self.keys[name] = make_key(self.root, name)
        return self.keys[name]

    def unix_groups(self, groups: dict[str, list[str]]) -> None:
        """Rewrite the group file consrv's NSS reads."""
        lines = ["nogroup:x:65534:"] + [
            f"{name}:x:{3000 + i}:{','.join(members)}"
            for i, (name, members) in enumerate(groups.items())
        ]
        self.group.write_text("\n".join(lines) + "\n")
        # nss_wrapper reads the file again when its mtime (seconds) changes: make sure it does.
        self.group_mtime = max(time.time(), self.group_mtime + 1)
        os.utime(self.group, (self.group_mtime, self.group_mtime))


# Each test adds its own users to the module's slapd: a name once (tests run in any order).
UNIX_USERS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "sleepy",
    "garbage",
    "erin",
    "frank",
    "gina",
    "hank",
    "ivan",
)


def _write_passwd(path: Path) -> None:
    lines = [f"{u}:x:{2001 + i}:65534:{u}:/home/{u}:/bin/sh" for i, u in enumerate(UNIX_USERS)]
    path.write_text(
        "\n".join([*lines, "nobody:x:65534:65534:nobody:/nonexistent:/bin/false"]) + "\n"
    )


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
                   check=True)  # fmt: skip
    return path


def sign(ca: Path, key: Path, principal: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", f"{principal}-id", "-n", principal,
                    "-V", "-5m:+1h", str(key) + ".pub"], check=True)  # fmt: skip


# The key owner command (identity.key_owner_command) for these tests: $1 is the key (%k).
# Users whose LDAP entry holds that key, then whoever the claims file names for it: a
# command that lies, which consrv must not believe.
OWNER_SCRIPT = """\
#!/bin/sh
ldapsearch -x -LLL -o ldif-wrap=no -H {uri} -b {base} "(objectClass=ldapPublicKey)" uid \\
  sshPublicKey | awk -v k="$1" '/^uid: /{{u=$2}} /^sshPublicKey: /{{if ($3 == k) m=1}}
  /^$/{{if (m) print u; m=0; u=""}} END{{if (m) print u}}'
[ -f {claims} ] && awk -v k="$1" '$1 == k {{print $2}}' {claims}
exit 0
"""


@pytest.fixture
def site(slapd: Slapd, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Site]:
    """Mark ``@pytest.mark.identity(timeout=...)`` to change the identity section."""
    marker = request.node.get_closest_marker("identity")
    with running_site(slapd, tmp_path, **(marker.kwargs if marker is not None else {})) as found:
        yield found


@contextmanager
def running_site(
    slapd: Slapd,
    tmp_path: Path,
    console: Path | None = None,
    extra: dict[str, Any] | None = None,
    owner: bool = False,
    **settings: object,
) -> Iterator[Site]:
    """consrv with keys from slapd (through the keys command) and users from NSS files;
    ``extra``: more config sections (its ``consoles`` are added to lab-ioc); ``owner``:
    with OWNER_SCRIPT as identity.key_owner_command (claims in ``bin_dir/claims``)."""
    bin_dir = safe_tempdir("consrv-keys-")  # nobody must reach the script; only root change it
    try:
        garbage = make_key(tmp_path, "garbage-key")
        script = bin_dir / "keys.sh"
        script.write_text(KEYS_SCRIPT.format(sleep=SLEEP, garbage_key=garbage.public, uri=slapd.uri,
                                             base=PEOPLE))  # fmt: skip
        script.chmod(0o755)
        owner_script = bin_dir / "owner.sh"
        owner_script.write_text(
            OWNER_SCRIPT.format(uri=slapd.uri, base=PEOPLE, claims=bin_dir / "claims")
        )
        owner_script.chmod(0o755)
        if owner:
            settings["key_owner_command"] = f"{owner_script} %k"
        ca = keygen(tmp_path / "ca")
        passwd, group = tmp_path / "passwd", tmp_path / "group"
        _write_passwd(passwd)
        yolanda = make_key(tmp_path, "yolanda")
        identity = {"nss": True, "ttl": TTL, "negative_ttl": NEGATIVE_TTL, "grace": GRACE,
                    "timeout": TIMEOUT, **settings}  # fmt: skip
        data: dict[str, Any] = {
            "ssh": {
                "listen": ["127.0.0.1:0"],
                "host_key": str(tmp_path / "host_key"),
                "trusted_user_ca_keys": [(tmp_path / "ca.pub").read_text().strip()],
                "authorized_keys_command": f"{script} %u",
                "authorized_keys_command_user": "nobody",
            },
            "audit_log": str(tmp_path / "audit.log"),
            "identity": identity,
            "users": {"yolanda": {"keys": [yolanda.public]}},
            "consoles": {
                "lab-ioc": {"socket": str(console), "rw": ["@ops"], "ro": ["*"]}
                if console is not None
                else {"tcp": "127.0.0.1:9", "rw": ["@ops"], "ro": ["*"]},
            },
        }
        more = dict(extra or {})
        data["consoles"].update(more.pop("consoles", {}))
        config = write_config(tmp_path / "consrv.yaml", {**data, **more})
        env = dict(os.environ, LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_PASSWD=str(passwd),
                   NSS_WRAPPER_GROUP=str(group))  # fmt: skip
        found = Site(tmp_path, slapd, Consrv(config, tmp_path, env=env), ca, passwd, group)
        found.keys["yolanda"], found.keys["garbage-key"] = yolanda, garbage
        found.bin_dir = bin_dir
        found.unix_groups({"ops": ["alice"]})
        found.consrv.start()
        try:
            yield found
        finally:
            found.consrv.stop()
    finally:
        shutil.rmtree(bin_dir)


def ssh(
    site: Site, who: str, login: str, *command: str, key: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """One login with the real OpenSSH client; (result, seconds it took)."""
    argv = ssh_argv(site.consrv.port, key or site.key(who).private, login, *command, tty=False)
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return result, time.monotonic() - started


def test_nss_wrapper_gives_consrv_its_own_users(site: Site) -> None:
    """The premise of this module: the wrapper's users are what a process's NSS says."""
    env = dict(os.environ, LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_PASSWD=str(site.passwd),
               NSS_WRAPPER_GROUP=str(site.group))  # fmt: skip
    code = (
        "import os, pwd, grp; e = pwd.getpwnam('alice'); "
        "print(sorted(grp.getgrgid(g).gr_name for g in os.getgrouplist('alice', e.pw_gid)))"
    )
    out = subprocess.run(["python3", "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert out.strip() == "['nogroup', 'ops']"


def test_a_key_added_in_ldap_logs_in_and_removed_ends_the_session(site: Site) -> None:
    alice = site.key("alice")
    refused, _ = ssh(site, "alice", "alice", "list")
    assert refused.returncode == 255  # not in LDAP yet (alice is an NSS user with no keys)
    site.slapd.add_user("alice", alice.public)
    time.sleep(NEGATIVE_TTL + 0.2)  # "no keys" was cached for the negative ttl
    result, _ = ssh(site, "alice", "alice", "list")
    assert result.returncode == 0, result.stderr + site.consrv.stderr()
    assert "lab-ioc" in result.stdout
    site.consrv.wait_for_log(rb"login alice as alice from")

    async def main() -> None:
        session = await PtySSH(ssh_argv(site.consrv.port, alice.private, "alice")).start()
        try:
            await session.expect(rb"number or name, empty to quit")
            site.slapd.set_keys("alice", site.key("alice-new").public)
            await session.expect(rb"the directory no longer lists your key", REVOKED_WITHIN)
            assert await session.wait() != 0
        finally:
            await session.aclose()

    trio.run(main)
    after, _ = ssh(site, "alice", "alice", "list")
    assert after.returncode == 255
    new, _ = ssh(site, "alice-new", "alice", "list")
    assert new.returncode == 0, new.stderr


def test_a_group_change_moves_a_user_from_rw_to_ro(slapd: Slapd, tmp_path: Path) -> None:
    with ProcServ("lab-ioc", tmp_path / "ioc") as procserv:
        procserv.wait_ioc()
        with running_site(slapd, tmp_path, console=procserv.socket) as the_site:
            _group_change(slapd, the_site)


def _group_change(slapd: Slapd, the_site: Site) -> None:
    dave = the_site.key("dave")
    slapd.add_user("dave", dave.public)
    the_site.unix_groups({"ops": ["dave"]})

    async def main() -> None:
        argv = ssh_argv(the_site.consrv.port, dave.private, "dave", "lab-ioc")
        session = await PtySSH(argv).start()
        try:
            await session.expect(rb"you write")
            the_site.unix_groups({"ops": []})
            await session.expect(rb"your access to lab-ioc changed \(rw -> ro\)", REVOKED_WITHIN)
        finally:
            await session.aclose()

    trio.run(main)


def test_slapd_stopped_serves_the_cache_then_refuses_and_nobody_else_waits(site: Site) -> None:
    bob = site.key("bob")
    site.slapd.add_user("bob", bob.public)
    first, _ = ssh(site, "bob", "bob", "list")
    assert first.returncode == 0, first.stderr + site.consrv.stderr()
    site.slapd.pause()
    try:
        time.sleep(TTL + 0.2)  # bob's keys are past their ttl: consrv must ask, and gets nothing
        cached, _ = ssh(site, "bob", "bob", "list")
        assert cached.returncode == 0, cached.stderr + site.consrv.stderr()
        site.consrv.wait_for_log(rb"the keys command is not answering")
        fast, seconds = ssh(site, "yolanda", "console", "list")  # a YAML user: no directory
        assert fast.returncode == 0
        assert seconds < TIMEOUT, f"a YAML user waited {seconds:.2f} s for the stopped directory"
        again, seconds = ssh(site, "bob", "bob", "list")  # down: answered from the cache at once
        assert again.returncode == 0
        assert seconds < TIMEOUT, f"a cached user waited {seconds:.2f} s for the stopped directory"
        time.sleep(GRACE)  # past ttl + grace since bob's keys were fetched
        refused, _ = ssh(site, "bob", "bob", "list")
        assert refused.returncode == 255
        assert site.consrv.stderr().count("is not answering") == 1
    finally:
        site.slapd.resume()


@pytest.mark.identity(timeout=12.0)
def test_a_hanging_keys_command_delays_nobody_else(site: Site) -> None:
    erin = site.key("erin")
    site.slapd.add_user("erin", erin.public)
    before = min(ssh(site, "yolanda", "console", "list")[1] for _ in range(3))
    sleepy = subprocess.Popen(
        ssh_argv(site.consrv.port, site.key("sleepy").private, "sleepy", "list", tty=False),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_sleep()
        during = min(ssh(site, "yolanda", "console", "list")[1] for _ in range(3))
        erin_login, erin_seconds = ssh(site, "erin", "erin", "list")  # its own command run
        assert erin_login.returncode == 0, erin_login.stderr
        assert during - before < OTHERS_DELAY, (before, during)
        assert erin_seconds < 12.0 / 2
        assert sleepy.wait(30) == 255  # refused at the timeout: the command was killed
        assert not _sleeping(), "the hanging command outlived its timeout"
        audit = (site.root / "audit.log").read_text()
        assert '"user":"sleepy","result":"timeout"' in audit
    finally:
        sleepy.kill()
        sleepy.wait()


def _sleeping() -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == f"sleep\0{SLEEP}\0".encode():
            return True
    return False


def _wait_for_sleep() -> None:
    end = time.monotonic() + 10
    while not _sleeping():
        assert time.monotonic() < end, "the keys command for sleepy never started"
        time.sleep(0.05)


def test_a_command_printing_garbage_is_refused_with_a_log_line(site: Site) -> None:
    result, _ = ssh(site, "garbage-key", "garbage", "list")
    assert result.returncode == 255
    site.consrv.wait_for_log(
        rb"keys command for garbage: line 1: not an authorized_keys line "
        rb"\(and 1 more lines refused\)"
    )


def test_a_certificate_for_a_unix_user_logs_in_without_a_yaml_entry(site: Site) -> None:
    key = keygen(site.root / "id_carol")
    sign(site.ca, key, "carol")
    result, _ = ssh(site, "carol", "console", "list", key=key)
    assert result.returncode == 0, result.stderr + site.consrv.stderr()
    site.consrv.wait_for_log(rb"login carol as console")
    direct, _ = ssh(site, "carol", "carol", "list", key=key)
    assert direct.returncode == 0, direct.stderr
    stranger = keygen(site.root / "id_mallory")
    sign(site.ca, stranger, "mallory")  # no such Unix user
    refused, _ = ssh(site, "mallory", "console", "list", key=stranger)
    assert refused.returncode == 255


def test_a_reload_keeps_directory_users_sessions(site: Site) -> None:
    """A reload re-checks sessions against the YAML: a directory user is not in it, and
    stays (the directory decides for them)."""
    frank = site.key("frank")
    site.slapd.add_user("frank", frank.public)

    async def main() -> None:
        session = await PtySSH(ssh_argv(site.consrv.port, frank.private, "frank")).start()
        try:
            await session.expect(rb"number or name, empty to quit")
            assert site.consrv.process is not None
            site.consrv.process.send_signal(signal.SIGHUP)
            await trio.to_thread.run_sync(site.consrv.wait_for_log, rb"reloaded ")
            await session.send(b"lab-ioc\r")
            await session.expect(rb"attached to lab-ioc: read-only")
            assert b"no longer" not in session.output
        finally:
            await session.aclose()

    trio.run(main)
