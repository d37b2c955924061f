"""The web front as an attacker sees it, in process: session fixation, link replay,
Origin under DNS rebinding, CSP nonces, caching, error pages, downloads that look like
HTML, names in URLs, and the 429 answers of the bounded log readers.

Policy: as tests/web/test_app.py (a real Registry and Starlette app in the test's trio
loop, tests/web/site.py). The one fault made by hand is an exception inside a route
(monkeypatched), which nothing from outside can cause.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

import consrv.web.logs
from consrv.web.auth import COOKIE
from tests.web.site import ORIGIN, WebSocketDriver, site_config, web_site


async def test_a_cookie_brought_to_sign_in_never_becomes_a_session(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        planted = site.web.sessions.create("olga")  # a session the attacker holds
        response = await site.client().get(
            f"/login/{site.web.logins.mint('alice')}", headers={"cookie": f"{COOKIE}={planted}"}
        )
        given = response.cookies[COOKIE]
        assert given != planted
        assert site.web.sessions.user_of(given) == "alice"
        assert site.web.sessions.user_of(planted) is None  # ended at sign-in


async def test_a_used_link_signs_in_nobody_else(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        token = site.web.logins.mint("alice")
        alice = site.client()
        assert (await alice.get(f"/login/{token}")).status_code == 303
        bob = await site.signed_in("bob")
        replay = await bob.get(f"/login/{token}")
        assert replay.status_code == 403
        assert "set-cookie" not in replay.headers
        listing = (await bob.get("/api/consoles")).json()["consoles"]
        assert sorted(c["name"] for c in listing) == ["ioc-a", "secret"]  # still bob


async def test_with_a_url_the_host_header_does_not_make_an_origin(tmp_path: Path) -> None:
    """DNS rebinding: evil.example resolves to consrv; its page's Origin matches its Host."""
    async with web_site(tmp_path, url=ORIGIN) as site:
        olga = await site.signed_in("olga")
        rebound = {"host": "evil.example", "origin": "https://evil.example"}
        assert (await olga.post("/logout", headers=rebound)).status_code == 403
        assert (await olga.get("/")).status_code == 200  # still signed in
        cookie = f"{COOKIE}={olga.cookies[COOKIE]}"
        ws = WebSocketDriver(site.app, "/c/ioc-a/stream", {"cookie": cookie, **rebound})
        await ws.run()
        assert not ws.accepted()
        ok = await olga.post("/logout", headers={"origin": ORIGIN})
        assert ok.status_code == 200


