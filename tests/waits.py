"""Bounded waits that say what they waited for.

A test that fails with a bare ``TooSlowError`` after 20 s tells nobody what did
not happen. Every wait in the suite goes through `deadline` (trio) or
`wait_until` (sync, for fixtures), whose failure names the awaited thing and, where
the caller gives one, what was seen instead. ``tests/test_waits.py`` keeps bare
``trio.fail_after`` out of the suite.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import trio


class Clock(Protocol):
    """What `wait_until` needs of a clock: the `time` module has both."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was seen."""


@contextmanager
def deadline(
    seconds: float, what: str, seen: Callable[[], object] | None = None
) -> Iterator[trio.CancelScope]:
    """``trio.fail_after(seconds)`` whose failure is ``WaitTimeout("... waiting for WHAT")``.

    ``seen``: called on failure, its result (the tail of the output so far, say)
    goes into the message.
    """
    try:
        with trio.fail_after(seconds) as scope:
            yield scope
    except trio.TooSlowError:
        raise WaitTimeout(_message(seconds, what, seen)) from None


def wait_until(
    condition: Callable[[], object],
    what: str,
    timeout: float = 10.0,
    interval: float = 0.05,
    seen: Callable[[], object] | None = None,
    clock: Clock = time,
) -> None:
    """Poll ``condition`` (sync) until it is true; `WaitTimeout` naming ``what`` if not.

    ``clock``: where ``monotonic`` and ``sleep`` come from (a test's fake clock).
    """
    end = clock.monotonic() + timeout
    while not condition():
        if clock.monotonic() > end:
            raise WaitTimeout(_message(timeout, what, seen))
        clock.sleep(interval)


def _message(seconds: float, what: str, seen: Callable[[], object] | None) -> str:
    text = f"gave up after {seconds:g} s waiting for {what}"
    if seen is not None:
        text += f"; seen: {_tail(seen())}"
    return text


def _tail(value: object, limit: int = 600) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value[-limit:])
        return repr(value)
    text = str(value)
    return text if len(text) <= limit else "..." + text[-limit:]
