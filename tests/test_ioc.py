"""ioc.py and sdnotify.py without systemd: parsing, name checks, a scripted systemctl, a real
AF_UNIX datagram socket as NOTIFY_SOCKET.

Policy: the "systemctl" here is a small shell script in tmp_path that records its argv
and answers from files (a hand-written fake, a real process); every wait is bounded.
Real systemd is exercised in tests/integration/test_systemd.py.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from consrv.ioc import (
    SHOW_PROPERTIES,
    IocManager,
    Systemctl,
    SystemctlError,
    UnitHealth,
    check_template,
    parse_show,
    parse_timestamp,
    unit_name,
)
from consrv.names import InvalidName
from consrv.sdnotify import Notifier, watchdog_forever, watchdog_interval
from tests.waits import deadline

TEMPLATE = "ioc@{name}.service"
BAD_NAMES = ["", "..", "../etc", "-rf", "a b", "x;reboot", "ioc\n", "é", "a/b", "*", "x" * 65]

# `systemctl --user show -p <SHOW_PROPERTIES> ioc@t1.service ioc@nonexist.service`,
# captured from systemd 252 (a user manager on cgroup v1: no memory/CPU accounting).
CAPTURED_SHOW = """\
MainPID=29962
NRestarts=0
ExecMainStartTimestamp=Sat 2026-11-21 09:39:17 UTC
ExecMainStatus=0
MemoryCurrent=[not set]
CPUUsageNSec=[not set]
Id=ioc@t1.service
LoadState=loaded
ActiveState=active
SubState=running

MainPID=0
NRestarts=0
ExecMainStartTimestamp=
ExecMainStatus=0
MemoryCurrent=[not set]
CPUUsageNSec=[not set]
Id=ioc@nonexist.service
LoadState=loaded
ActiveState=inactive
SubState=dead
"""

# The same for a unit that was restarted automatically, with --timestamp=unix and
# accounting numbers as a cgroup v2 manager prints them.
ACCOUNTED_SHOW = """\
MainPID=30822
NRestarts=1
ExecMainStartTimestamp=@1795254048
ExecMainStatus=0
MemoryCurrent=21540864
CPUUsageNSec=1500000000
Id=ioc@t2.service
LoadState=loaded
ActiveState=active
SubState=running
"""

FAKE_SYSTEMCTL = """\
#!/bin/sh
# A stand-in for systemctl: records its argv, answers from files named after the verb.
dir=$(dirname "$0")
printf '%s\\n' "$*" >> "$dir/calls"
verb=
for a in "$@"; do case $a in -*) ;; *) verb=$a; break ;; esac; done
if [ -f "$dir/sleep" ]; then sleep "$(cat "$dir/sleep")"; fi
if [ -f "$dir/out.$verb" ]; then cat "$dir/out.$verb"; fi
if [ -f "$dir/err.$verb" ]; then cat "$dir/err.$verb" >&2; fi
if [ -f "$dir/rc.$verb" ]; then exit "$(cat "$dir/rc.$verb")"; fi
exit 0
"""


class FakeSystemctl:
    """The fake's directory: what it will answer, and what it was asked."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.program = directory / "systemctl"
        self.program.write_text(FAKE_SYSTEMCTL)
        self.program.chmod(0o755)

    def answer(self, verb: str, out: str = "", err: str = "", rc: int = 0) -> None:
        (self.dir / f"out.{verb}").write_text(out)
        (self.dir / f"err.{verb}").write_text(err)
        (self.dir / f"rc.{verb}").write_text(str(rc))

    def calls(self) -> list[str]:
        path = self.dir / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def systemctl(self, scope: str = "user", timeout: float = 10) -> Systemctl:
        return Systemctl(
            "user" if scope == "user" else "system", str(self.program), timeout=timeout
        )


@pytest.fixture
def fake(tmp_path: Path) -> FakeSystemctl:
    return FakeSystemctl(tmp_path)


# ---------------------------------------------------------------- parsing


def test_parse_show_splits_blocks_at_blank_lines() -> None:
    blocks = parse_show(CAPTURED_SHOW)
    assert [b["Id"] for b in blocks] == ["ioc@t1.service", "ioc@nonexist.service"]
    assert set(blocks[0]) == set(SHOW_PROPERTIES)
    assert blocks[1]["ExecMainStartTimestamp"] == ""


