"""Every wait in the suite names what it waits for: tests/waits.py, and a test that keeps it so.

A bare ``trio.fail_after`` fails with a ``TooSlowError`` that says nothing of what
did not happen; ``tests.waits.deadline`` says what was awaited and what was seen.
The walk below fails, naming file:line, on any ``trio.fail_after`` / ``trio.fail_at``
outside tests/waits.py (``trio.move_on_after`` is fine: its caller checks what
happened). The unit tests run on trio's autojump clock, or a hand-written clock for
the sync `wait_until`: no real time passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import trio
import trio.testing

from tests.waits import WaitTimeout, deadline, wait_until

TESTS = Path(__file__).parent
BARE = frozenset({"fail_after", "fail_at"})


def bare_timeouts(source: str, filename: str) -> list[str]:
    """``file:line`` of each ``trio.fail_after`` / ``trio.fail_at`` used in ``source``."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in BARE
            and isinstance(node.value, ast.Name)
            and node.value.id == "trio"
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "trio"
            and any(alias.name in BARE for alias in node.names)
        ):
            lines.append(node.lineno)
    return [f"{filename}:{line}" for line in sorted(lines)]


def test_no_test_waits_with_a_bare_fail_after() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path != TESTS / "waits.py":
            name = str(path.relative_to(TESTS.parent))
            found += bare_timeouts(path.read_text(encoding="utf-8"), name)
    assert found == [], (
        "use tests.waits.deadline(seconds, 'what is awaited', seen=...) instead of"
        " trio.fail_after / trio.fail_at at:\n  " + "\n  ".join(found)
    )


def test_the_walk_finds_each_spelling() -> None:
    source = (
        "import trio\n"
        "from trio import fail_at\n"
        "with trio.fail_after(1):\n"
        "    pass\n"
        "scope = trio.fail_at\n"
        "with trio.move_on_after(1):\n"
        "    pass\n"
    )
    assert bare_timeouts(source, "t.py") == ["t.py:2", "t.py:3", "t.py:5"]


# ---------------------------------------------------------------- deadline (trio)


async def test_deadline_names_what_and_the_tail_of_what_was_seen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    output = bytearray(b"x" * 1000 + b"epics> ")
    started = trio.current_time()
    with (
        pytest.raises(WaitTimeout) as caught,
        deadline(20, "b'iocRun' from the IOC", lambda: output),
    ):
        await trio.sleep(3600)
    assert trio.current_time() - started == pytest.approx(20)
    message = str(caught.value)
    assert message.startswith("gave up after 20 s waiting for b'iocRun' from the IOC; seen: ")
    assert message.endswith("epics> '")  # the tail, as a bytes repr
    assert "'" + "x" * 593 + "epics> '" in message  # the last 600 bytes, no more


async def test_deadline_without_seen_says_what_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with (
        pytest.raises(WaitTimeout, match=r"^gave up after 0\.5 s waiting for a peer$"),
        deadline(0.5, "a peer"),
    ):
        await trio.Event().wait()


async def test_a_long_text_seen_is_cut_at_its_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen = "first line\n" + "y" * 700
    with pytest.raises(WaitTimeout) as caught, deadline(1, "the state up", lambda: seen):
        await trio.sleep(2)
    assert str(caught.value).endswith("; seen: ..." + "y" * 600)


async def test_a_deadline_met_is_quiet(
    autojump_clock: trio.testing.MockClock,
) -> None:
    called = []
    with deadline(10, "a short sleep", lambda: called.append(1)) as scope:
        await trio.sleep(9)
    assert not scope.cancelled_caught
    assert called == []  # seen is only asked on failure


async def test_a_timeout_is_an_assertion_error_and_not_too_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """pytest reports it as a failed assertion; no TooSlowError escapes to hide it."""
    with pytest.raises(AssertionError) as caught, deadline(1, "nothing"):
        await trio.sleep(2)
    assert isinstance(caught.value, WaitTimeout)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_an_error_inside_is_not_turned_into_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def closes() -> None:
        await trio.sleep(1)
        raise EOFError("closed")

    with pytest.raises(EOFError, match="closed"), deadline(10, "a line"):
        await closes()


async def test_an_outer_deadline_names_itself_not_the_inner_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with (
        pytest.raises(WaitTimeout, match=r"waiting for the outer thing$"),
        deadline(1, "the outer thing"),
        deadline(5, "the inner thing"),
    ):
        await trio.sleep(10)


# ---------------------------------------------------------------- wait_until (sync)


class FakeTime:
    """The two functions of `time` that `wait_until` uses, on a clock that only sleeps move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.sleeps += 1


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def test_wait_until_returns_once_the_condition_holds(fake_time: FakeTime) -> None:
    wait_until(
        lambda: fake_time.sleeps >= 3, "three polls", timeout=10, interval=0.5, clock=fake_time
    )
    assert fake_time.now == pytest.approx(1001.5)


def test_wait_until_names_what_and_what_was_seen(fake_time: FakeTime) -> None:
    states = iter(["starting", "activating", "activating", "failed"] + ["failed"] * 100)
    last: list[str] = []

    def running() -> bool:
        last[:] = [next(states)]
        return last[0] == "running"

    with pytest.raises(WaitTimeout) as caught:
        wait_until(
            running, "ioc@t1 to be running", timeout=2, interval=0.5, seen=last.pop,
            clock=fake_time,
        )  # fmt: skip
    assert str(caught.value) == "gave up after 2 s waiting for ioc@t1 to be running; seen: failed"
    assert 2 < fake_time.now - 1000 <= 2.5  # gave up once the timeout had passed


def test_wait_until_true_at_once_never_sleeps(fake_time: FakeTime) -> None:
    wait_until(lambda: True, "anything", timeout=0, clock=fake_time)
    assert fake_time.sleeps == 0
