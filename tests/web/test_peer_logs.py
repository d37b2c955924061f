"""A peer's log pages on a gateway, in process: the web front fed through the
`contracts.FleetView` contract by a hand-written peer that answers ``log``/``cast``
from bytes the test gives it, in small chunks (tests/fleet/test_web_peers.py has the
real gateway with real peers). Checks what the pages make of the peer's answers:
the window of a file read as it streams, a download that is the peer's bytes (or
its refusal, before any byte), names checked before they reach a command line.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from consrv.contracts import NOT_FOUND, OK, USAGE, Channel, Input, Login
from consrv.web.peerlogs import valid_target
from tests.web.site import web_site

TARGET = "ioc-p@h1"
FILE = b"".join(b"2026-12-03T21:00:%02d.000+00:00 line %d\n" % (i % 60, i) for i in range(1, 2001))
CHUNK = 1000  # the peer sends this many bytes at a time


class Peer:
    """A gateway's fleet with one peer console, ``ioc-p`` on ``h1``; alice and olga see it."""

    def __init__(self, knows_last: bool = True) -> None:
        self.commands: list[list[str]] = []
        self.knows_last = knows_last  # False: a peer older than ``log --last``

    def fleet_rows(self, login: Login) -> list[dict[str, Any]]:
        if login.user == "bob":
            return []
        base = {"writer": None, "viewers": 0, "ioc": None, "last_output": None}
        return [{**base, "name": "ioc-p", "host": "h1", "state": "up", "local": False,
                 "id": "ioc-p"}]  # fmt: skip

    def fleet_missing(self) -> list[dict[str, Any]]:
        return []

    async def fleet_stream(
        self, login: Login, target: str, sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        return NOT_FOUND

    async def fleet_read(
        self, login: Login, words: list[str], sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        self.commands.append(words)
        if words[1] not in ("ioc-p", TARGET) or login.user != "alice":
            sink.write_notice(b"consrv: unknown console\n")
            return NOT_FOUND
        if "--last" in words and not self.knows_last:
            sink.write_notice(b"log: unknown option '--last'\n")
            return USAGE
        if words[2:] == ["--files", "--json"]:
            answer = {"files": [{"name": "ioc-p.log", "size": len(FILE), "mtime": 1.0e9}]}
            sink.write(json.dumps(answer).encode())
        elif words[2:5] == ["--file", "ioc-p.log", "--last"] and words[6:] == ["--json"]:
            lines = FILE.decode().splitlines()[-int(words[5]) :]
            first = FILE.count(b"\n") - len(lines) + 1
            sink.write(json.dumps({"first": first, "lines": lines}).encode())
        elif words[2:] == ["--file", "ioc-p.log"]:
            for start in range(0, len(FILE), CHUNK):
                sink.write(FILE[start : start + CHUNK])
                await trio.lowlevel.checkpoint()
        else:
            sink.write_notice(b"consrv: no log file\n")
            return NOT_FOUND
        return OK


def test_a_target_is_a_console_name_and_a_host() -> None:
    assert valid_target("ioc-p@h1")
    assert valid_target("ioc-p")
    for bad in ("../x@h1", "-x@h1", "ioc@", "ioc@a b", "list@h1", ""):
        assert not valid_target(bad), bad


async def test_a_peers_file_window_and_download(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        peer = Peer()
        site.web.fleet = peer
        client = await site.signed_in("alice")
        index = await client.get(f"/logs/{TARGET}/")
        assert index.status_code == 200
        assert 'href="/logs/ioc-p%40h1/ioc-p.log/download"' in index.text
        view = await client.get(f"/logs/{TARGET}/ioc-p.log", params={"line": "1000"})
        assert view.status_code == 200
        assert '<tr id="L1000" class="hit">' in view.text
        assert 'id="L900"' in view.text  # the window starts WINDOW // 5 lines before
        assert 'id="L899"' not in view.text
        assert 'id="L1399"' in view.text
        assert 'id="L1400"' not in view.text  # ... and the read ended once it was full
        last = await client.get(f"/logs/{TARGET}/ioc-p.log")
        assert 'id="L2000"' in last.text
        assert 'id="L1501"' in last.text
        assert 'id="L1500"' not in last.text  # the last 500 lines, found by the peer
        assert ["log", TARGET, "--file", "ioc-p.log", "--last", "500", "--json"] in peer.commands
        download = await client.get(f"/logs/{TARGET}/ioc-p.log/download")
        assert download.status_code == 200
        assert download.content == FILE
        assert "content-length" not in download.headers  # the peer's to know
        assert download.headers["content-disposition"].startswith("attachment;")
        refused = await client.get(f"/logs/{TARGET}/ioc-p.log.1/download")
        assert refused.status_code == 404
        bad = await client.get(f"/logs/{TARGET}/%2E%2E%2Fx/download")
        assert bad.status_code == 404
        assert all(words[:2] in (["log", TARGET], ["log", "ioc-p"]) for words in peer.commands)


async def test_a_peer_older_than_log_last_shows_a_files_end_as_before(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        peer = Peer(knows_last=False)
        site.web.fleet = peer
        client = await site.signed_in("alice")
        last = await client.get(f"/logs/{TARGET}/ioc-p.log")
        assert last.status_code == 200
        assert 'id="L2000"' in last.text
        assert 'id="L1501"' in last.text
        assert 'id="L1500"' not in last.text
        assert peer.commands[-1] == ["log", TARGET, "--file", "ioc-p.log"]  # read to the end


async def test_no_page_for_a_user_the_peer_or_the_list_refuses(tmp_path: Path) -> None:
    async with web_site(tmp_path) as site:
        peer = Peer()
        site.web.fleet = peer
        for user in ("bob", "olga"):  # bob: not in the list; olga: the peer says no
            client = await site.signed_in(user)
            for path in (f"/logs/{TARGET}/", f"/logs/{TARGET}/ioc-p.log",
                         f"/logs/{TARGET}/ioc-p.log/download", f"/play/{TARGET}/cast"):  # fmt: skip
                response = await client.get(path)
                assert response.status_code == 404, (user, path)
                assert "line 1" not in response.text
        assert [words[0] for words in peer.commands] == ["log", "log", "log", "cast"]  # olga's
