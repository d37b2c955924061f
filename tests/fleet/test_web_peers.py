"""A peer's console logs, search, downloads and recordings in the gateway's browser view,
answered by that peer under the user's own per-hop identity.

The shared fleet (tests/fleet/sim.py: real `consrv serve` peers with real procServ
consoles, real gateways); the OpenSSH client mints the sign-in link (``ssh
console@gw web``); httpx and Debian's chromium read the pages. What a page shows is
checked against the peer itself: its files on disk and its audit log.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By

from tests.fleet.sim import SECRET, Fleet, Peer
from tests.waits import wait_until
from tests.web.browser import chromium, console_log, csp_violations, screen, wait_for_screen
from tests.witness import Witness

pytestmark = pytest.mark.integration

SCREENSHOTS = os.environ.get("CONSRV_WEB_SCREENSHOTS")  # a folder (docs/img) or unset
BIG_LINES = 300_000  # lines of a peer's file far larger than the page's window (~20 MB)
WINDOW = 500  # the last lines a file's page shows (web/logs.py)
# Bytes the peer may send through the gateway (its /metrics) for the page of that file's
# end: the window (~30 KB as JSON); the whole file crossing the hop would be ~20 MB.
HOP_BOUND = 256 << 10
ROUNDS = 5  # each user's page loads of a peer's logs: its list, a search, a file's end
# Logins on the peer for one user's 3 * ROUNDS page loads (20 reads: a search is two):
# one connection kept for them, another only if one read came over IDLE s after the
# last or the connection was past MAX_AGE (fleet/hops.py): generous, for a loaded machine.
LOGIN_BOUND = 3


@contextlib.contextmanager
def signed_in(fleet: Fleet, user: str) -> Iterator[tuple[httpx.Client, str]]:
    """An HTTP client signed in to the gateway's web view as `user`, and its base URL."""
    link = fleet.ssh(user, "web")
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip()
    with httpx.Client(verify=False, timeout=30) as client:  # noqa: S501 (the test's own cert)
        assert client.get(url).status_code == 303
        yield client, url.split("/login/")[0]


def typed_into_log(fleet: Fleet, peer: Peer, console: str) -> str:
    """A fresh line typed into `console` (cat echoes it), once the peer's log holds it."""
    mark = f"peer-log-{secrets.token_hex(4)}"
    with Witness(peer.procservs[console].socket) as witness:
        witness.send(mark.encode() + b"\r")
    log = peer.root / "logs" / f"{console}.log"
    wait_until(lambda: log.exists() and mark in log.read_text(errors="replace"),
               f"{mark} in {log}", timeout=15)  # fmt: skip
    return mark


def received(fleet: Fleet, peer: Peer) -> int:
    """Bytes `peer` has sent to users through the first gateway (the gateway's /metrics)."""
    gateway = fleet.gateways[0]
    url = f"http://{gateway.address}:{gateway.consrv.metrics_port()}/metrics"
    text = httpx.get(url, timeout=10).text
    line = f'consrv_fleet_peer_received_bytes_total{{peer="{peer.name}"}} '
    for row in text.splitlines():
        if row.startswith(line):
            return int(float(row[len(line) :]))
    raise AssertionError(f"no {line!r} in the gateway's /metrics")


def hop_logins(peer: Peer, user: str) -> list[dict[str, object]]:
    return [r for r in peer.audit() if r.get("event") == "login" and r.get("user") == user]


