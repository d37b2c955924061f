"""A directory user in the browser view: the same roles as over SSH, Unix groups included.

Real parts, as in test_directory.py: slapd behind the keys command, NSS from files
(nss_wrapper), the OpenSSH client (``ssh gina@host web`` mints the sign-in link), and
consrv's web view over TLS, asked through its HTTP API (httpx) and its console
stream (websocket-client), as a browser would.
"""

from __future__ import annotations

import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websocket

from tests.identity.test_directory import REVOKED_WITHIN, Site, running_site, ssh
from tests.slapd import Slapd
from tests.waits import wait_until
from tests.web.tls import self_signed

pytestmark = pytest.mark.integration

OPS_ONLY = "ops-only"  # rw for @ops (a Unix group), nobody else may see it
ADDED: set[str] = set()  # users in the module's slapd


@pytest.fixture
def web_site(slapd: Slapd, tmp_path: Path) -> Iterator[tuple[Site, Path]]:
    cert, key = self_signed(tmp_path)
    extra = {
        "web": {"listen": "127.0.0.1:0", "tls": {"cert": str(cert), "key": str(key)}},
        "consoles": {OPS_ONLY: {"tcp": "127.0.0.1:9", "rw": ["@ops"], "ro": []}},
    }
    with running_site(slapd, tmp_path, extra=extra) as found:
        found.unix_groups({"ops": ["gina"]})
        for user in ("gina", "hank"):  # one slapd for the module: a user is added once
            public = found.key(user).public
            slapd.set_keys(user, public) if user in ADDED else slapd.add_user(user, public)
            ADDED.add(user)
        yield found, cert


def signed_in(site: Site, user: str, cert: Path) -> tuple[httpx.Client, str]:
    """``ssh USER@host web`` with the user's directory key, then the link it printed."""
    result, _ = ssh(site, user, user, "web")
    assert result.returncode == 0, result.stderr + site.consrv.stderr()
    link = result.stdout.strip()
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+/login/[A-Za-z0-9_-]{43}", link), link
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10)
    answer = client.get(link)
    assert answer.status_code == 303, answer.text
    return client, link.split("/login/")[0]


def names(client: httpx.Client, base: str) -> list[str]:
    answer = client.get(f"{base}/api/consoles")
    assert answer.status_code == 200, answer.text
    return sorted(c["name"] for c in answer.json()["consoles"])


def over_ssh(site: Site, user: str) -> list[str]:
    result, _ = ssh(site, user, user, "list")
    assert result.returncode == 0, result.stderr
    return sorted(re.findall(r"^\s*(\S+)", result.stdout, re.M)[1:])


def test_a_unix_group_gives_the_same_role_in_the_web_view_as_over_ssh(
    web_site: tuple[Site, Path],
) -> None:
    site, cert = web_site
    gina, base = signed_in(site, "gina", cert)
    hank, _ = signed_in(site, "hank", cert)
    try:
        assert names(gina, base) == ["lab-ioc", OPS_ONLY]  # @ops: her Unix group
        assert names(hank, base) == ["lab-ioc"]  # not in ops: no role on ops-only
        assert OPS_ONLY in over_ssh(site, "gina")
        assert OPS_ONLY not in over_ssh(site, "hank")
        assert gina.get(f"{base}/c/{OPS_ONLY}").status_code == 200
        assert hank.get(f"{base}/c/{OPS_ONLY}").status_code == 404  # names do not leak
        stream = websocket.create_connection(
            base.replace("https://", "wss://") + f"/c/{OPS_ONLY}/stream",
            header=[f"Cookie: {'; '.join(f'{k}={v}' for k, v in gina.cookies.items())}"],
            origin=base, sslopt={"ca_certs": str(cert)}, timeout=REVOKED_WITHIN + 5,
        )  # fmt: skip
        try:
            site.unix_groups({"ops": []})  # gina leaves the group in the directory
            started = time.monotonic()
            while True:  # console bytes (it is down: consrv's notices), then the close
                opcode, data = stream.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
            assert int.from_bytes(data[:2], "big") == 1008, data  # no longer shown
            assert time.monotonic() - started < REVOKED_WITHIN
        finally:
            stream.close()
            stream.shutdown()  # type: ignore[no-untyped-call]  # the socket, whatever close() did
        wait_until(lambda: names(gina, base) == ["lab-ioc"], "gina's list without ops-only")
        assert gina.get(f"{base}/c/{OPS_ONLY}").status_code == 404
    finally:
        gina.close()
        hank.close()


def test_a_user_nss_no_longer_knows_is_signed_out(web_site: tuple[Site, Path]) -> None:
    """NSS drops hank: his SSH login and his signed-in browser go with him."""
    site, cert = web_site
    hank, base = signed_in(site, "hank", cert)
    try:
        assert names(hank, base) == ["lab-ioc"]
        passwd = site.passwd.read_text()
        site.passwd.write_text(re.sub(r"^hank:.*\n", "", passwd, flags=re.M))
        later = time.time() + 2
        subprocess.run(["touch", "-d", f"@{later:.0f}", str(site.passwd)], check=True)
        wait_until(
            lambda: hank.get(f"{base}/api/consoles").status_code == 401,
            "hank's browser signed out once NSS no longer knows him",
            timeout=REVOKED_WITHIN,
        )
    finally:
        hank.close()
