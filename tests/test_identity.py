"""consrv.identity without SSH: the cache's rules, authorized_keys options, the command's runs.

The cache runs on trio's autojump clock (its "source" is a hand-written fake that
answers, fails or hangs); the command runs are real processes (/bin/sh scripts).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncssh
import pytest
import trio
import trio.testing
import yaml

from consrv.config import ConfigError, parse_config
from consrv.config.values import parse_command
from consrv.identity.authkeys import parse_authorized_keys, parse_owners
from consrv.identity.cache import Cache, SourceError, Unavailable
from consrv.identity.command import Account, KeyFacts, expand, run_command

TTL, NEGATIVE, GRACE, TIMEOUT = 10.0, 2.0, 30.0, 1.0


class Source:
    """A directory that answers, fails or hangs, counting the questions."""

    def __init__(self) -> None:
        self.asked = 0
        self.mode = "answer"
        self.value: str | None = "keys"

    async def fetch(self) -> str | None:
        self.asked += 1
        if self.mode == "hang":
            await trio.sleep_forever()
        if self.mode == "fail":
            raise SourceError("exit status 1")
        return self.value


def make_cache() -> Cache[str, str | None]:
    return Cache(
        "the source", ttl=TTL, negative_ttl=NEGATIVE, grace=GRACE, timeout=TIMEOUT,
        is_positive=lambda v: v is not None,
    )  # fmt: skip


async def test_fresh_answers_are_not_asked_again(autojump_clock: trio.testing.MockClock) -> None:
    cache, source = make_cache(), Source()
    assert await cache.get("alice", source.fetch) == "keys"
    await trio.sleep(TTL - 1)
    assert await cache.get("alice", source.fetch) == "keys"
    assert source.asked == 1
    await trio.sleep(1)
    await cache.get("alice", source.fetch)
    assert source.asked == 2


async def test_nothing_is_cached_for_the_negative_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, source = make_cache(), Source()
    source.value = None
    assert await cache.get("nobody", source.fetch) is None
    await trio.sleep(NEGATIVE - 0.5)
    await cache.get("nobody", source.fetch)
    assert source.asked == 1
    await trio.sleep(0.5)
    await cache.get("nobody", source.fetch)
    assert source.asked == 2


async def test_one_question_per_key_at_a_time(autojump_clock: trio.testing.MockClock) -> None:
    cache, source = make_cache(), Source()
    answers: list[str | None] = []

    async def ask() -> None:
        answers.append(await cache.get("alice", source.fetch))

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(ask)
    assert answers == ["keys"] * 5
    assert source.asked == 1


async def test_a_hanging_source_serves_the_cache_for_the_grace_then_fails_closed(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache, source = make_cache(), Source()
    await cache.get("alice", source.fetch)
    source.mode = "hang"
    await trio.sleep(TTL)
    started = trio.current_time()
    assert await cache.get("alice", source.fetch) == "keys"  # waited the timeout, then stale
    assert trio.current_time() - started == pytest.approx(TIMEOUT)
    assert cache.stats.down
    started = trio.current_time()
    for _ in range(3):  # down: answered at once from the cache
        assert await cache.get("alice", source.fetch) == "keys"
    assert trio.current_time() == started
    with pytest.raises(Unavailable):  # never cached, and a probe is out: at once
        await cache.get("bob", source.fetch)
    await trio.sleep(GRACE)
    with pytest.raises(Unavailable):
        await cache.get("alice", source.fetch)
    said = [r for r in caplog.records if "not answering" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.WARNING


async def test_the_source_answering_again_ends_the_outage(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache, source = make_cache(), Source()
    source.mode = "fail"
    with pytest.raises(Unavailable):
        await cache.get("alice", source.fetch)
    assert cache.stats.down
    source.mode = "answer"
    assert await cache.get("alice", source.fetch) == "keys"  # the probe
    assert not cache.stats.down
    assert any("answering again" in r.getMessage() for r in caplog.records)


class PerUser(Source):
    """A keys command that exits 1 for a user it does not know (sss_ssh_authorizedkeys)."""

    def __init__(self, known: set[str]) -> None:
        super().__init__()
        self.known = known

    def for_user(self, user: str) -> Callable[[], Awaitable[str | None]]:
        async def fetch() -> str | None:
            if user not in self.known:
                self.asked += 1
                raise SourceError("exit status 1: Error looking up public keys")
            return await self.fetch()

        return fetch


async def test_a_name_the_source_never_answered_fails_alone(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the source has answered, a run that fails for a name it never answered
    (a made-up login name) refuses that name only: the source is not down, and the
    next user is asked, not refused at once."""
    cache, source = make_cache(), PerUser({"alice", "carol"})
    assert await cache.get("alice", source.for_user("alice")) == "keys"
    for name in ("mallory", "eve", "mallory"):
        with pytest.raises(Unavailable):
            await cache.get(name, source.for_user(name))
    assert not cache.stats.down
    assert cache.stats.failures == 3
    assert await cache.get("carol", source.for_user("carol")) == "keys"
    assert source.asked == 5  # alice, three failures, carol
    assert not any("not answering" in r.getMessage() for r in caplog.records)


