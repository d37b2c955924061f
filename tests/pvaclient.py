"""A real pvAccess client for the tests: p4p's, monitoring PVs and keeping every update.

`Monitors` subscribes to PV names through p4p's threaded client (UDP search on
loopback to the server's broadcast port, as any client on the network would) and
records each update with its value, alarm and timestamp, and the test's time of
arrival. Waits are bounded and name what they waited for (tests/waits.py), and
look at every update received, so a state that came and went is not missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from p4p.client.thread import Context, Subscription

from tests.waits import WaitTimeout, wait_until


def client_conf(server: Mapping[str, str] | int, addresses: str = "127.0.0.1") -> dict[str, str]:
    """A client's settings for a server on loopback: its UDP (broadcast) port, no auto list."""
    port = server if isinstance(server, int) else server["EPICS_PVAS_BROADCAST_PORT"]
    return {
        "EPICS_PVA_ADDR_LIST": addresses,
        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
        "EPICS_PVA_BROADCAST_PORT": str(port),
    }


@dataclass(frozen=True)
class Update:
    name: str
    value: Any  # the value (an enum's choice as text)
    severity: int
    status: int
    message: str
    stamp: float  # the PV's timeStamp, seconds since 1970
    arrived: float  # time.time() when the client got it
    raw: Any


def update_of(name: str, value: Any) -> Update:
    raw = value.raw
    plain = raw["value"]
    if raw.getID().startswith("epics:nt/NTEnum"):
        plain = raw["value.choices"][raw["value.index"]]
    stamp = raw["timeStamp.secondsPastEpoch"] + raw["timeStamp.nanoseconds"] * 1e-9
    return Update(
        name, plain, raw["alarm.severity"], raw["alarm.status"], raw["alarm.message"],
        stamp, time.time(), raw,
    )  # fmt: skip


class Monitors:
    """Monitors on PV names; every update kept, by name, in arrival order."""

    def __init__(self, conf: Mapping[str, str]) -> None:
        self.context = Context("pva", conf=dict(conf), useenv=False)
        self.updates: dict[str, list[Update]] = {}
        self.errors: dict[str, list[str]] = {}
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def watch(self, names: Iterable[str]) -> Monitors:
        for name in names:
            self.updates.setdefault(name, [])
            sub = self.context.monitor(name, self._callback(name), notify_disconnect=True)
            self._subs.append(sub)
        return self

    def _callback(self, name: str) -> Callable[[Any], None]:
        def got(value: Any) -> None:
            with self._lock:
                if isinstance(value, Exception):
                    if self.updates[name]:  # p4p says "Disconnected" before the first value too
                        self.errors.setdefault(name, []).append(repr(value))
                else:
                    self.updates[name].append(update_of(name, value))

        return got

    def history(self, name: str) -> list[Update]:
        with self._lock:
            return list(self.updates.get(name, []))

    def last(self, name: str) -> Update | None:
        seen = self.history(name)
        return seen[-1] if seen else None

    def wait_for(
        self,
        name: str,
        check: Callable[[Update], bool],
        what: str,
        *,
        after: float = 0.0,
        timeout: float = 15.0,
    ) -> Update:
        """The first update of ``name`` stamped at or after ``after`` that passes ``check``."""
        found: list[Update] = []

        def seen() -> bool:
            found[:] = [u for u in self.history(name) if u.stamp >= after and check(u)]
            return bool(found)

        wait_until(seen, f"{name}: {what}", timeout=timeout, seen=lambda: self._seen(name))
        return found[0]

    def _seen(self, name: str) -> str:
        rows = [(u.value, u.severity, u.message, round(u.stamp, 3)) for u in self.history(name)]
        return f"updates {rows[-8:]} errors {self.errors.get(name, [])[-3:]}"

    def get(self, name: str, timeout: float = 10.0) -> Update:
        return update_of(name, self.context.get(name, timeout=timeout))

    def close(self) -> None:
        for sub in self._subs:
            sub.close()
        self.context.close()

    def __enter__(self) -> Monitors:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def assert_monotonic(updates: list[Update]) -> None:
    stamps = [u.stamp for u in updates]
    assert stamps == sorted(stamps), f"timestamps go back: {stamps}"
    assert all(s > 1e9 for s in stamps), f"a timestamp near epoch 0: {stamps}"


__all__ = ["Monitors", "Update", "WaitTimeout", "assert_monotonic", "client_conf"]
