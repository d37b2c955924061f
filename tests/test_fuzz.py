"""Fuzzing the parsers users can reach: the SSH command line and the config.

Properties (hypothesis): whatever a user sends as an SSH command, consrv answers
with a documented exit status and never raises, never writes to a console it
was not asked to attach, and never echoes control characters back unescaped;
whatever a config file holds, loading it gives a Config or a ConfigError whose
every problem names a key path, never another exception.
(The telnet, procServ-line and escape parsers have their own properties in
test_telnet.py, test_procserv.py and test_escape.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consrv.commands import Shell
from consrv.config import Config, ConfigError, Problem, parse_config
from consrv.contracts import DENIED, NOT_FOUND, OK, USAGE, Login
from consrv.host import Host
from consrv.registry import Registry
from tests.test_service import FakeChannel
from tests.waits import deadline

WORDS = ["list", "who", "status", "tail", "follow", "attach", "help", "version", "start",
         "stop", "restart", "-n", "-f", "--json", "--ro", "--force", "ioc-a", "ioc-*", "5",
         "../x", ";", "'", '"', "\\", "$(id)", "`id`", "\x00", "\x1b[2J", "é",
         "x" * 300]  # fmt: skip

command_lines = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join),
)

OLGA = Login("olga", frozenset(), read_only=False, login="console")


def registry_for(tmp_path: Path) -> Registry:
    config = parse_config(
        {
            "users": {"olga": {}},
            "consoles": {"ioc-a": {"socket": str(tmp_path / "a.sock")}},
        },
        tmp_path,
    )
    return Registry(config)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(command=command_lines)
async def test_any_command_line_gets_a_documented_status(tmp_path: Path, command: str) -> None:
    registry = registry_for(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        channel = FakeChannel()
        what = f"Service.handle({command!r}) to return or to end when cancelled at 0.5 s"
        with deadline(5, what, lambda: channel.notices):
            with trio.move_on_after(0.5) as waiting:  # attach/tail -f/follow keep going
                status = await Shell(Host(registry)).handle(
                    OLGA, command, channel, pty=False, on_input=channel.on_input
                )
        if waiting.cancelled_caught:
            status = OK
        nursery.cancel_scope.cancel()
    assert status in (OK, NOT_FOUND, USAGE, DENIED)
    errors = channel.notices.decode(errors="replace")
    if status in (NOT_FOUND, USAGE):
        assert errors.startswith("consrv: ")
    for char in errors:
        assert char in "\n" or char.isprintable(), f"unescaped {char!r} in {errors!r}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(["ssh", "users", "groups", "defaults", "consoles", "discover", "log",
                        "log_dir", "metrics", "ioc", "listen", "rw", "ro", "socket", "tcp",
                        "write", "escape", "patterns", "operate", "x"])  # fmt: skip
configs = st.dictionaries(
    keys, json_values | st.dictionaries(keys, json_values, max_size=4), max_size=6
)


@settings(max_examples=200, deadline=None)
@given(data=configs)
def test_any_config_gives_a_config_or_problems_with_key_paths(data: dict[str, Any]) -> None:
    problems: tuple[Problem, ...] = ()
    try:
        config: Config | None = parse_config(data, Path("/etc/consrv"))
    except ConfigError as exc:
        config, problems = None, exc.problems
    assert (config is None) == bool(problems)
    for problem in problems:
        assert problem.path
        assert problem.message
        assert "\n" not in str(problem)
