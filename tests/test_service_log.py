"""`log NAME [--since T] [--until T] [--grep TEXT]` and `web`, below SSH.

Policy: a real Registry over consoles whose procServ is not running (the log files
are written by the test); the channel is test_service's fake.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from consrv.commands import Shell
from consrv.config import parse_config
from consrv.contracts import NOT_FOUND, OK, USAGE, Login
from consrv.host import Host
from consrv.logfiles import LAST_LINE_BYTES
from consrv.logins import LoginTokens
from consrv.registry import Registry
from tests.test_service import ALICE, ALICE_OBSERVING, BOB, OLGA, FakeChannel

LINES = "".join(f"2026-12-03T21:{m:02d}:00.000+00:00 epics> dbl {m}\n" for m in range(0, 30, 5))


@asynccontextmanager
async def service(tmp_path: Path, logins: LoginTokens | None = None) -> AsyncIterator[Shell]:
    logs = tmp_path / "logs"
    logs.mkdir()
    half = LINES.index("21:15")  # ioc-a.log.1: minutes 0-10, ioc-a.log: 15-25
    half = LINES.rindex("\n", 0, half) + 1
    (logs / "ioc-a.log.1").write_text(LINES[:half])
    (logs / "ioc-a.log").write_text(LINES[half:] + "plain line\n")
    consoles = {
        "ioc-a": {"socket": str(tmp_path / "a.sock")},
        "nolog": {"socket": str(tmp_path / "n.sock")},
        "secret": {"socket": str(tmp_path / "s.sock"), "ro": [], "rw": ["bob"]},
    }
    data = {
        "log_dir": str(logs),
        "users": {"alice": {}, "bob": {}, "olga": {}},
        "defaults": {"rw": ["alice", "bob"], "ro": ["*"]},
        "consoles": consoles,
    }
    registry = Registry(parse_config(data, tmp_path))
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        yield Shell(Host(registry, logins=logins))
        nursery.cancel_scope.cancel()


async def run(service: Shell, login: Login, command: str) -> tuple[int, FakeChannel]:
    channel = FakeChannel()
    status = await service.handle(login, command, channel, pty=False, on_input=channel.on_input)
    return status, channel


async def test_log_prints_every_file_oldest_first(tmp_path: Path) -> None:
    async with service(tmp_path) as s:
        status, out = await run(s, OLGA, "log ioc-a")
        assert status == OK
        assert out.stdout == LINES + "plain line\n"


async def test_log_grep_and_time_range(tmp_path: Path) -> None:
    async with service(tmp_path) as s:
        status, out = await run(s, OLGA, "log ioc-a --grep 'dbl 1'")
        assert [line.split()[-1] for line in out.stdout.splitlines()] == ["10", "15"]
        command = "log ioc-a --since 2026-12-03T21:05:00+00:00 --until 2026-12-03T21:15Z"
        status, out = await run(s, OLGA, command)
        assert status == OK
        assert [line.split()[-1] for line in out.stdout.splitlines()] == ["5", "10", "15"]


async def test_log_has_tails_access_rules_and_statuses(tmp_path: Path) -> None:
    async with service(tmp_path) as s:
        status, out = await run(s, OLGA, "log secret")
        assert status == NOT_FOUND
        assert "unknown console 'secret'" in out.notices.decode()
        status, out = await run(s, BOB, "log nolog")
        assert (status, out.stdout) == (NOT_FOUND, "")
        assert "nolog has no log files" in out.notices.decode()
        status, out = await run(s, OLGA, "log ioc-a --since yesterday")
        assert status == USAGE
        assert "not a time" in out.notices.decode()
        status, out = await run(s, OLGA, "log")
        assert status == USAGE
        assert "usage: log NAME" in out.notices.decode()
        status, out = await run(s, OLGA, "log ../etc/passwd")
        assert status == NOT_FOUND
        assert out.stdout == ""


async def test_log_files_one_file_and_json_matches_for_a_gateway(tmp_path: Path) -> None:
    """The machine forms a gateway's log pages read a peer's console by."""
    async with service(tmp_path) as s:
        status, out = await run(s, OLGA, "log ioc-a --files --json")
        assert status == OK
        files = json.loads(out.stdout)["files"]
        assert [f["name"] for f in files] == ["ioc-a.log.1", "ioc-a.log"]
        assert files[1]["size"] == (tmp_path / "logs" / "ioc-a.log").stat().st_size
        status, out = await run(s, OLGA, "log ioc-a --file ioc-a.log.1")
        assert (status, out.stdout) == (OK, (tmp_path / "logs" / "ioc-a.log.1").read_text())
        status, out = await run(s, OLGA, "log ioc-a --json --grep 'dbl 1'")
        found = json.loads(out.stdout)
        assert [(m["file"], m["line"]) for m in found["matches"]] == [
            ("ioc-a.log.1", 3), ("ioc-a.log", 1)
        ]  # fmt: skip
        assert found["matches"][1]["stamp"] == "2026-12-03T21:15:00+00:00"
        assert found["stopped"] is None
        status, out = await run(s, OLGA, "log ioc-a --file ioc-a.log --grep plain --json")
        assert [m["text"] for m in json.loads(out.stdout)["matches"]] == ["plain line"]
        status, out = await run(s, OLGA, "log ioc-a --file ../ioc-a.log")
        assert (status, out.stdout) == (NOT_FOUND, "")  # only a name from the listing
        assert "no log file '../ioc-a.log'" in out.notices.decode()
        status, out = await run(s, OLGA, "log secret --files")
        assert (status, out.stdout) == (NOT_FOUND, "")


async def test_log_last_lines_of_one_file(tmp_path: Path) -> None:
    """``--last N``: a file's end read on its host, with the first line's number (--json)."""
    async with service(tmp_path) as s:
        path = tmp_path / "logs" / "ioc-a.log.1"
        lines = path.read_bytes().splitlines()
        status, out = await run(s, OLGA, "log ioc-a --file ioc-a.log.1 --last 2 --json")
        assert status == OK
        assert json.loads(out.stdout) == {
            "first": len(lines) - 1, "lines": [line.decode() for line in lines[-2:]]
        }  # fmt: skip
        status, out = await run(s, OLGA, "log ioc-a --file ioc-a.log.1 --last 10000")
        assert (status, out.stdout.encode()) == (OK, b"".join(x + b"\n" for x in lines))
        path.write_bytes(b"x" * 20000 + b"\n\xff\xfe tail")  # a long line, bytes kept
        status, out = await run(s, OLGA, "log ioc-a --file ioc-a.log.1 --last 5 --json")
        found = json.loads(out.stdout)
        assert found["first"] == 1
        assert len(found["lines"][0]) == LAST_LINE_BYTES
        assert found["lines"][1].encode("utf-8", "surrogateescape") == b"\xff\xfe tail"
        for bad in ("--last 0", "--last 10001", "--last x", "--last 5 --grep a"):
            status, out = await run(s, OLGA, f"log ioc-a --file ioc-a.log {bad}")
            assert (status, out.stdout) == (USAGE, ""), bad
            assert "--last" in out.notices.decode(), bad
        status, out = await run(s, OLGA, "log ioc-a --last 5")
        assert status == USAGE
        assert "--file FILE" in out.notices.decode()
        status, out = await run(s, OLGA, "log secret --file secret.log --last 5")
        assert (status, out.stdout) == (NOT_FOUND, "")


async def test_web_prints_a_one_time_link(tmp_path: Path) -> None:
    logins = LoginTokens()
    logins.base_url = "https://iochost:8443"
    async with service(tmp_path, logins) as s:
        status, out = await run(s, ALICE_OBSERVING, "web")
        assert status == OK
        prefix = "https://iochost:8443/login/"
        assert out.stdout.startswith(prefix)
        assert out.stdout.endswith("\n")
        assert logins.redeem(out.stdout[len(prefix) : -1]) == "alice"
        assert "works once" in out.notices.decode()
        status, out = await run(s, ALICE, "web now")
        assert status == USAGE


async def test_web_says_when_there_is_no_web_view(tmp_path: Path) -> None:
    async with service(tmp_path) as s:
        status, out = await run(s, ALICE, "web")
        assert (status, out.stdout) == (NOT_FOUND, "")
        assert "not enabled" in out.notices.decode()