def test_a_peers_log_is_listed_searched_viewed_and_downloaded_through_the_gateway(
    fleet: Fleet,
) -> None:
    peer = fleet.peers[12]
    target = f"ioc-12@{peer.name}"
    mark = typed_into_log(fleet, peer, "ioc-12")
    before = len(hop_logins(peer, "olga"))
    with signed_in(fleet, "olga") as (client, base):  # olga: read-only everywhere
        index = client.get(f"{base}/logs/{quote(target)}/")
        assert index.status_code == 200, index.text
        assert f'href="/logs/ioc-12%40{peer.name}/ioc-12.log"' in index.text
        found = client.get(f"{base}/logs/{quote(target)}/", params={"q": mark})
        assert found.status_code == 200
        assert found.text.count(mark) >= 2  # the form's value and at least one line
        line = int(found.text.split("/ioc-12.log?line=", 1)[1].split("#", 1)[0])
        assert f'href="/play/ioc-12%40{peer.name}?at=' in found.text  # play from that time
        view = client.get(f"{base}/logs/{quote(target)}/ioc-12.log", params={"line": line})
        assert view.status_code == 200
        assert f'<tr id="L{line}" class="hit">' in view.text
        assert mark in view.text.split(f'id="L{line}"', 1)[1].split("</tr>", 1)[0]
        download = client.get(f"{base}/logs/{quote(target)}/ioc-12.log/download")
        assert download.status_code == 200
        assert download.headers["content-disposition"].startswith("attachment;")
        on_disk = (peer.root / "logs" / "ioc-12.log").read_bytes()
        assert download.content == on_disk[: len(download.content)]
        assert mark.encode() in download.content
        for path in ("../etc/passwd", "ioc-12.log.99", "ioc-11.log"):
            response = client.get(f"{base}/logs/{quote(target)}/{quote(path, safe='')}/download")
            assert response.status_code == 404, path
        # The peer judged olga herself, through the gateway, read-only.
        logins = hop_logins(peer, "olga")[before:]
        assert logins, "olga's reads in the peer's audit"
        assert {str(r["via"]).split(":")[0] for r in logins} == {"gw-127.0.0.50"}
        assert {r["login"] for r in logins} == {"observer"}


def test_a_peers_big_file_shows_its_end_with_only_the_window_crossing_the_hop(
    fleet: Fleet,
) -> None:
    peer = fleet.peers[14]
    target, name = quote(f"ioc-14@{peer.name}"), "ioc-14.log.1"  # a rotated file of ioc-14
    token = secrets.token_hex(4)
    path = peer.root / "logs" / name
    path.write_bytes(b"".join(b"2026-12-03T21:00:00.000+00:00 big %d %s\n" % (i, token.encode())
                              for i in range(1, BIG_LINES + 1)))  # fmt: skip
    try:
        with signed_in(fleet, "olga") as (client, base):
            before = received(fleet, peer)
            page = client.get(f"{base}/logs/{target}/{name}")
            crossed = received(fleet, peer) - before
    finally:
        path.unlink()
    assert page.status_code == 200, page.text
    assert crossed < HOP_BOUND, f"{crossed} bytes from the peer for a {WINDOW}-line window"
    rows = re.findall(r'<tr id="L(\d+)"[^>]*>.*?<td class="text">([^<]*)</td></tr>', page.text)
    first = BIG_LINES - WINDOW + 1
    assert [int(number) for number, _ in rows] == list(range(first, BIG_LINES + 1))
    assert [text for _, text in rows] == [
        f"2026-12-03T21:00:00.000+00:00 big {i} {token}" for i in range(first, BIG_LINES + 1)
    ]


def test_one_users_page_loads_share_a_login_on_the_peer_and_users_never_share_one(
    fleet: Fleet,
) -> None:
    peer, users = fleet.peers[15], ("alice", "olga")
    target = quote(f"ioc-15@{peer.name}")
    typed_into_log(fleet, peer, "ioc-15")
    before = {user: len(hop_logins(peer, user)) for user in users}
    log_start = len(fleet.gateways[0].consrv.stderr())
    with signed_in(fleet, "alice") as (alice, base), signed_in(fleet, "olga") as (olga, _):
        for _round in range(ROUNDS):
            for client in (alice, olga):  # interleaved: each user's kept connection
                assert client.get(f"{base}/logs/{target}/").status_code == 200
                found = client.get(f"{base}/logs/{target}/", params={"q": "peer-log"})
                assert found.status_code == 200
                assert "peer-log-" in found.text
                assert client.get(f"{base}/logs/{target}/ioc-15.log").status_code == 200
    logins = {user: hop_logins(peer, user)[before[user] :] for user in users}
    for user in users:
        assert 1 <= len(logins[user]) <= LOGIN_BOUND, (user, logins[user])
    vias = {user: {str(r["via"]) for r in logins[user]} for user in users}
    assert not vias["alice"] & vias["olga"]
    # The gateway's own account of each read: the certificate it went under (its key id)
    # is one the peer saw that same user log in with, never the other's.
    reads = re.findall(rf"fleet: (\w+) '[^']*' on {re.escape(peer.name)} as \w+ \(([^,)]+)",
                       fleet.gateways[0].consrv.stderr()[log_start:])  # fmt: skip
    assert len(reads) == 4 * ROUNDS * len(users), reads
    for user, key_id in reads:
        assert key_id in vias[user], (user, key_id, vias)


