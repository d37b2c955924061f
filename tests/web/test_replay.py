"""The player's routes in-process: who may load which recording, and what the cast holds.

A real Registry over scripted procServ peers (tests/web/site.py); the recordings are
written by `consrv.recording.Recording` itself, with a fake clock.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

from consrv.recording import Recording
from tests.web.site import web_site

T0 = time.time() - 600  # ten minutes ago


def record(logs: Path, name: str, lines: int, gap: float = 1.0) -> None:
    clock = {"now": T0}
    rec = Recording(
        logs / f"{name}.cast", title=name, clock=lambda: clock["now"],
        monotonic=lambda: clock["now"],
    )  # fmt: skip
    for i in range(lines):
        rec.write_output(b"line %d\r\n" % i)
        if i == 2:
            rec.write_marker("attach alice rw")
        clock["now"] += gap
    rec.close()


async def test_the_player_and_its_cast_for_a_user_who_may_see_the_console(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        record(tmp_path / "logs", "ioc-a", 5)
        client = await site.signed_in("olga")
        page = await client.get("/play/ioc-a", params={"since": "1h"})
        assert page.status_code == 200
        assert 'src="/static/play.js"' in page.text
        assert 'data-cast="/play/ioc-a/cast?since=' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        cast = await client.get("/play/ioc-a/cast", params={"since": "1h"})
        assert cast.status_code == 200
        assert cast.headers["content-type"].startswith("application/x-asciicast")
        header, *events = [json.loads(line) for line in cast.text.splitlines()]
        assert header["version"] == 2
        assert header["title"] == "ioc-a"
        assert [e[2] for e in events if e[1] == "o"] == [f"line {i}\r\n" for i in range(5)]
        assert [e[2] for e in events if e[1] == "m"] == ["attach alice rw"]
        at = datetime.fromtimestamp(T0 + 3).astimezone().isoformat()
        around = await client.get("/play/ioc-a", params={"at": at})
        assert around.status_code == 200
        assert f'data-at="{T0 + 3}"'[:20] in around.text


async def test_a_range_selects_events(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        record(tmp_path / "logs", "ioc-a", 10)
        since = datetime.fromtimestamp(T0 + 2.5).astimezone().isoformat()
        until = datetime.fromtimestamp(T0 + 5.5).astimezone().isoformat()
        client = await site.signed_in("alice")
        cast = await client.get("/play/ioc-a/cast", params={"since": since, "until": until})
        events = [json.loads(line) for line in cast.text.splitlines()[1:]]
        assert [e[2] for e in events if e[1] == "o"] == [
            "line 3\r\n",
            "line 4\r\n",
            "line 5\r\n",
        ]


async def test_nobody_else_gets_a_recording(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        record(tmp_path / "logs", "secret", 3)
        client = await site.signed_in("olga")
        for path in ("/play/secret", "/play/secret/cast", "/play/nothing/cast",
                     "/play/..%2Fsecret/cast"):  # fmt: skip
            response = await client.get(path)
            assert response.status_code == 404, path
            assert "line" not in response.text
        assert (await site.client().get("/play/ioc-a/cast")).status_code == 401


async def test_a_bad_time_is_a_clear_400(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        client = await site.signed_in("alice")
        page = await client.get("/play/ioc-a", params={"since": "yesterday"})
        assert page.status_code == 400
        assert "not a time" in page.text
        cast = await client.get("/play/ioc-a/cast", params={"until": "x" * 100})
        assert cast.status_code == 400
