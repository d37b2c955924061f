"""``ssh observer@host`` with a directory user's plain key: identity.key_owner_command.

Real parts, as in test_directory.py: slapd (the openssh-lpk schema), the keys command
and a key owner command that both run the real ``ldapsearch`` as ``nobody``, NSS from
files (nss_wrapper), the OpenSSH client. The owner command only suggests a user: a
command that names the wrong one (the claims file) gets nobody in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from tests.identity.test_directory import REVOKED_WITHIN, Site, running_site, ssh
from tests.slapd import Slapd
from tests.sshclients import PtySSH, ssh_argv
from tests.waits import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def owner_site(slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_site(slapd, tmp_path_factory.mktemp("owner"), owner=True) as found:
        found.unix_groups({"ops": ["ivan"]})  # ivan would write to lab-ioc as console@
        slapd.add_user("ivan", found.key("ivan").public)
        yield found


def blob(public: str) -> str:
    return public.split()[1]


def test_observer_with_a_directory_users_key_is_that_user_read_only(owner_site: Site) -> None:
    site = owner_site
    listed, _ = ssh(site, "ivan", "observer", "list")
    assert listed.returncode == 0, listed.stderr + site.consrv.stderr()
    assert "lab-ioc" in listed.stdout
    site.consrv.wait_for_log(rb"login ivan as observer from")
    audit = (site.root / "audit.log").read_text()
    assert '"event":"key_owner_command"' in audit
    assert '"users":"ivan"' in audit

    async def main() -> None:
        argv = ssh_argv(site.consrv.port, site.key("ivan").private, "observer", "lab-ioc")
        session = await PtySSH(argv).start()
        try:
            await session.expect(rb"attached to lab-ioc: read-only")
        finally:
            await session.aclose()
        argv = ssh_argv(site.consrv.port, site.key("ivan").private, "console", "lab-ioc")
        session = await PtySSH(argv).start()
        try:  # the same key to the service login: his best role (rw, from @ops)
            await session.expect(rb"attached to lab-ioc")
            assert b"read-only" not in session.output
        finally:
            await session.aclose()

    trio.run(main)


def test_an_owner_command_naming_the_wrong_user_gets_nobody_in(owner_site: Site) -> None:
    site = owner_site
    mallory = site.key("mallory")  # no LDAP entry, no Unix user
    (site.bin_dir / "claims").write_text(f"{blob(mallory.public)} ivan\n")
    (site.bin_dir / "claims").chmod(0o644)
    try:
        refused, _ = ssh(site, "mallory", "observer", "list")
        assert refused.returncode == 255
        site.consrv.wait_for_log(rb"key owner command named ivan for a key none of them has")
    finally:
        (site.bin_dir / "claims").unlink()
    stranger, _ = ssh(site, "nobody-key", "observer", "list")  # nobody claims it
    assert stranger.returncode == 255


def test_an_observer_session_ends_when_the_directory_drops_the_key(owner_site: Site) -> None:
    site = owner_site

    async def main() -> None:
        argv = ssh_argv(site.consrv.port, site.key("ivan").private, "observer", "lab-ioc")
        session = await PtySSH(argv).start()
        try:
            await session.expect(rb"attached to lab-ioc: read-only")
            site.slapd.set_keys("ivan", site.key("ivan-new").public)
            await session.expect(rb"the directory no longer lists your key", REVOKED_WITHIN)
        finally:
            await session.aclose()

    try:
        trio.run(main)
        after, _ = ssh(site, "ivan", "observer", "list")
        assert after.returncode == 255
    finally:  # the module's other tests log in with his key: wait out the caches' "no"
        site.slapd.set_keys("ivan", site.key("ivan").public)
        wait_until(
            lambda: ssh(site, "ivan", "observer", "list")[0].returncode == 0,
            "ivan's key to log in again once LDAP has it back",
            timeout=REVOKED_WITHIN,
        )
