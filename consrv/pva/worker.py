"""``python -m consrv.pva.worker``: the PV server in its own process, fed by consrv over a pipe.

Owns the child's side of the pipe (consrv/pva/remote.py owns the parent's): it lowers
its own CPU priority (nice 19, before pvxs' threads exist, so they inherit it), serves
the PVs consrv sends, and tells consrv when a watched PV (``SilentFor``) gets its first
subscriber or loses its last. A pvAccess client storm then costs consrv's process
nothing: pvxs' threads and p4p's per-connection Python run here, under this process's
own GIL, below every console's priority.

The pipe, one JSON line per message. consrv to the worker: first the server settings
(an object), then batches (a list of operations):
``["add", name, kind, reading, stamp, spec, watch]``, ``["post", name, reading, stamp,
spec]``, ``["remove", name]``, ``["sync", n]``. The worker to consrv: ``{"conf":
settings in force}`` once it serves, ``{"watched": name, "first": bool}``, ``{"synced":
n}`` once every operation before ``["sync", n]`` is applied. It ends when its input
ends (consrv stopped or died). Knows nothing of consoles: each PV's reading is consrv's.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

from consrv.pva import health
from consrv.pva.pvs import Kind, PvServer, SilenceSpec

NICE = 19  # the lowest priority: PVs may lag under full CPU load, consoles never wait


def reading(raw: list[Any]) -> health.Reading:
    value, severity, status, message = raw
    return health.Reading(value, severity, status, message)


def kind(raw: dict[str, Any]) -> Kind:
    return Kind(**{**raw, "choices": tuple(raw.get("choices", ()))})


class Worker:
    """The PVs consrv asked for, and the line back to it."""

    def __init__(self, server: PvServer, out: BinaryIO) -> None:
        self.server, self._out = server, out
        self._out_lock = threading.Lock()
        self.specs: dict[str, SilenceSpec] = {}

    def say(self, message: dict[str, Any]) -> None:
        """Write one line to consrv (from the main thread or pvxs')."""
        with self._out_lock:
            self._out.write(json.dumps(message).encode() + b"\n")
            self._out.flush()

    def apply(self, ops: list[list[Any]]) -> None:
        for op in ops:
            getattr(self, "_" + op[0])(*op[1:])

    def _add(self, name: str, raw_kind: dict[str, Any], first: list[Any], stamp: float,
             spec: list[Any] | None, watch: bool) -> None:  # fmt: skip
        self._remove(name)  # a console removed and added again in one batch
        if spec is not None:
            self.specs[name] = (spec[0], spec[1], spec[2])
        fresh = self._fresh(name) if spec is not None else None
        watched = self._watched(name) if watch else None
        self.server.make(name, kind(raw_kind), reading(first), stamp, fresh=fresh, watched=watched)

    def _post(self, name: str, raw: list[Any], stamp: float, spec: list[Any] | None) -> None:
        pv = self.server.pvs.get(name)
        if spec is not None:
            self.specs[name] = (spec[0], spec[1], spec[2])
        if pv is not None:
            pv.post(reading(raw), stamp)

    def _remove(self, name: str) -> None:
        self.specs.pop(name, None)
        self.server.remove(name)

    def _sync(self, n: int) -> None:
        self.say({"synced": n})

    def _fresh(self, name: str) -> Callable[[], tuple[health.Reading, float]]:
        """pvxs' thread, a first subscriber: the silence now, from consrv's last word."""

        def fresh() -> tuple[health.Reading, float]:
            since, after, severity = self.specs[name]
            now = time.time()
            return health.silence_of(max(0.0, now - since), after, severity), now

        return fresh

    def _watched(self, name: str) -> Callable[[bool], None]:
        return lambda first: self.say({"watched": name, "first": first})


def lowest_priority() -> None:
    """Every thread of this process to `NICE` (numpy's, started on import, too); pvxs'
    threads, made later, inherit it from the main thread."""
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.setpriority(os.PRIO_PROCESS, int(tid), NICE)


def main() -> int:
    lowest_priority()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    server = PvServer(json.loads(stdin.readline()))
    worker = Worker(server, stdout)
    try:
        worker.say({"conf": server.conf()})
        for line in stdin:
            worker.apply(json.loads(line))
    except BrokenPipeError:  # consrv is gone
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
