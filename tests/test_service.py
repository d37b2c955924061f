"""The SSH command line, below SSH: each command's output, JSON shape and exit status.

Policy: consoles are real `Console`s on scripted procServ peers (UNIX sockets in
tmp_path); the channel is a hand-written fake. The same commands run through
real OpenSSH and asyncssh clients in tests/integration/test_commands.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from consrv.audit import AuditLog
from consrv.commands import VERBS, CommandRun, Shell
from consrv.config import ConfigError, parse_config
from consrv.contracts import DENIED, FAILED, NOT_FOUND, OK, USAGE, Input, Login
from consrv.host import Host
from consrv.ioc import SystemctlError
from consrv.menu import pick
from consrv.registry import Registry
from tests.fakes import MemorySink, Peer, unix_server, wait_for

BANNER = b'@@@ Child "T" PID: 77\r\n\xff\xfb\x01\xff\xfd\x22'
ALICE = Login("alice", frozenset(), read_only=False, peer="127.0.0.1:5000", login="console")
BOB = Login("bob", frozenset(), read_only=False, peer="127.0.0.1:5001", login="console")
OLGA = Login("olga", frozenset(), read_only=False, peer="127.0.0.1:5002", login="console")
ALICE_OBSERVING = Login("alice", frozenset(), read_only=True, login="observer")


class FakeChannel(MemorySink):
    """A channel that keeps stdout apart and records who reads its input."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[Input] = []
        self.out = bytearray()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.out += data

    def on_input(self, reader: Input) -> None:
        self.inputs.append(reader)

    @property
    def stdout(self) -> str:
        return self.out.decode()


@dataclass
class Site:
    service: Shell
    peers: dict[str, Peer]
    nursery: trio.Nursery

    async def run(
        self, login: Login, command: str, *, pty: bool = False
    ) -> tuple[int, FakeChannel]:
        channel = FakeChannel()
        status = await self.service.handle(
            login, command, channel, pty=pty, on_input=channel.on_input
        )
        return status, channel

    def start(
        self, login: Login, command: str, *, pty: bool = False
    ) -> tuple[FakeChannel, Callable[[], int | None]]:
        """Run a command that keeps going (attach, tail -f, follow) in the background."""
        channel, result = FakeChannel(), []

        async def go() -> None:
            result.append(
                await self.service.handle(
                    login, command, channel, pty=pty, on_input=channel.on_input
                )
            )

        self.nursery.start_soon(go)
        return channel, lambda: result[0] if result else None


CONFIG: dict[str, Any] = {
    "users": {"alice": {}, "bob": {}, "olga": {}},
    "defaults": {"rw": ["alice", "bob"], "ro": ["*"]},
}


@asynccontextmanager
async def site(
    tmp_path: Path, names: tuple[str, ...] = ("ioc-a", "ioc-b", "other")
) -> AsyncIterator[Site]:
    consoles: dict[str, dict[str, Any]] = {}
    for name in names:
        consoles[name] = {"socket": str(tmp_path / f"{name}.sock")}
    consoles["secret"] = {"socket": str(tmp_path / "secret.sock"), "ro": [], "rw": ["bob"]}
    config = parse_config({**CONFIG, "consoles": consoles}, tmp_path)
    registry = Registry(config)
    async with AsyncExitStack() as stack:
        servers = {
            n: await stack.enter_async_context(unix_server(tmp_path / f"{n}.sock"))
            for n in consoles
        }
        nursery = await stack.enter_async_context(trio.open_nursery())
        await nursery.start(registry.run)
        peers = {n: await server.next_peer() for n, server in servers.items()}
        for peer in peers.values():
            await peer.send(BANNER)
        await wait_for(lambda: all(c.child_pid == 77 for c in registry.consoles.values()))
        yield Site(Shell(Host(registry)), peers, nursery)
        nursery.cancel_scope.cancel()


