"""The web front's routes in process: sign-in, rights, traversal, Origin, headers, streams.

Policy: a real Registry and Starlette app in the test's trio loop (tests/web/site.py);
HTTP through httpx's ASGI transport, WebSockets through a hand-written ASGI driver.
The same front runs in a real consrv with a real browser in tests/web/test_browser.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

import consrv.web
from consrv.audit import AuditLog
from consrv.web.auth import COOKIE
from consrv.web.server import WebFront, reachable
from tests.fakes import wait_for
from tests.waits import deadline
from tests.web.site import BANNER, ORIGIN, Site, WebSocketDriver, site_config, web_site

PAGES = ["/", "/c/ioc-a", "/logs/ioc-a/", "/logs/ioc-a/ioc-a.log", "/api/consoles"]


def write_logs(site: Site) -> None:
    logs = site.root / "logs"
    (logs / "ioc-a.log.1").write_text(
        "2026-12-03T21:00:00.000+00:00 old dbl <script>alert(1)</script>\n"
    )
    (logs / "ioc-a.log").write_text("2026-12-03T21:10:00.000+00:00 new dbl\n\x1b]52;c;aGk=\x07x\n")
    (logs / "secret.log").write_text("bob's secret\n")
    (site.root / "outside").write_text("outside the log directory\n")
    (logs / "ioc-a.log.2").symlink_to(site.root / "outside")


async def test_every_response_has_the_security_headers(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        client = await site.signed_in("olga")
        for path in [*PAGES, "/static/app.css", "/nowhere"]:
            response = await client.get(path)
            headers = response.headers
            csp = headers["content-security-policy"]
            assert csp.startswith("default-src 'none'; script-src 'self'; connect-src 'self';")
            assert "frame-ancestors 'none'" in csp
            assert "unsafe" not in csp
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["cache-control"] == "no-store"
            assert headers["referrer-policy"] == "no-referrer"


async def test_nobody_signed_in_sees_nothing(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        client = site.client()
        for path in PAGES:
            response = await client.get(path)
            assert response.status_code == 401, path
            assert "ioc-a" not in response.text


async def test_a_login_link_works_once_and_sets_a_strict_cookie(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        client = site.client()
        token = site.web.logins.mint("alice")
        response = await client.get(f"/login/{token}")
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/"):
            assert attribute.lower() in cookie.lower(), attribute
        assert (await client.get("/")).status_code == 200
        again = site.client()
        assert (await again.get(f"/login/{token}")).status_code == 403
        assert (await again.get("/")).status_code == 401
        assert site.web.stats.logins == {"ok": 1, "refused": 1}


async def test_an_expired_link_is_refused(tmp_path: Path) -> None:
    async with web_site(tmp_path, login_ttl="1s") as site:
        token = site.web.logins.mint("alice")
        await trio.sleep(1.1)
        assert (await site.client().get(f"/login/{token}")).status_code == 403


async def test_the_list_shows_what_the_user_may_see(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        olga, bob = await site.signed_in("olga"), await site.signed_in("bob")
        assert [c["name"] for c in (await olga.get("/api/consoles")).json()["consoles"]] == [
            "ioc-a"
        ]
        names = [c["name"] for c in (await bob.get("/api/consoles")).json()["consoles"]]
        assert names == ["ioc-a", "secret"]
        page = (await olga.get("/")).text
        assert 'href="/c/ioc-a"' in page
        assert "secret" not in page
        assert (await olga.get("/c/secret")).status_code == 404
        assert (await bob.get("/c/secret")).status_code == 200


async def test_log_paths_never_come_from_the_url(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        write_logs(site)
        olga = await site.signed_in("olga")
        assert (await olga.get("/logs/ioc-a/ioc-a.log.1")).status_code == 200
        for path in (
            "/logs/ioc-a/..%2f..%2foutside",
            "/logs/ioc-a/%2e%2e",
            "/logs/ioc-a/%2e%2e/secret.log",
            "/logs/ioc-a/..",
            "/logs/ioc-a/%2Fetc%2Fpasswd",
            "/logs/ioc-a//etc/passwd",
            "/logs/ioc-a/ioc-a.log.2",  # a symlink out of the log directory
            "/logs/ioc-a/ioc-a.log.2/download",
            "/logs/ioc-a/secret.log",
            "/logs/secret/secret.log",  # a console olga may not see
            "/logs/secret/",
            "/logs/nope/",
            "/logs/%2e%2e/ioc-a.log",
            "/logs/ioc-a/ioc-a.log/../../secret.log",
        ):
            response = await olga.get(path)
            assert response.status_code == 404, path
            assert "secret" not in response.text.replace("secret.log", ""), path
            assert "outside the log" not in response.text, path


async def test_log_view_search_and_download(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        write_logs(site)
        olga = await site.signed_in("olga")
        index = (await olga.get("/logs/ioc-a/")).text
        assert "ioc-a.log.1" in index
        assert "ioc-a.log.2" not in index  # the symlink is not listed
        found = await olga.get("/logs/ioc-a/", params={"q": "dbl", "since": "2026-12-03T21:05Z"})
        assert found.status_code == 200
        assert "new dbl" in found.text
        assert "old dbl" not in found.text
        assert 'href="/logs/ioc-a/ioc-a.log?line=1#L1"' in found.text
        assert 'href="/logs/ioc-a/?since=2026-12-03T21%3A10%3A00%2B00%3A00"' in found.text
        old = (await olga.get("/logs/ioc-a/", params={"q": "script"})).text
        assert "<script>alert" not in old
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in old
        view = (await olga.get("/logs/ioc-a/ioc-a.log", params={"line": "2"})).text
        assert 'id="L2"' in view
        # An escape sequence (here OSC 52, the clipboard) is taken out, never sent raw
        assert '<td class="text">x</td>' in view
        assert "aGk=" not in view
        assert "\x1b" not in view
        bad = await olga.get("/logs/ioc-a/", params={"since": "yesterday"})
        assert bad.status_code == 400
        download = await olga.get("/logs/ioc-a/ioc-a.log/download")
        assert download.content == (site.root / "logs" / "ioc-a.log").read_bytes()
        disposition = download.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="ioc-a.log"')


async def test_sign_out_needs_the_same_origin(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        olga = await site.signed_in("olga")
        assert (await olga.post("/logout")).status_code == 403
        evil = await olga.post("/logout", headers={"origin": "https://evil.example"})
        assert evil.status_code == 403
        assert (await olga.get("/")).status_code == 200
        ok = await olga.post("/logout", headers={"origin": ORIGIN})
        assert ok.status_code == 200
        assert (await olga.get("/")).status_code == 401


async def test_a_proxy_header_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    web = {"trusted_proxies": ["10.0.0.0/24"], "identity_header": "X-Remote-User"}
    async with web_site(tmp_path, **web) as site:
        header = {"x-remote-user": "bob"}
        trusted = await site.client("10.0.0.7").get("/api/consoles", headers=header)
        assert [c["name"] for c in trusted.json()["consoles"]] == ["ioc-a", "secret"]
        untrusted = await site.client("10.0.1.7").get("/api/consoles", headers=header)
        assert untrusted.status_code == 401
        bad = await site.client("10.0.0.7").get("/", headers={"x-remote-user": "<b>"})
        assert bad.status_code == 401
        unknown = await site.client("10.0.0.7").get("/", headers={"x-remote-user": "mallory"})
        assert unknown.status_code == 401


async def open_stream(
    site: Site, client: httpx.AsyncClient, nursery: trio.Nursery
) -> WebSocketDriver:
    """The signed-in `client`'s browser opening ioc-a's live stream (accepted)."""
    ws = WebSocketDriver(site.app, "/c/ioc-a/stream", ws_headers(client.cookies[COOKIE]))
    nursery.start_soon(ws.run)
    await wait_for(ws.accepted)
    return ws


def ws_headers(client_cookie: str | None, origin: str | None = ORIGIN) -> dict[str, str]:
    headers = {"host": "consrv.test"}
    if origin is not None:
        headers["origin"] = origin
    if client_cookie is not None:
        headers["cookie"] = f"{COOKIE}={client_cookie}"
    return headers


async def test_a_stream_gives_scrollback_then_live_output_and_takes_nothing(
    tmp_path: Path,
) -> None:
    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        await site.peers["ioc-a"].send(b"before\r\n")
        console = site.registry.consoles["ioc-a"]
        await wait_for(lambda: b"before" in console.scrollback.data())
        olga = await site.signed_in("olga")
        ws = await open_stream(site, olga, nursery)
        await site.peers["ioc-a"].send(b"after\r\n")
        await wait_for(lambda: b"after" in ws.data())
        assert ws.data().count(b"before") == 1
        assert ws.data().index(b"before") < ws.data().index(b"after")
        assert [v.user for v in console.viewers] == ["olga"]
        await ws.to_app.send({"type": "websocket.receive", "text": "ls\r"})
        with deadline(5, "the stream to close on a client frame"):
            await ws.done.wait()
        assert ws.close_code() == 1008
        assert console.viewers == set()
        assert console.stats.bytes_in == 0


async def test_a_stream_shows_down_up_and_the_childs_restarts(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        olga = await site.signed_in("olga")
        ws = await open_stream(site, olga, nursery)
        await site.peers["ioc-a"].send(b'@@@ Restarting child "T"\r\n')
        await site.peers["ioc-a"].stream.aclose()
        await wait_for(lambda: b"[consrv: ioc-a down]" in ws.data())
        peer = await site.servers["ioc-a"].next_peer()
        await peer.send(BANNER)
        await wait_for(lambda: b"[consrv: ioc-a up]" in ws.data())
        await wait_for(lambda: b"PID: 77" in ws.data().split(b"ioc-a up")[1])
        data = ws.data()
        assert data.index(b"Restarting child") < data.index(b"ioc-a down") < data.index(b"ioc-a up")
        assert ws.close_code() is None
        nursery.cancel_scope.cancel()


async def test_a_browser_gone_mid_stream_ends_it_quietly(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        olga = await site.signed_in("olga")
        ws = await open_stream(site, olga, nursery)
        ws.gone = True
        await site.peers["ioc-a"].send(b"output nobody will read\r\n")
        with deadline(5, "the stream to end after its browser went away"):
            await ws.done.wait()
        assert ws.raised is None
        assert site.registry.consoles["ioc-a"].viewers == set()


async def test_a_stream_needs_the_origin_a_session_and_the_right(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        olga = (await site.signed_in("olga")).cookies[COOKIE]
        for path, headers in (
            ("/c/ioc-a/stream", ws_headers(olga, origin="https://evil.example")),
            ("/c/ioc-a/stream", ws_headers(olga, origin=None)),
            ("/c/ioc-a/stream", ws_headers(None)),
            ("/c/secret/stream", ws_headers(olga)),
            ("/c/nope/stream", ws_headers(olga)),
        ):
            ws = WebSocketDriver(site.app, path, headers)
            nursery.start_soon(ws.run)
            with deadline(5, f"the handshake on {path} to be refused"):
                await ws.done.wait()
            assert not ws.accepted(), (path, headers)
            assert ws.close_code() == 1008


def without_olga(data: dict[str, Any]) -> str:
    del data["users"]["olga"]
    return "/"  # signed out: 401


def console_not_for_olga(data: dict[str, Any]) -> str:
    data["defaults"]["ro"] = ["alice"]
    return "/c/ioc-a"  # no such console for her: 404


@pytest.mark.parametrize(
    ("change", "status"), [(without_olga, 401), (console_not_for_olga, 404)], ids=["user", "acl"]
)
async def test_a_reload_that_takes_the_right_away_closes_the_stream(
    tmp_path: Path, change: Callable[[dict[str, Any]], str], status: int
) -> None:
    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        olga = await site.signed_in("olga")
        ws = await open_stream(site, olga, nursery)
        data = site_config(tmp_path)
        page = change(data)
        site.reload(data)
        with deadline(1.5, "olga's stream to close after the reload"):
            await ws.done.wait()
        assert ws.close_code() == 1008
        assert (await olga.get(page)).status_code == status


async def test_a_slow_browser_is_dropped_and_the_console_goes_on(tmp_path: Path) -> None:
    async with web_site(tmp_path, limits={"viewer_buffer": "4K"}) as site:
        olga = await site.signed_in("olga")
        stalled = trio.Event()
        cookie = olga.cookies[COOKIE]
        ws = WebSocketDriver(site.app, "/c/ioc-a/stream", ws_headers(cookie), stalled)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.run)
            await wait_for(ws.accepted)
            console = site.registry.consoles["ioc-a"]
            for _ in range(20):
                await site.peers["ioc-a"].send(b"x" * 1000 + b"\r\n")
            await wait_for(lambda: console.stats.bytes_out >= 20 * 1002)
            assert [v.dropped_total > 0 for v in console.viewers] == [True]
            stalled.set()
            with deadline(5, "the slow browser's stream to close"):
                await ws.done.wait()
            assert ws.close_code() == 1013


@pytest.mark.parametrize("path", ["/static/vendor/xterm.js", "/static/console.js"])
async def test_the_front_end_is_served_from_the_package(tmp_path: Path, path: str) -> None:
    async with web_site(tmp_path) as site:
        response = await site.client().get(path)
        assert response.status_code == 200
        assert "javascript" in response.headers["content-type"]
        shipped = Path(consrv.web.__file__).parent / path.lstrip("/")
        assert shipped.read_bytes() == response.content


async def test_a_scrollback_larger_than_the_bound_is_still_shown(tmp_path: Path) -> None:
    async with web_site(tmp_path, limits={"viewer_buffer": "4K"}) as site:
        console = site.registry.consoles["ioc-a"]
        for i in range(20):
            await site.peers["ioc-a"].send(b"%04d" % i + b"x" * 1000 + b"\r\n")
        await wait_for(lambda: b"0019" in console.scrollback.data())
        olga = await site.signed_in("olga")
        ws = WebSocketDriver(site.app, "/c/ioc-a/stream", ws_headers(olga.cookies[COOKIE]))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.run)
            await wait_for(lambda: b"0019" in ws.data())
            await site.peers["ioc-a"].send(b"live\r\n")
            await wait_for(lambda: b"live" in ws.data())
            assert ws.close_code() is None
            assert site.web.stats.bytes_sent == len(ws.data())
            assert ws.data().startswith(console.scrollback.data()[: len(b"0000")])
            await ws.to_app.send({"type": "websocket.disconnect", "code": 1001})
        assert console.viewers == set()


async def test_streams_per_user_are_capped(tmp_path: Path) -> None:
    async with web_site(tmp_path, limits={"streams_per_user": 2}) as site:
        olga = (await site.signed_in("olga")).cookies[COOKIE]
        bob = (await site.signed_in("bob")).cookies[COOKIE]
        async with trio.open_nursery() as nursery:
            streams = [
                WebSocketDriver(site.app, "/c/ioc-a/stream", ws_headers(cookie))
                for cookie in (olga, olga, olga, bob)
            ]
            for ws in streams[:2]:
                nursery.start_soon(ws.run)
                await wait_for(ws.accepted)
            for ws in streams[2:]:
                nursery.start_soon(ws.run)
            with deadline(5, "the third stream of olga to be refused"):
                await streams[2].done.wait()
            await wait_for(streams[3].accepted)
            assert not streams[2].accepted()
            assert site.web.stats.streams() == 3
            nursery.cancel_scope.cancel()


async def test_metrics_count_sign_ins_sessions_streams_and_bytes(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        olga = await site.signed_in("olga")
        await site.client().get("/login/not-a-token")
        await olga.get("/logs/ioc-a/")
        families = {f.name: f for f in site.web.stats.collect()}
        logins = {s.labels["result"]: s.value for s in families["consrv_web_logins"].samples}
        assert logins == {"ok": 1, "refused": 1}
        assert families["consrv_web_sessions"].samples[0].value == 1
        assert families["consrv_web_streams"].samples[0].value == 0
        assert families["consrv_web_sent_bytes"].samples[0].value == 0


async def test_a_file_is_shown_a_window_at_a_time(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        lines = "".join(f"line {n}\n" for n in range(1, 2001))
        (site.root / "logs" / "ioc-a.log").write_text(lines)
        olga = await site.signed_in("olga")
        tail = (await olga.get("/logs/ioc-a/ioc-a.log")).text
        assert 'id="L2000"' in tail
        assert 'id="L1501"' in tail
        assert 'id="L1500"' not in tail
        middle = (await olga.get("/logs/ioc-a/ioc-a.log", params={"line": "1000"})).text
        assert 'id="L900"' in middle
        assert 'id="L1399"' in middle
        assert 'id="L899"' not in middle
        assert 'id="L1400"' not in middle
        assert '<tr id="L1000" class="hit">' in middle


def test_a_wildcard_listener_is_named_by_the_host_in_links() -> None:
    host = socket.getfqdn()
    assert reachable("https://0.0.0.0:8443") == f"https://{host}:8443"
    assert reachable("http://[::]:80") == f"http://{host}:80"
    assert reachable("https://127.0.0.1:8443") == "https://127.0.0.1:8443"
    assert reachable("https://[::1]:8443") == "https://[::1]:8443"


async def test_sign_ins_are_audited(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        site.web.audit = AuditLog(tmp_path / "audit.jsonl")
        await site.signed_in("olga")
        await site.client().get("/login/not-a-token")
        records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert [(r["event"], r.get("user"), r["login"]) for r in records] == [
            ("login", "olga", "web"),
            ("login_failed", None, "web"),
        ]
        assert records[1]["reason"] == "bad_link"
        assert records[0]["from"].startswith("127.0.0.1:")


async def test_downloads_at_once_are_capped(tmp_path: Path) -> None:
    async with web_site(tmp_path, limits={"downloads": 1}) as site:
        (site.root / "logs" / "ioc-a.log").write_bytes(b"x" * 300_000)
        olga = await site.signed_in("olga")
        cookie = f"{COOKIE}={olga.cookies[COOKIE]}"
        reading, release = trio.Event(), trio.Event()
        statuses: list[int] = []

        async def slow_download() -> None:
            """A browser that takes the first chunk of a download, then stops reading."""
            scope = {
                "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "GET", "scheme": "https", "path": "/logs/ioc-a/ioc-a.log/download",
                "raw_path": b"/logs/ioc-a/ioc-a.log/download", "query_string": b"",
                "root_path": "",
                "headers": [(b"host", b"consrv.test"), (b"cookie", cookie.encode())],
                "client": ("127.0.0.1", 40002), "server": ("consrv.test", 443),
            }  # fmt: skip

            async def receive() -> dict[str, Any]:
                await release.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])
                elif message.get("body"):
                    reading.set()
                    await release.wait()

            await site.app(scope, receive, send)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_download)
            with deadline(5, "the first download to start"):
                await reading.wait()
            second = await olga.get("/logs/ioc-a/ioc-a.log/download")
            assert second.status_code == 429
            release.set()
        assert statuses == [200]
        third = await olga.get("/logs/ioc-a/ioc-a.log/download")
        assert third.status_code == 200
        assert len(third.content) == 300_000


async def test_a_failing_web_server_is_served_again_on_its_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault we cannot cause on demand (hypercorn's HTTP/2 once ended its whole server
    on a browser's reload): the front logs it and serves again; consrv goes on."""
    binds: list[list[str]] = []

    async def flaky(app: object, config: Any, *, task_status: trio.TaskStatus[list[str]]) -> None:
        binds.append(list(config.bind))
        task_status.started(["http://127.0.0.1:4711"])
        if len(binds) == 1:
            raise KeyError(25)
        await trio.sleep_forever()

    async with web_site(tmp_path) as site, trio.open_nursery() as nursery:
        front = WebFront(site.web, flaky)
        assert await nursery.start(front.serve) == "http://127.0.0.1:4711"
        await wait_for(lambda: len(binds) == 2)
        assert binds == [["127.0.0.1:0"], ["127.0.0.1:4711"]]
        assert front.restarts == 1
        assert "web view failed; serving it again in 1 s" in caplog.text
        assert all(console.up for console in site.registry.consoles.values())
        nursery.cancel_scope.cancel()