def test_parse_show_keeps_equals_signs_in_values() -> None:
    assert parse_show("Description=a=b\n\n\n") == [{"Description": "a=b"}]


def test_unit_health_of_a_running_unit() -> None:
    health = UnitHealth.from_properties(parse_show(CAPTURED_SHOW)[0])
    assert health == UnitHealth(
        unit="ioc@t1.service",
        load_state="loaded",
        active_state="active",
        sub_state="running",
        n_restarts=0,
        main_pid=29962,
        started_at=1795253957.0,  # Sat 2026-11-21 09:39:17 UTC
        exit_status=0,
        memory_bytes=None,
        cpu_seconds=None,
    )
    assert health.running


def test_unit_health_of_a_stopped_unit_has_no_pid_and_no_start() -> None:
    health = UnitHealth.from_properties(parse_show(CAPTURED_SHOW)[1])
    assert (health.active_state, health.main_pid, health.started_at) == ("inactive", None, None)
    assert not health.running


def test_unit_health_with_accounting_and_unix_timestamps() -> None:
    health = UnitHealth.from_properties(parse_show(ACCOUNTED_SHOW)[0])
    assert health.n_restarts == 1
    assert health.started_at == 1795254048.0
    assert health.memory_bytes == 21540864
    assert health.cpu_seconds == 1.5


@pytest.mark.parametrize("value", ["[not set]", "18446744073709551615", "", "n/a"])
def test_unset_numbers_are_none(value: str) -> None:
    health = UnitHealth.from_properties({"MemoryCurrent": value, "CPUUsageNSec": value})
    assert health.memory_bytes is None
    assert health.cpu_seconds is None


def test_activating_is_not_running() -> None:
    health = UnitHealth.from_properties({"ActiveState": "activating", "SubState": "auto-restart"})
    assert not health.running


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@1795254048", 1795254048.0),
        ("Sat 2026-11-21 09:40:48 UTC", 1795254048.0),
        ("Sat 2026-11-21 09:40:48.713298 UTC", 1795254048.713298),
        ("", None),
        ("n/a", None),
        ("@0", None),
        ("@x", None),
        ("Sat 2026-11-21 09:40:48 CET", None),  # a local zone: ambiguous, not guessed
        ("Sat 2026-13-21 09:40:48 UTC", None),
    ],
)
def test_parse_timestamp(text: str, expected: float | None) -> None:
    assert parse_timestamp(text) == expected


# ---------------------------------------------------------------- names and units


def test_unit_name() -> None:
    assert unit_name(TEMPLATE, "LLRF:crate.1_a-b") == "ioc@LLRF:crate.1_a-b.service"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unit_name_refuses_bad_names(name: str) -> None:
    with pytest.raises(InvalidName):
        unit_name(TEMPLATE, name)


@pytest.mark.parametrize(
    "template",
    ["ioc@.service", "ioc@{name}", "{name}", "ioc@{name}{name}.service", "a b@{name}.service"],
)
def test_bad_templates_are_refused(template: str) -> None:
    with pytest.raises(ValueError, match="unit template"):
        check_template(template)


def test_argv_is_a_list_with_no_prompts_and_no_pager() -> None:
    assert Systemctl("user").argv("start", "--", "ioc@a.service") == [
        "systemctl", "--user", "--no-ask-password", "--no-pager", "start", "--", "ioc@a.service",
    ]  # fmt: skip
    assert Systemctl("system").argv("stop")[:3] == ["systemctl", "--no-ask-password", "--no-pager"]


def test_scope_is_checked() -> None:
    with pytest.raises(ValueError, match="scope"):
        Systemctl("session")  # type: ignore[arg-type]


# ---------------------------------------------------------------- systemctl as a process


