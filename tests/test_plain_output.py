"""What a newcomer's first commands print, below SSH: `tail` and `log` into a file or a
pipe (no escape codes, a final newline; `--raw` keeps the bytes), an unknown name (a
near name, else the names there are), and `who` saying the writer is one of those
attached.

Policy: as tests/test_service.py (real consoles on scripted procServ peers, the fake
channel). The same over the real OpenSSH client on a real pty:
tests/integration/test_first_hour.py.
"""

from __future__ import annotations

from pathlib import Path

from consrv.contracts import NOT_FOUND, OK
from tests.fakes import wait_for
from tests.test_service import ALICE, BOB, OLGA, site
from tests.test_service_log import run, service

PROMPT = b"\x1b[32;1mepics> \x1b[0m"


async def test_tail_without_a_pty_strips_escapes_and_ends_with_a_newline(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.peers["ioc-a"].send(b"dbl\r\nioc-a:counter\r\n" + PROMPT)
        await wait_for(
            lambda: PROMPT in s.service.host.registry.consoles["ioc-a"].scrollback.data()
        )
        status, out = await s.run(OLGA, "tail ioc-a -n 2")
        assert (status, out.stdout) == (OK, "ioc-a:counter\r\nepics> \n")
        status, out = await s.run(OLGA, "tail ioc-a -n 1 --raw")
        assert out.out == PROMPT + b"\n"  # the bytes as they came, and still a newline
        status, out = await s.run(OLGA, "tail ioc-a -n 1", pty=True)
        assert out.out == PROMPT + b"\r\n"  # a terminal shows the colours


async def test_tail_follow_without_a_pty_strips_escapes_split_across_reads(
    tmp_path: Path,
) -> None:
    async with site(tmp_path) as s:
        follow, result = s.start(BOB, "tail ioc-a -n 1 -f")
        await wait_for(lambda: follow.inputs)
        await s.peers["ioc-a"].send(PROMPT[:4])
        await s.peers["ioc-a"].send(PROMPT[4:] + b"dbl\r\n")
        await wait_for(lambda: b"dbl" in follow.out)
        follow.inputs[0].eof()
        await wait_for(lambda: result() == OK)
        assert bytes(follow.out).endswith(b"epics> dbl\r\n")
        assert b"\x1b" not in follow.out


async def test_log_without_a_pty_strips_escapes_and_raw_keeps_them(tmp_path: Path) -> None:
    async with service(tmp_path) as s:
        log = tmp_path / "logs" / "ioc-a.log"
        log.write_bytes(log.read_bytes() + b"2026-12-03T21:40:00.000+00:00 " + PROMPT + b"dbpr x\n")
        status, out = await run(s, OLGA, "log ioc-a --grep 'epics> dbpr'")  # found as seen
        assert (status, bytes(out.out)) == (OK, b"2026-12-03T21:40:00.000+00:00 epics> dbpr x\n")
        status, out = await run(s, OLGA, "log ioc-a --grep 21:40 --raw")
        assert out.out == b"2026-12-03T21:40:00.000+00:00 " + PROMPT + b"dbpr x\n"


async def test_an_unknown_name_gets_a_near_name_or_the_list(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        status, out = await s.run(OLGA, "ioc-x")
        assert status == NOT_FOUND
        assert "did you mean 'ioc-" in out.notices.decode()
        status, out = await s.run(OLGA, "nope")
        assert status == NOT_FOUND
        # every console olga may see, and none she may not ("secret")
        assert (
            out.notices.decode()
            == "consrv: unknown console 'nope'; consoles: ioc-a, ioc-b, other\n"
        )


async def test_who_says_the_writer_is_one_of_those_attached(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        consoles = s.service.host.registry.consoles
        s.start(ALICE, "attach ioc-a")
        await wait_for(lambda: consoles["ioc-a"].writer_name() == "alice")
        s.start(BOB, "attach ioc-a")
        await wait_for(lambda: len(consoles["ioc-a"].viewers) == 2)
        status, out = await s.run(OLGA, "who ioc-a")
        assert status == OK
        assert out.stdout.splitlines()[-1] == (
            "ioc-a: 2 attached (VIEWERS in list); alice writes and is one of them"
        )
        status, out = await s.run(OLGA, "list")
        assert out.stdout.splitlines()[1].split() == ["ioc-a", "up", "alice", "2"]