async def test_a_failure_for_a_name_it_answered_before_is_an_outage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, source = make_cache(), PerUser({"alice"})
    assert await cache.get("alice", source.for_user("alice")) == "keys"
    source.known.clear()  # the directory is gone: every run fails
    await trio.sleep(TTL)
    assert await cache.get("alice", source.for_user("alice")) == "keys"  # stale
    assert cache.stats.down
    with pytest.raises(Unavailable):  # down: never cached, refused
        await cache.get("bob", source.for_user("bob"))


async def test_a_background_probe_refreshes_a_cached_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cache, source = make_cache(), Source()
    async with trio.open_nursery() as nursery:
        cache.nursery = nursery
        await cache.get("alice", source.fetch)
        source.mode = "fail"
        await trio.sleep(TTL)
        await cache.get("alice", source.fetch)  # fails: down, stale
        source.mode, source.value = "answer", "new keys"
        assert await cache.get("alice", source.fetch) == "keys"  # at once; a probe behind it
        await trio.sleep(0.1)
        assert await cache.get("alice", source.fetch) == "new keys"
        assert not cache.stats.down


def test_old_answers_are_pruned() -> None:
    now = [0.0]
    cache: Cache[str, str | None] = Cache(
        "s", ttl=1, negative_ttl=1, grace=1, timeout=1, is_positive=bool, clock=lambda: now[0]
    )

    async def fill() -> None:
        for name in ("a", "b"):
            await cache.get(name, Source().fetch)

    trio.run(fill)
    now[0] = 5.0
    cache.prune()
    assert len(cache) == 0


# -- authorized_keys lines ------------------------------------------------------
PUBLIC = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
KEY = asyncssh.import_public_key(PUBLIC)  # as a client offers it
OTHER = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def test_plain_lines_and_from() -> None:
    keys = parse_authorized_keys(f'{OTHER}\nfrom="10.0.0.0/8" {PUBLIC}\n')
    assert not keys.problems
    now = time.time()
    assert keys.allows_key(KEY, "h", "10.1.2.3", now)
    assert not keys.allows_key(KEY, "h", "127.0.0.1", now)


@pytest.mark.parametrize("option", ['command="/bin/sh"', 'environment="A=b"', "no-pty", "restrict"])
def test_options_consrv_cannot_honour_refuse_the_line(option: str) -> None:
    keys = parse_authorized_keys(f"{option} {PUBLIC}\n")
    assert not keys
    assert "cannot be honoured by consrv" in keys.problems[0]


def test_harmless_restrictions_are_accepted() -> None:
    keys = parse_authorized_keys(f"no-agent-forwarding,no-X11-forwarding {PUBLIC}\n")
    assert keys.allows_key(KEY, "h", "127.0.0.1", time.time())


def test_expiry_time() -> None:
    keys = parse_authorized_keys(f'expiry-time="20300101Z" {PUBLIC}\n')
    assert keys.allows_key(KEY, "h", "127.0.0.1", time.time())
    assert not keys.allows_key(KEY, "h", "127.0.0.1", 1_900_000_000.0)  # 2030-03-17
    bad = parse_authorized_keys(f'expiry-time="soon" {PUBLIC}\n')
    assert "expected YYYYMMDD" in bad.problems[0]


def test_garbage_is_described_line_by_line() -> None:
    keys = parse_authorized_keys(f"hello\n\n# a comment\n{PUBLIC}\nssh-ed25519 AAAA\n")
    assert len(keys.lines) == 1
    assert keys.problems == (
        "line 1: not an authorized_keys line",
        "line 5: not an authorized_keys line",
    )


# -- the command ------------------------------------------------------------------
def test_tokens() -> None:
    facts = KeyFacts("SHA256:abc", "ssh-ed25519", b"\x01\x02")
    argv = expand(("/bin/x", "%u", "-%t-%f", "%k", "%U:%h", "100%%"), "alice", facts,
                  Account("2001", "/home/alice"))  # fmt: skip
    assert argv == (
        "/bin/x",
        "alice",
        "-ssh-ed25519-SHA256:abc",
        "AQI=",
        "2001:/home/alice",
        "100%",
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("sss_ssh_authorizedkeys %u", "absolute path"),
        ("/usr/bin/x %z", "unknown token %z"),
        ("/usr/bin/x 'unclosed", "cannot split"),
    ],
)
def test_bad_command_lines(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_command(line)


def script(tmp_path: Path, body: str) -> tuple[str, ...]:
    path = tmp_path / "cmd.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return (str(path),)


async def test_a_run_gives_its_output_with_a_clean_environment(tmp_path: Path) -> None:
    os.environ["CONSRV_TEST_SECRET"] = "x"
    try:
        out = await run_command(script(tmp_path, 'echo "$CONSRV_TEST_SECRET|$PATH|$(pwd)"\n'), None)
    finally:
        del os.environ["CONSRV_TEST_SECRET"]
    assert out == "|/usr/local/bin:/usr/bin:/bin|/\n"


async def test_a_failing_run_is_an_error_with_its_first_stderr_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="exited with status 3: no such user"):
        await run_command(script(tmp_path, "echo 'no such user' >&2; exit 3\n"), None)