async def test_actions_run_systemctl_with_the_unit(fake: FakeSystemctl) -> None:
    manager = IocManager(fake.systemctl(), TEMPLATE)
    await manager.start("t1")
    await manager.restart("t1")
    await manager.stop("t1")
    assert fake.calls() == [
        f"--user --no-ask-password --no-pager {verb} -- ioc@t1.service"
        for verb in ("start", "restart", "stop")
    ]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_bad_names_never_reach_systemctl(fake: FakeSystemctl, name: str) -> None:
    manager = IocManager(fake.systemctl(), TEMPLATE)
    for action in (manager.start, manager.stop, manager.restart):
        with pytest.raises(InvalidName):
            await action(name)
    with pytest.raises(InvalidName):
        await manager.show(["good", name])
    assert fake.calls() == []


async def test_failure_is_one_line_with_the_exit_status(fake: FakeSystemctl) -> None:
    fake.answer(
        "start",
        err="Job for ioc@x.service failed because of unavailable resources or another system"
        ' error.\nSee "systemctl --user status ioc@x.service" for details.\n',
        rc=1,
    )
    with pytest.raises(SystemctlError) as caught:
        await IocManager(fake.systemctl(), TEMPLATE).start("x")
    assert str(caught.value) == (
        "systemctl start ioc@x.service failed: Job for ioc@x.service failed because of"
        " unavailable resources or another system error. (exit 1)"
    )
    assert caught.value.status == 1


async def test_control_characters_in_stderr_are_escaped(fake: FakeSystemctl) -> None:
    fake.answer("stop", err="\x1b[31mbad\x07 unit\n", rc=5)
    with pytest.raises(SystemctlError) as caught:
        await fake.systemctl().run("stop")
    assert "\\x1b[31mbad\\x07 unit (exit 5)" in str(caught.value)


async def test_a_hanging_systemctl_is_killed_after_its_timeout(fake: FakeSystemctl) -> None:
    (fake.dir / "sleep").write_text("30")
    with (
        deadline(10, "Systemctl to give up on a systemctl that hangs for 30 s"),
        pytest.raises(SystemctlError, match=r"no answer within 0\.3 s"),
    ):
        await fake.systemctl(timeout=0.3).run("start")


async def test_a_missing_program_is_a_systemctl_error(tmp_path: Path) -> None:
    systemctl = Systemctl("system", str(tmp_path / "nonexistent"))
    with pytest.raises(SystemctlError, match=r"cannot run .*nonexistent: No such file"):
        await systemctl.run("start")


async def test_show_is_one_batched_call_mapped_to_names(fake: FakeSystemctl) -> None:
    fake.answer("show", out=CAPTURED_SHOW)
    health = await IocManager(fake.systemctl(), TEMPLATE).show(["t1", "nonexist"])
    assert {name: h.active_state for name, h in health.items()} == {
        "t1": "active",
        "nonexist": "inactive",
    }
    properties = ",".join(SHOW_PROPERTIES)
    assert fake.calls() == [
        "--user --no-ask-password --no-pager show --timestamp=unix -p "
        f"{properties} -- ioc@t1.service ioc@nonexist.service"
    ]


async def test_show_of_nothing_calls_nothing(fake: FakeSystemctl) -> None:
    assert await IocManager(fake.systemctl(), TEMPLATE).show([]) == {}
    assert fake.calls() == []


async def test_instances_are_the_valid_names_of_the_template(fake: FakeSystemctl) -> None:
    fake.answer(
        "list-units",
        out="ioc@t1.service loaded active running EPICS IOC t1 (procServ)\n"
        "ioc@nf.service loaded activating auto-restart EPICS IOC nf (procServ)\n"
        "ioc@bad\\x20name.service loaded failed failed EPICS IOC bad name (procServ)\n"
        "ioc@-x.service loaded inactive dead EPICS IOC -x (procServ)\n"
        "\n",
    )
    assert await IocManager(fake.systemctl(), TEMPLATE).instances() == {"t1", "nf"}
    assert fake.calls() == [
        "--user --no-ask-password --no-pager list-units --all --plain --no-legend -- ioc@*.service"
    ]


async def test_autostart_starts_only_what_is_down(fake: FakeSystemctl) -> None:
    fake.answer("show", out=CAPTURED_SHOW)
    started = await IocManager(fake.systemctl(), TEMPLATE).autostart(["t1", "nonexist"])
    assert started == ["nonexist"]
    assert fake.calls()[1:] == ["--user --no-ask-password --no-pager start -- ioc@nonexist.service"]