async def test_list_shows_only_visible_consoles_with_state(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        status, out = await s.run(OLGA, "list")
        assert status == OK
        lines = out.stdout.splitlines()
        assert lines[0].split() == ["NAME", "STATE", "WRITER", "VIEWERS"]
        assert [line.split()[0] for line in lines[1:]] == ["ioc-a", "ioc-b", "other"]
        status, out = await s.run(BOB, "list")
        assert "secret" in out.stdout


async def test_list_json_is_stable_and_complete(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        attached, _ = s.start(ALICE, "ioc-a")
        await wait_for(lambda: s.service.host.registry.consoles["ioc-a"].writer_name() == "alice")
        status, out = await s.run(OLGA, "list --json")
        assert status == OK
        data = json.loads(out.stdout)
        assert data["schema"] == 1
        first = data["consoles"][0]
        assert set(first) == {
            "name", "state", "upstream", "connected", "child_pid", "auto_restart", "write",
            "writer", "viewers", "last_output", "child_starts", "child_exits", "ioc",
        }  # fmt: skip
        assert (first["name"], first["state"], first["writer"], first["viewers"]) == (
            "ioc-a", "up", "alice", 1,
        )  # fmt: skip
        assert first["child_pid"] == 77
        assert first["ioc"] is None
        attached.inputs[0].eof()


async def test_who_lists_users_per_console(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        for login, command in ((ALICE, "ioc-a"), (BOB, "attach ioc-a"), (OLGA, "ioc-b")):
            channel, _ = s.start(login, command)
            await wait_for(lambda channel=channel: channel.inputs)  # type: ignore[misc]
        status, out = await s.run(OLGA, "who --json")
        assert status == OK
        users = [
            (u["console"], u["user"], u["mode"], u["login"])
            for u in json.loads(out.stdout)["users"]
        ]
        assert users == [
            ("ioc-a", "alice", "writer", "console"),
            ("ioc-a", "bob", "watching", "console"),
            ("ioc-b", "olga", "read-only", "console"),
        ]
        status, out = await s.run(OLGA, "who ioc-b")
        assert [line.split()[:3] for line in out.stdout.splitlines()[1:]] == [
            ["ioc-b", "olga", "read-only"]
        ]


async def test_status_one_console_and_all(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.peers["ioc-a"].stream.aclose()
        await wait_for(lambda: not s.service.host.registry.consoles["ioc-a"].up)
        status, out = await s.run(OLGA, "status ioc-a")
        assert status == OK
        assert out.stdout.startswith("console   ioc-a: down\n")
        status, out = await s.run(OLGA, "status")
        rows = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()[1:]}
        assert rows == {"ioc-a": "down", "ioc-b": "up", "other": "up"}
        status, out = await s.run(OLGA, "status ioc-b --json")
        assert json.loads(out.stdout)["consoles"][0]["state"] == "up"


async def test_tail_prints_the_last_lines_and_follows(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        await s.peers["ioc-a"].send(b"".join(b"line %d\r\n" % i for i in range(50)))
        await wait_for(
            lambda: b"line 49" in s.service.host.registry.consoles["ioc-a"].scrollback.data()
        )
        status, out = await s.run(OLGA, "tail ioc-a -n 3")
        assert (status, out.stdout) == (OK, "line 47\r\nline 48\r\nline 49\r\n")
        status, out = await s.run(OLGA, "tail -n5 ioc-a")
        assert out.stdout.count("line") == 5
        follow, result = s.start(BOB, "tail ioc-a -n 1 -f")
        await wait_for(lambda: follow.inputs)
        await s.peers["ioc-a"].send(b"new\r\n")
        await wait_for(lambda: b"new" in follow.data)
        follow.inputs[0].feed(b"typed")  # read-only: tail never writes
        follow.inputs[0].eof()
        await wait_for(lambda: result() == OK)
        assert bytes(follow.data) == b"line 49\r\nnew\r\n"
        assert await _nothing_sent(s.peers["ioc-a"])


async def test_follow_interleaves_matching_consoles_line_by_line(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        out, result = s.start(ALICE, "follow 'ioc-*'")
        await wait_for(lambda: out.inputs)
        await s.peers["ioc-a"].send(b"alpha one\r\nalpha ")
        await s.peers["ioc-b"].send(b"beta\r\n")
        await s.peers["other"].send(b"not followed\r\n")
        await s.peers["ioc-a"].send(b"two\r\n")
        await wait_for(lambda: b"alpha two" in out.data)
        out.inputs[0].eof()
        await wait_for(lambda: result() == OK)
        assert out.stdout == "ioc-a: alpha one\nioc-b: beta\nioc-a: alpha two\n"


async def test_attach_options_read_only_and_force(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        consoles = s.service.host.registry.consoles
        alice, _ = s.start(ALICE, "attach ioc-a")
        await wait_for(lambda: consoles["ioc-a"].writer_name() == "alice")
        bob, _ = s.start(BOB, "attach ioc-a --ro")
        await wait_for(lambda: bob.inputs)
        assert b"read-write, watching" in bob.notices
        s.start(BOB, "attach ioc-a --force")
        await wait_for(lambda: consoles["ioc-a"].writer_name() == "bob")
        assert b"bob forced write; you now watch" in alice.notices
        status, out = await s.run(OLGA, "attach ioc-a --force")
        assert status == DENIED
        assert b"read-only on ioc-a: cannot force write" in out.notices


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        ("ioc-x", NOT_FOUND, "unknown console 'ioc-x'; did you mean 'ioc-"),
        ("secret", NOT_FOUND, "unknown console 'secret'"),  # no role: not even its name
        ("../etc", NOT_FOUND, "invalid console name '../etc'"),
        ("tail", USAGE, "usage: tail NAME"),
        ("tail ioc-a -n 0", USAGE, "-n wants a number of lines"),
        ("tail ioc-a -n", USAGE, "-n needs a value"),
        ("list extra", USAGE, "list: too many arguments"),
        ("list --yaml", USAGE, "unknown option '--yaml'"),
        ("who a b", USAGE, "too many arguments"),
        ("help me", USAGE, "help takes no arguments"),
        ("frobnicate ioc-a", USAGE, "unknown command 'frobnicate'"),
        ("restart ioc-a; rm -rf /", USAGE, "restart: unknown option '-rf'"),
        ("restart ioc-a", NOT_FOUND, "ioc-a is not an IOC unit"),
        ("'unbalanced", USAGE, "cannot parse command"),
        ("attach ioc-a --ro --force", USAGE, "exclude each other"),
        ("follow 'zzz*'", NOT_FOUND, "no console matches 'zzz*'"),
        ("", USAGE, "no console named (use ssh -t for the menu)"),
    ],
)
async def test_errors_have_a_message_and_an_exit_status(
    tmp_path: Path, command: str, status: int, message: str
) -> None:
    async with site(tmp_path) as s:
        got, out = await s.run(OLGA, command)
        assert got == status
        assert message in out.notices.decode()
        assert out.notices.decode().count("\n") == 1
        assert out.stdout == ""


async def test_help_and_version(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        status, out = await s.run(OLGA, "help")
        assert status == OK
        assert "tail NAME [-n N] [-f]" in out.stdout
        status, out = await s.run(OLGA, "version")
        assert out.stdout.startswith("consrv ")


async def test_observer_login_is_read_only_even_with_a_read_write_user(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        out, _ = s.start(ALICE_OBSERVING, "ioc-a")
        await wait_for(lambda: out.inputs)
        out.inputs[0].feed(b"\x05ca\x05cfEVIL\r")
        out.inputs[0].eof()
        assert s.service.host.registry.consoles["ioc-a"].writer_name() is None
        assert await _nothing_sent(s.peers["ioc-a"])


async def test_menu_picks_by_number_name_or_prefix(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        menu, result = s.start(ALICE, "", pty=True)
        await wait_for(lambda: menu.inputs)
        assert "1  ioc-a" in menu.stdout.replace("\r\n", "\n")
        reader = menu.inputs[0]
        reader.feed(b"ioc\r")  # ambiguous
        await wait_for(lambda: b"could be: ioc-a, ioc-b" in menu.data)
        reader.feed(b"zz\r")
        await wait_for(lambda: b"no console 'zz'" in menu.data)
        reader.feed(b"ioc-x\x7fb\r")  # a typo, backspace, the name
        await wait_for(lambda: len(menu.inputs) == 2)
        assert b"attached to ioc-b: you write" in menu.notices
        menu.inputs[1].feed(b"\x05c.")
        await wait_for(lambda: result() == OK)


async def test_menu_quits_on_empty_line_and_hides_invisible_consoles(tmp_path: Path) -> None:
    async with site(tmp_path) as s:
        menu, result = s.start(OLGA, "", pty=True)
        await wait_for(lambda: menu.inputs)
        assert "secret" not in menu.stdout
        menu.inputs[0].feed(b"4\r")  # there are only three
        await wait_for(lambda: b"no console '4'" in menu.data)
        menu.inputs[0].feed(b"\r")
        await wait_for(lambda: result() == OK)


def test_a_console_named_like_a_command_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"consoles": {"status": {"socket": "/x"}, "who": {"tcp": "h:1"}}}, tmp_path)
    messages = [str(problem) for problem in caught.value.problems]
    assert messages == [
        "consoles.status: 'status' is a command word and cannot name a console",
        "consoles.who: 'who' is a command word and cannot name a console",
    ]


async def _nothing_sent(peer: Peer) -> bool:
    with trio.move_on_after(0.3):
        await peer.receive_until(1)
    return peer.received == b""


def test_pick_by_number_name_unique_prefix_or_candidates() -> None:
    names = ["ioc-a", "ioc-b", "other", "Other2"]
    assert pick("2", names) == "ioc-b"
    assert pick("5", names) == []
    assert pick("0", names) == []
    assert pick("ot", names) == "other"
    assert pick("ioc", names) == ["ioc-a", "ioc-b"]
    assert pick("oth", names) == "other"
    assert pick("other2", names) == "Other2"  # case-insensitive only when nothing else fits
    assert pick("zz", names) == []


class FakeIocs:
    """Stands in for IocManager: the real one is tested against systemd in
    tests/integration/test_lifecycle.py; this one fails on demand."""

    def __init__(self) -> None:
        self.health: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail = False

    async def restart(self, name: str) -> None:
        self.calls.append(("restart", name))
        if self.fail:
            raise SystemctlError("systemctl restart ioc@x.service", "Unit failed.", 1)

    async def refresh(self, names: list[str]) -> None:
        pass


async def test_ioc_actions_are_audited_with_user_source_and_result(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    config = parse_config(
        {
            "users": {"alice": {}},
            "ioc": {"scope": "user", "socket": str(tmp_path / "{name}.sock")},
            "consoles": {"llrf": {"operate": ["alice"], "rw": ["alice"]}},
        },
        tmp_path,
    )
    registry, iocs = Registry(config, audit), FakeIocs()
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        service = Shell(Host(registry, iocs))  # type: ignore[arg-type]
        channel = FakeChannel()
        status = await service.handle(
            ALICE, "restart llrf", channel, pty=False, on_input=channel.on_input
        )
        assert (status, channel.stdout) == (OK, "restarted llrf\n")
        iocs.fail = True
        status = await service.handle(
            ALICE, "restart llrf", channel, pty=False, on_input=channel.on_input
        )
        assert status == FAILED
        nursery.cancel_scope.cancel()
    records = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    actions = [(r["user"], r["console"], r["verb"], r["result"], r["from"]) for r in records]
    assert actions == [
        ("alice", "llrf", "restart", "done", "127.0.0.1:5000"),
        ("alice", "llrf", "restart", "failed", "127.0.0.1:5000"),
    ]
    assert iocs.calls == [("restart", "llrf"), ("restart", "llrf")]


def test_the_shell_carries_out_every_verb_of_the_grammar() -> None:
    """commands.grammar is the one list of verbs: the shell has a handler for each, no more."""
    registry = Registry(parse_config(CONFIG, Path("/")))
    run = CommandRun(Shell(Host(registry)), ALICE, FakeChannel(), False, lambda _: None)
    assert run.handlers().keys() == VERBS.keys()