async def test_every_page_has_its_own_style_nonce_and_is_not_stored(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        olga = await site.signed_in("olga")
        nonces = []
        for _ in range(2):
            page = await olga.get("/c/ioc-a")
            csp = page.headers["content-security-policy"]
            nonce = re.search(r"'nonce-([^']+)'", csp)
            assert nonce, csp
            assert f'<meta name="consrv-style-nonce" content="{nonce.group(1)}">' in page.text
            nonces.append(nonce.group(1))
            assert page.headers["cache-control"] == "no-store"
        assert nonces[0] != nonces[1]
        assert len(nonces[0]) >= 16


async def test_an_error_says_nothing_of_consrv_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with web_site(tmp_path) as site:
        secret = str(tmp_path / "logs" / "inside-path")

        def broken(log_dir: Path, console: str) -> list[object]:
            raise RuntimeError(f"cannot list {secret}")

        monkeypatch.setattr(consrv.web.logs, "log_files", broken)
        olga = await site.signed_in("olga")
        transport = httpx.ASGITransport(app=site.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(
            transport=transport, base_url=ORIGIN, cookies=olga.cookies
        ) as client:
            failed = await client.get("/logs/ioc-a/")
            not_allowed = await client.put("/")
        for response, status in ((failed, 500), (not_allowed, 405)):
            assert response.status_code == status
            assert response.headers["content-type"].startswith("text/html")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert str(tmp_path) not in response.text
            assert "Traceback" not in response.text
            assert "RuntimeError" not in response.text


@asynccontextmanager
async def with_console(root: Path, name: str) -> AsyncIterator[httpx.AsyncClient]:
    """The site with one more console, `name` (no procServ behind it); olga signed in."""
    data = site_config(root)
    data["consoles"][name] = {"socket": str(root / "more.sock")}
    async with web_site(root) as site:
        site.reload(data)
        yield await site.signed_in("olga")


async def test_a_log_that_looks_like_html_downloads_as_text(tmp_path: Path) -> None:
    async with with_console(tmp_path, "page.html") as olga:
        html = b"<!doctype html><script>alert(document.cookie)</script>\n"
        (tmp_path / "logs" / "page.html.log").write_bytes(html)
        listing = (await olga.get("/logs/page.html/")).text
        assert 'href="/logs/page.html/page.html.log/download"' in listing
        download = await olga.get("/logs/page.html/page.html.log/download")
        assert download.status_code == 200
        assert download.content == html
        assert download.headers["content-type"] == "text/plain; charset=utf-8"
        assert download.headers["x-content-type-options"] == "nosniff"
        assert download.headers["content-disposition"] == (
            "attachment; filename=\"page.html.log\"; filename*=UTF-8''page.html.log"
        )
        view = (await olga.get("/logs/page.html/page.html.log")).text
        assert "<script>alert" not in view


def test_a_download_name_cannot_break_its_header() -> None:
    header = consrv.web.logs.attachment('a"b\\c;é\r\n.log')
    fallback = re.fullmatch(r'attachment; filename="([^"]*)"; filename\*=UTF-8\'\'(\S+)', header)
    assert fallback, header
    assert fallback.group(1) == "a_b_c;___.log"
    assert fallback.group(2) == "a%22b%5Cc%3B%C3%A9%0D%0A.log"


@pytest.mark.parametrize(
    "path",
    [
        "/c/%C3%A9", "/c/ioc-a%2Fx", "/c/IOC-A", "/logs/%C3%A9/", "/logs/ioc-a%2F..%2Fsecret/",
        "/c/ioc%2Da/stream-not", "/logs/ioc-a/ioc-a.log%00", "/logs/ioc-a/%2E%2E%2Fsecret.log",
    ],
)  # fmt: skip
async def test_names_in_urls_match_exactly_or_not_at_all(tmp_path: Path, path: str) -> None:
    async with web_site(tmp_path) as site:
        (tmp_path / "logs" / "ioc-a.log").write_text("x\n")
        (tmp_path / "logs" / "secret.log").write_text("bob's\n")
        olga = await site.signed_in("olga")
        response = await olga.get(path)
        assert response.status_code == 404, path
        assert "bob's" not in response.text


async def test_names_in_links_are_percent_encoded(tmp_path: Path) -> None:
    async with with_console(tmp_path, "rack:1.ioc") as olga:
        listing = (await olga.get("/")).text
        assert 'href="/c/rack%3A1.ioc"' in listing
        assert 'href="/logs/rack%3A1.ioc/"' in listing
        page = await olga.get("/c/rack%3A1.ioc")
        assert page.status_code == 200
        assert 'data-stream="/c/rack%3A1.ioc/stream"' in page.text


async def hold(limiter: trio.CapacityLimiter, what: str) -> object:
    """Take the limiter's one place as a running search or download would."""
    holder = object()
    limiter.acquire_on_behalf_of_nowait(holder)
    assert limiter.available_tokens == 0, what
    return holder


async def test_searches_and_views_over_their_cap_get_429(tmp_path: Path) -> None:
    async with web_site(tmp_path, limits={"searches": 1}) as site:
        (tmp_path / "logs" / "ioc-a.log").write_text("needle\n")
        olga = await site.signed_in("olga")
        holder = await hold(site.web.searches, "a search running")
        search = await olga.get("/logs/ioc-a/", params={"q": "needle"})
        assert search.status_code == 429
        assert "Too many searches" in search.text
        view = await olga.get("/logs/ioc-a/ioc-a.log")
        assert view.status_code == 429
        assert (await olga.get("/logs/ioc-a/")).status_code == 200  # the listing reads no file
        assert (await olga.get("/logs/ioc-a/ioc-a.log/download")).status_code == 200  # own cap
        site.web.searches.release_on_behalf_of(holder)
        search = await olga.get("/logs/ioc-a/", params={"q": "needle"})
        assert search.status_code == 200
        assert "needle" in search.text
        assert (await olga.get("/logs/ioc-a/ioc-a.log")).status_code == 200


async def test_a_download_over_its_cap_gets_429_and_leaves_searches_alone(
    tmp_path: Path,
) -> None:
    async with web_site(tmp_path, limits={"downloads": 1}) as site:
        (tmp_path / "logs" / "ioc-a.log").write_text("needle\n")
        olga = await site.signed_in("olga")
        holder = await hold(site.web.downloads, "a download running")
        download = await olga.get("/logs/ioc-a/ioc-a.log/download")
        assert download.status_code == 429
        assert "Too many downloads" in download.text
        assert (await olga.get("/logs/ioc-a/", params={"q": "needle"})).status_code == 200
        site.web.downloads.release_on_behalf_of(holder)
        assert (await olga.get("/logs/ioc-a/ioc-a.log/download")).status_code == 200
