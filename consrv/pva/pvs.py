"""Read-only PVs over p4p: one `Pv` per name, posting only what changed, refusing every put.

Owns the normative types (NTEnum, NTScalar with display limits and units), the
alarm fields (severity, status, message) and real timestamps on every post (p4p
sends epoch 0 without one), the `Server` with its EPICS_PVAS_* settings (the
process environment is not read), and a put handler that refuses. `Pv.post` may be
called from the trio thread and, for a subscription's first value, from p4p's
(a lock keeps its last reading).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from p4p.nt import NTEnum, NTScalar
from p4p.server import Server, StaticProvider
from p4p.server.raw import SharedPV

from consrv.pva.health import Kind, Reading, SilenceSpec

__all__ = ["Kind", "Pv", "PvServer", "Reading", "SilenceSpec"]

# pvxs' own threads (its TCP and UDP event loops, its interface watcher): run below
# consrv's priority, so a pvAccess client storm yields the CPU to the consoles' path.
SERVER_THREADS = ("PVXTCP", "PVXUDP", "IfMapDaemon")
LOWER_PRIORITY = 10  # nice steps below consrv's own
REFUSED = "read-only: consrv takes no puts over pvAccess (a client's user name is self-asserted)"


@functools.cache
def _normative_type(code: str) -> Any:
    """One NT wrapper per value type, shared by every PV of that type (its Type is built once)."""
    if code == "enum":
        return NTEnum()
    return NTScalar(code, display=code != "s")


class _Handler:
    """Puts refused; the first subscriber gets a fresh value (`fresh`), `watched` is told."""

    def __init__(self, pv: Pv) -> None:
        self.pv = pv

    def put(self, shared: SharedPV, op: Any) -> None:
        op.done(error=REFUSED)

    def rpc(self, shared: SharedPV, op: Any) -> None:
        op.done(error=REFUSED)

    def onFirstConnect(self, shared: SharedPV) -> None:
        self.pv.subscribed(True)

    def onLastDisconnect(self, shared: SharedPV) -> None:
        self.pv.subscribed(False)


class Pv:
    """One read-only PV and what it last said."""

    def __init__(
        self,
        name: str,
        kind: Kind,
        first: Reading,
        now: float,
        *,
        fresh: Callable[[], tuple[Reading, float]] | None = None,
        watched: Callable[[bool], None] | None = None,
    ) -> None:
        self.name, self.kind = name, kind
        self._fresh, self._watched = fresh, watched
        self._lock = threading.Lock()
        self._last: Reading | None = None
        self._stamp = now  # the last timestamp sent: never goes back
        self.shared = SharedPV(handler=_Handler(self), nt=_normative_type(kind.code))
        self.shared.open(self._value(first), timestamp=now)
        self._last = first

    def _value(self, reading: Reading) -> dict[str, Any]:
        alarm = {"severity": reading.severity, "status": reading.status, "message": reading.message}
        kind = self.kind
        if kind.code == "enum":
            value: object = {"index": reading.value, "choices": list(kind.choices)}
            return {"value": value, "alarm": alarm}
        value = reading.value
        if kind.code == "s":
            return {"value": value, "alarm": alarm}
        display = {"units": kind.units, "limitLow": kind.low, "limitHigh": kind.high,
                   "description": kind.description}  # fmt: skip
        return {"value": value, "alarm": alarm, "display": display}

    def post(self, reading: Reading, now: float) -> bool:
        """Post `reading` stamped `now` if it differs from the last; True if posted.

        Two threads may post (a first subscriber's fresh value comes from p4p's): a time
        taken before the other's post is raised to it, so timestamps never go back.
        """
        with self._lock:
            if reading == self._last:
                return False
            self._last, self._stamp = reading, max(now, self._stamp)
            self.shared.post(self._value(reading), timestamp=self._stamp)
        return True

    @property
    def last(self) -> Reading | None:
        return self._last

    def subscribed(self, first: bool) -> None:
        """p4p's thread: the first subscriber came (True) or the last left (False)."""
        if first and self._fresh is not None:
            reading, now = self._fresh()
            self.post(reading, now)  # before the subscriber's first value goes out
        if self._watched is not None:
            self._watched(first)

    def close(self) -> None:
        self.shared.close()


class PvServer:
    """A p4p server for a changing set of `Pv`s, on the addresses `conf` names."""

    def __init__(self, conf: Mapping[str, str], name: str = "consrv") -> None:
        self.provider = StaticProvider(name)
        self.server = Server(providers=[self.provider], conf=dict(conf), useenv=False)
        self.pvs: dict[str, Pv] = {}
        self.lowered = lower_server_threads()

    def conf(self) -> dict[str, str]:
        """The settings in force (the ports bound, when 0 was asked for)."""
        return dict(self.server.conf())

    def add(self, pv: Pv) -> None:
        self.pvs[pv.name] = pv
        self.provider.add(pv.name, pv.shared)

    def make(
        self,
        name: str,
        kind: Kind,
        first: Reading,
        now: float,
        *,
        fresh: Callable[[], tuple[Reading, float]] | None = None,
        watched: Callable[[bool], None] | None = None,
        spec: Callable[[], SilenceSpec] | None = None,
    ) -> Pv:
        """A new PV, served at once (``spec`` is for a PV server in its own process)."""
        pv = Pv(name, kind, first, now, fresh=fresh, watched=watched)
        self.add(pv)
        return pv

    def remove(self, name: str) -> None:
        pv = self.pvs.pop(name, None)
        if pv is not None:
            self.provider.remove(name)
            pv.close()

    def stop(self) -> None:
        self.server.stop()


def lower_server_threads() -> list[int]:
    """Lower pvxs' threads (`SERVER_THREADS`) by `LOWER_PRIORITY` nice steps; their ids.

    Measured (docs/performance.md): during a storm of client connections p99 keystroke
    latency rose 99 % with them at consrv's priority, 32 % with them lowered. A lowered
    thread still holds the GIL only for a p4p callback of a few microseconds.
    """
    own = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = []
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            if name in SERVER_THREADS:
                os.setpriority(os.PRIO_PROCESS, int(tid), min(19, own + LOWER_PRIORITY))
                lowered.append(int(tid))
        except OSError:  # the thread ended meanwhile, or lowering is not allowed: keep going
            continue
    return lowered