async def test_autostart_goes_on_after_a_failure(
    fake: FakeSystemctl, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer("show", out=CAPTURED_SHOW.replace("active\nSubState=running", "failed"))
    fake.answer("start", err="Unit ioc@x.service is masked.\n", rc=1)
    assert await IocManager(fake.systemctl(), TEMPLATE).autostart(["t1", "nonexist"]) == []
    assert len(fake.calls()) == 3  # show, then both starts were tried
    assert "autostart of t1: systemctl start ioc@t1.service failed: Unit" in caplog.text


async def test_poll_forever_keeps_health_and_logs_a_failure_once(
    fake: FakeSystemctl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="consrv.ioc")
    fake.answer("show", out=CAPTURED_SHOW)
    manager = IocManager(fake.systemctl(), TEMPLATE, poll_interval=0.01)
    async with trio.open_nursery() as nursery:
        with deadline(10, "the first health poll (poll_forever started)"):
            await nursery.start(manager.poll_forever, lambda: ["t1"])
        assert manager.health["t1"].running
        fake.answer("show", err="Failed to connect to bus\n", rc=1)
        with deadline(10, "5 calls of the fake systemctl", fake.calls):
            while len(fake.calls()) < 5:
                await trio.sleep(0.01)
        assert manager.health["t1"].running  # the last good poll is kept
        fake.answer("show", out=CAPTURED_SHOW)
        with deadline(10, "'works again' logged once show answers", lambda: caplog.text):
            while "works again" not in caplog.text:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert caplog.text.count("IOC health poll failed") == 1
    assert "Failed to connect to bus (exit 1)" in caplog.text


# ---------------------------------------------------------------- sd_notify


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[socket.socket]:
    """A real datagram socket where systemd's would be."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(5)
        yield sock


def test_messages_are_exact_datagrams(tmp_path: Path, receiver: socket.socket) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier.ready("3 consoles")
    assert notifier.ready()
    assert notifier.status("serving 3 consoles, 2 sessions")
    assert notifier.reloading()
    assert notifier.stopping()
    assert notifier.watchdog()
    assert notifier.notify(STATUS="line one\nREADY=1")  # a value cannot add a field
    received = [receiver.recv(4096) for _ in range(7)]
    assert received == [
        b"READY=1\nSTATUS=3 consoles",
        b"READY=1",
        b"STATUS=serving 3 consoles, 2 sessions",
        b"RELOADING=1",
        b"STOPPING=1",
        b"WATCHDOG=1",
        b"STATUS=line one READY=1",
    ]
    notifier.close()


def test_abstract_socket_address() -> None:
    name = f"consrv-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"
        notifier.close()


def test_without_notify_socket_everything_is_a_silent_no_op(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert [notifier.ready(), notifier.watchdog(), notifier.stopping()] == [False] * 3
    assert caplog.records == []


def test_an_unusable_address_disables_notifying_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "relative/path"})
    assert not notifier.enabled
    assert not notifier.ready()
    assert "not a path or @name" in caplog.text


def test_a_vanished_receiver_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert caplog.text.count("sd_notify to") == 1
    notifier.close()


def test_bad_field_names_are_refused(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "notify"))
    with pytest.raises(ValueError, match="field name"):
        notifier.notify(**{"ready=1\nX": 1})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


async def test_watchdog_pings_every_half_interval(
    tmp_path: Path, receiver: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    notifier = Notifier(str(tmp_path / "notify"))
    with trio.move_on_after(22):  # virtual time: pings at 0, 5, 10, 15, 20
        await watchdog_forever(notifier, interval=10)
    receiver.setblocking(False)
    pings = []
    while True:
        try:
            pings.append(receiver.recv(4096))
        except BlockingIOError:
            break
    assert pings == [b"WATCHDOG=1"] * 5
    notifier.close()


async def test_watchdog_without_a_watchdog_returns_at_once(tmp_path: Path) -> None:
    with deadline(1, "watchdog_forever to return at once without an interval or a socket"):
        await watchdog_forever(Notifier(str(tmp_path / "notify")), interval=None)
        await watchdog_forever(Notifier(None), interval=10)
