"""The PV server in a child process (consrv/pva/worker.py), seen from consrv: `RemoteServer`.

Owns the child: it starts it, sends it what changed (a batch per trio turn: every post
in order, none merged, so a state that lasted a millisecond still reaches monitors), starts
it again on the same ports if it dies (a log line, `restarts`), and stops it with
consrv. Its PVs are `RemotePv`s that keep what they last said, as `Pv` does, so a PV
whose reading did not change sends nothing and a restarted child gets every PV back.
Why a process (docs/performance.md, "Client storm"): pvxs' threads and p4p's Python
per client connection then share neither consrv's GIL nor its priority.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import trio

from consrv.pva.health import Kind, Reading, SilenceSpec

logger = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for a child to import p4p and bind (a loaded machine)
RESTART_DELAY = 1.0  # seconds before a dead child is started again
PORTS = ("EPICS_PVAS_SERVER_PORT", "EPICS_PVAS_BROADCAST_PORT")


class RemotePv:
    """One PV served by the child: what it last said, and the operations that say it."""

    def __init__(
        self,
        server: RemoteServer,
        name: str,
        kind: Kind,
        first: Reading,
        now: float,
        spec: Callable[[], SilenceSpec] | None,
        watched: Callable[[bool], None] | None,
    ) -> None:
        self.server, self.name, self.kind = server, name, kind
        self._spec, self._watched = spec, watched
        self._last, self._stamp = first, now
        self._sent_spec = spec() if spec is not None else None
        self.watching = False  # the child said: it has a subscriber
        self._stale = False  # the child posted a fresh value of its own since our last

    @property
    def last(self) -> Reading | None:
        return self._last

    def add_op(self) -> list[Any]:
        return ["add", self.name, _kind(self.kind), _reading(self._last), self._stamp,
                self._sent_spec, self._watched is not None]  # fmt: skip

    def post(self, reading: Reading, now: float) -> bool:
        """As `Pv.post`: sent only if it differs from the last (or the child's own fresh one)."""
        spec = self._spec() if self._spec is not None else None
        if reading == self._last and spec == self._sent_spec and not self._stale:
            return False
        self._last, self._stamp = reading, max(now, self._stamp)
        self._sent_spec, self._stale = spec, False
        self.server.queue(["post", self.name, _reading(reading), self._stamp, spec])
        return True

    def subscribed(self, first: bool) -> None:
        """The child's word: the first subscriber came (True) or the last left."""
        self.watching = first
        self._stale = self._stale or first  # it posted a fresh silence: ours may differ
        if self._watched is not None:
            self._watched(first)


class RemoteServer:
    """PVs served by a child process at nice 19; the same calls as `PvServer`."""

    def __init__(self, conf: Mapping[str, str], argv: list[str] | None = None) -> None:
        self._conf = dict(conf)
        self._argv = argv or [sys.executable, "-m", "consrv.pva.worker"]
        self.pvs: dict[str, RemotePv] = {}
        self.lowered: list[int] = []  # none of consrv's own threads: the child runs pvxs'
        self.restarts = 0  # children started again after one died
        self.pid: int | None = None
        self._bound: dict[str, str] = {}
        self._pending: list[list[Any]] = []
        self._wake = trio.Event()
        self._send_lock = trio.Lock()
        self._syncs = 0  # ["sync", n] sent
        self._synced = 0  # {"synced": n} heard
        self._sync_heard = trio.Event()

    # -- the calls PvaFront makes (trio thread, never blocking) --------------
    def conf(self) -> dict[str, str]:
        return dict(self._bound)

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
    ) -> RemotePv:
        """A new PV (``fresh`` is the in-process way; here the child computes it from ``spec``)."""
        pv = RemotePv(self, name, kind, first, now, spec, watched)
        self.pvs[name] = pv
        self.queue(pv.add_op())
        return pv

    def remove(self, name: str) -> None:
        if self.pvs.pop(name, None) is not None:
            self.queue(["remove", name])

    def stop(self) -> None:
        """Nothing: the child stops when `run` is cancelled (with consrv)."""

    def queue(self, op: list[Any]) -> None:
        """An operation for the next batch; in order, so that a state that came and went
        within one batch still reaches every monitor (an alarm server must see it)."""
        self._pending.append(op)
        self._wake.set()

    # -- the child ------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the child until cancelled, starting it again when it dies.

        A first child that cannot start raises (consrv does not start); a later one is
        logged and tried again.
        """
        started = False

        def serving() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                code: int | str | None = await self._run_once(serving)
            except (OSError, ValueError, RuntimeError, trio.BrokenResourceError,
                    trio.TooSlowError) as error:  # fmt: skip
                if not started:
                    raise
                code = str(error)
            self.restarts += 1
            logger.warning("pva: the PV server process (pid %s) %s; starting it again in %g s",
                           self.pid, _ended(code), RESTART_DELAY)  # fmt: skip
            await trio.sleep(RESTART_DELAY)

    async def sync(self) -> None:
        """Wait until the child has applied every operation queued so far."""
        self._syncs += 1
        n = self._syncs
        self.queue(["sync", n])
        while self._synced < n:
            await self._sync_heard.wait()

    async def _run_once(self, serving: Callable[[], None]) -> int | None:
        process = await trio.lowlevel.open_process(
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.pid = process.pid
        assert process.stdin is not None
        assert process.stdout is not None
        lines = _Lines(process.stdout)
        try:
            await process.stdin.send_all(json.dumps(self._conf).encode() + b"\n")
            with trio.fail_after(START_TIMEOUT):
                first = await lines.next()
            if first is None or "conf" not in first:
                raise RuntimeError(f"pva: the PV server process said {first!r}, not its settings")
            self._serving(first["conf"])
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_forever, process.stdin)
                serving()
                await self._read_until_end(lines)
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.terminate()
                with trio.move_on_after(5):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        return process.returncode

    def _serving(self, bound: dict[str, str]) -> None:
        """A child serves: keep its ports for the next one; give it every PV."""
        self._bound = bound
        for key in PORTS:
            self._conf[key] = bound.get(key, self._conf.get(key, "0"))
        self._pending = [pv.add_op() for pv in self.pvs.values()]  # the old child's are moot
        for pv in self.pvs.values():
            if pv.watching:  # the old child's subscribers are gone
                pv.subscribed(False)
        if self._syncs > self._synced:  # a sync the old child never answered
            self._pending.append(["sync", self._syncs])
        self._wake.set()

    async def _send_forever(self, stdin: trio.abc.SendStream) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            await trio.lowlevel.cancel_shielded_checkpoint()  # this turn's changes join the batch
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await stdin.send_all(json.dumps(batch).encode() + b"\n")
                except trio.BrokenResourceError:  # the child died: the reader sees its end
                    return

    async def _read_until_end(self, lines: _Lines) -> None:
        while (message := await lines.next()) is not None:
            if "watched" in message:
                pv = self.pvs.get(message["watched"])
                if pv is not None:
                    pv.subscribed(bool(message["first"]))
            elif "synced" in message:
                self._synced = int(message["synced"])
                self._sync_heard.set()
                self._sync_heard = trio.Event()


class _Lines:
    """JSON lines from the child's output."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream, self._buffer = stream, bytearray()

    async def next(self) -> dict[str, Any] | None:
        while (end := self._buffer.find(b"\n")) < 0:
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                return None
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        message: dict[str, Any] = json.loads(line)
        return message


def _reading(reading: Reading) -> list[Any]:
    return [reading.value, reading.severity, reading.status, reading.message]


def _kind(kind: Kind) -> dict[str, Any]:
    return {"code": kind.code, "choices": list(kind.choices), "units": kind.units,
            "low": kind.low, "high": kind.high, "description": kind.description}  # fmt: skip


def _ended(code: int | str | None) -> str:
    if code is None:
        return "stopped answering"
    if isinstance(code, str):
        return f"failed: {code}"
    if code < 0:
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