async def test_too_much_output_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="printed more than"):
        await run_command(script(tmp_path, "yes 'ssh-ed25519 AAAA'\n"), None)


async def test_a_cancelled_run_is_killed_with_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    argv = script(tmp_path, f"sleep 30 & echo $! > {pid_file}; wait\n")
    with trio.move_on_after(1.0):
        await run_command(argv, None)
    child = int(await trio.Path(pid_file).read_text())
    await trio.sleep(0.2)
    assert not _alive(child), "the command's child outlived the cancelled run"


def _alive(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False


# -- config -------------------------------------------------------------------------
def test_identity_config_and_open_acl_names() -> None:
    config = parse_config(
        yaml.safe_load("""
ssh:
  authorized_keys_command: /usr/bin/sss_ssh_authorizedkeys %u
  authorized_keys_command_user: nobody
identity: {nss: true, ttl: 1m, grace: 2h}
consoles:
  lab: {tcp: "127.0.0.1:9", rw: ["@unix-ops", "carol"]}
"""),
        Path("/"),
    )
    assert config.identity is not None
    assert config.identity.command == ("/usr/bin/sss_ssh_authorizedkeys", "%u")
    assert (config.identity.ttl, config.identity.grace, config.identity.nss) == (60, 7200, True)


def test_without_a_directory_acl_names_must_be_known() -> None:
    with pytest.raises(ConfigError, match="unknown group"):
        parse_config({"consoles": {"lab": {"tcp": "127.0.0.1:9", "rw": ["@unix-ops"]}}}, Path("/"))
    assert parse_config({"identity": None}, Path("/")).identity is None  # nothing on


def test_the_key_owner_command_needs_the_keys_command_and_no_user_tokens() -> None:
    def parsed(ssh: dict[str, object], owner: str) -> object:
        data = {"ssh": ssh, "identity": {"key_owner_command": owner}}
        return parse_config(data, Path("/")).identity

    keys: dict[str, object] = {"authorized_keys_command": "/usr/bin/sss_ssh_authorizedkeys %u"}
    found = parsed(keys, "/usr/local/bin/owner %f %k")
    assert getattr(found, "owner_command", None) == ("/usr/local/bin/owner", "%f", "%k")
    with pytest.raises(ConfigError, match=r"identity\.key_owner_command: set without ssh"):
        parsed({}, "/usr/local/bin/owner %k")
    with pytest.raises(ConfigError, match="%u, %U and %h are not known"):
        parsed(keys, "/usr/local/bin/owner %u")
    assert getattr(parsed(keys, "/usr/local/bin/owner 100%%u"), "owner_command", None)


def test_the_owner_commands_output_is_user_names_only() -> None:
    output = "# owners\n\nalice\nalice\n../etc/passwd\nbob\n" + "".join(
        f"u{i}\n" for i in range(20)
    )
    names, refused = parse_owners(output)
    assert names == ("alice", "bob", "u0", "u1", "u2", "u3", "u4", "u5")  # at most 8, once each
    assert refused == 1  # a line that is no user name never reaches NSS or a command line


async def test_each_run_of_the_keys_command_is_counted_and_audited_once(tmp_path: Path) -> None:
    """An answering run is one ``ok`` record, a failing one one ``failed``: nothing
    else (a run that answered was once also counted and audited as a timeout)."""
    from consrv.audit import AuditLog
    from consrv.config.model_optional import IdentityConfig
    from consrv.identity.directory import Directory
    from tests.harness import safe_tempdir

    where = safe_tempdir("consrv-keys-")
    try:
        key = asyncssh.generate_private_key("ssh-ed25519")
        good = where / "good.sh"
        good.write_text(f"#!/bin/sh\necho '{key.export_public_key().decode().strip()}'\n")
        bad = where / "bad.sh"
        bad.write_text("#!/bin/sh\necho nope >&2\nexit 1\n")
        for path in (good, bad):
            path.chmod(0o755)
        audit = AuditLog(tmp_path / "audit.jsonl")
        blob = key.public_data
        for path, result in ((good, "ok"), (bad, "failed")):
            directory = Directory(IdentityConfig(command=(str(path), "%u")), audit)
            with pytest.raises(Unavailable) if result == "failed" else contextlib.nullcontext():
                await directory.authorized_keys("alice", key, blob, None)
            assert {name: n for name, n in directory.runs.items() if n} == {result: 1}
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        records = [yaml.safe_load(line) for line in lines]
        assert [r["result"] for r in records if r["event"] == "keys_command"] == ["ok", "failed"]
    finally:
        shutil.rmtree(where)