def test_a_user_with_no_role_on_the_peer_gets_neither_the_console_nor_its_logs(
    fleet: Fleet,
) -> None:
    peer = fleet.peers[3]
    target = quote(f"{SECRET}@{peer.name}")
    typed_into_log(fleet, peer, SECRET)
    with signed_in(fleet, "bob") as (client, base):
        listing = client.get(f"{base}/").text
        assert SECRET not in listing
        for path in (
            f"/c/{target}",
            f"/logs/{target}/",
            f"/logs/{target}/{SECRET}.log",
            f"/logs/{target}/{SECRET}.log/download",
            f"/play/{target}",
            f"/play/{target}/cast",
        ):
            response = client.get(base + path, params={"q": "peer-log"})
            assert response.status_code == 404, (path, response.status_code)
            assert "peer-log" not in response.text
            assert f"{SECRET}.log" not in response.text
    with signed_in(fleet, "alice") as (client, base):  # alice may: the same pages answer
        assert client.get(f"{base}/logs/{target}/").status_code == 200


def test_a_peers_log_and_recording_in_chromium_through_the_gateway(
    fleet: Fleet, tmp_path: Path
) -> None:
    peer = fleet.peers[13]
    target = f"ioc-13%40{peer.name}"
    mark = typed_into_log(fleet, peer, "ioc-13")
    link = fleet.ssh("alice", "web").stdout.strip()
    with chromium(tmp_path / "profile") as driver:
        driver.get(link)
        wait_until(lambda: f'href="/logs/{target}/"' in driver.page_source,
                   "ioc-13's logs link in the gateway's list")  # fmt: skip
        driver.find_element(By.CSS_SELECTOR, f'a[href="/logs/{target}/"]').click()
        wait_until(lambda: driver.find_elements(By.ID, "search"), "the peer's log page")
        driver.find_element(By.NAME, "q").send_keys(mark)
        driver.find_element(By.CSS_SELECTOR, "#search button").click()
        wait_until(lambda: driver.find_elements(By.ID, "results"), "the search's results")
        texts = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results td.text")]
        assert any(mark in text for text in texts), texts
        if SCREENSHOTS:  # docs/web.md: a peer's log searched through the gateway
            driver.save_screenshot(str(Path(SCREENSHOTS) / "web-peer-logs.png"))
        # A download, fetched by the page itself (its cookie, its CSP): the peer's bytes.
        body = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('/logs/{target}/ioc-13.log/download', {{credentials: 'same-origin'}})"
            ".then(r => r.text().then(t =>"
            "  done([r.status, r.headers.get('content-disposition'), t])))"
        )
        assert body[0] == 200
        assert body[1].startswith("attachment;")
        assert mark in body[2]
        # The line's link opens its file at that line; its time plays the recording.
        driver.find_element(By.CSS_SELECTOR, "#results td.where a").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr.hit"), "the hit line")
        assert mark in driver.find_element(By.CSS_SELECTOR, "tr.hit").text
        driver.back()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "a.play"), "a play link")
        driver.find_element(By.CSS_SELECTOR, "a.play").click()
        wait_until(lambda: "/play/" in driver.current_url, "the player page")
        wait_until(lambda: driver.execute_script("return !!(window.consrvPlayer || {}).ready"),
                   "the peer's recording loaded in the player", timeout=20)  # fmt: skip
        driver.execute_script("window.consrvPlayer.setSpeed(16); window.consrvPlayer.play()")
        wait_for_screen(driver, mark, timeout=20)  # played from the peer's recording
        assert mark in screen(driver)
        assert csp_violations(console_log(driver)) == []
