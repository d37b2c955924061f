"""The red team's bench (issue 13): a live consrv before real procServ, attacked for real.

Each test builds a `Lab` with `start_lab`: one procServ (options of the test's
choosing, such as ``-k ^K``) whose child records every byte it is given and
echoes it (``stty raw -echo; exec tee FILE``), ``consrv serve`` in front of it with a
``systemctl`` first in its PATH that records its arguments and does nothing else,
and a witness connected straight to procServ (what procServ itself said: a kill,
a toggle). Users come from the reliability bench: alice and bob read-write, olga
read-only; alice operates the IOC.

Policy: loopback and UNIX sockets in tmp_path only, port 0, every wait bounded and
named; consrv, procServ and the witness are stopped by the `site` fixture.
"""

from __future__ import annotations

import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from consrv.demo import ProcServ
from tests.reliability.conftest import Site, site
from tests.witness import Witness

__all__ = ["IOC", "Lab", "site", "start_lab", "wait_count"]

IOC = "sec-ioc"
FAKE_SYSTEMCTL = """#!/bin/sh
printf '%s\\n' "$*" >> {calls}
exit 0
"""
ACTIONS = ("start", "stop", "restart")


def recorder(out: Path) -> list[str]:
    """A child that records its input byte for byte in ``out`` and echoes it as output."""
    return ["/bin/sh", "-c", 'stty raw -echo; exec tee "$1"', "recorder", str(out)]


class OptionsProcServ(ProcServ):
    """procServ with extra options before the child's command (``-k ^K``, ``-x ^L``...)."""

    def __init__(self, name: str, root: Path, command: list[str], options: Sequence[str]) -> None:
        super().__init__(name, root, command, holdoff=1)
        self.options = list(options)

    def argv(self) -> list[str]:
        argv = super().argv()
        return [argv[0], *self.options, *argv[1:]]


@dataclass
class Lab:
    """One recorded IOC console under procServ, consrv in front, systemctl recorded."""

    site: Site
    procserv: OptionsProcServ
    received: Path  # every byte the child got
    calls: Path  # every systemctl call consrv made
    witness: Witness
    config: dict[str, Any]  # what start_lab gave site.config, for `reload`

    @property
    def port(self) -> int:
        return self.site.port

    def key(self, user: str) -> Path:
        return self.site.key(user)

    def actions(self) -> list[str]:
        """systemctl calls that would change a unit (not ``show`` / ``list-units``)."""
        lines = self.calls.read_text().splitlines() if self.calls.exists() else []
        return [line for line in lines if any(word in ACTIONS for word in line.split())]

    def recorded(self) -> bytes:
        return self.received.read_bytes() if self.received.exists() else b""

    async def wait_recorded(self, marker: bytes, timeout: float = 10) -> bytes:
        """Until the child has received ``marker``; everything it received."""
        deadline = trio.current_time() + timeout
        while marker not in (data := self.recorded()):
            if trio.current_time() > deadline:
                raise AssertionError(f"the child never received {marker!r}; it got {data!r}")
            await trio.sleep(0.02)
        return data

    async def probe(self, marker: bytes = b"PROBE") -> None:
        """Type ``marker`` straight into procServ until the child has it (it reads input)."""
        deadline = trio.current_time() + 15
        while marker not in self.recorded():
            if trio.current_time() > deadline:
                raise AssertionError(f"the child under procServ never received {marker!r}")
            self.witness.send(marker + b"\r")
            await trio.sleep(0.2)

    async def reload(self, console: Mapping[str, Any]) -> None:
        """Rewrite the console's entry, SIGHUP consrv, wait until it has reloaded."""
        consrv = self.site.consrv
        before = consrv.stderr().count("reloaded ")
        settings = {"socket": str(self.procserv.socket), "ioc": True, **console}
        self.site.config({IOC: settings}, **self.config)
        assert consrv.process is not None
        consrv.process.send_signal(signal.SIGHUP)
        deadline = trio.current_time() + 10
        while consrv.stderr().count("reloaded ") == before:
            if trio.current_time() > deadline:
                raise AssertionError(f"consrv did not reload:\n{consrv.stderr()[-2000:]}")
            await trio.sleep(0.02)

    def child_pids(self) -> list[int]:
        return self.procserv.child_pids()

    def audit(self) -> str:
        path = self.site.root / "audit.jsonl"
        return path.read_text() if path.exists() else ""

    def console_log(self) -> str:
        path = self.site.logs / f"{IOC}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_lab(
    site: Site,
    *,
    console: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    options: Sequence[str] = (),
    **top: Any,
) -> Lab:
    """procServ (with ``options``) running a recorder, and consrv in front of it."""
    received = site.root / "received"
    server = OptionsProcServ(IOC, site.root, recorder(received), options)
    site._stack.callback(server.stop)  # the bench stops it
    server.start()
    server.wait_ready()
    site.procservs[IOC] = server
    calls = site.root / "systemctl.calls"
    bin_dir = site.root / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "systemctl"
    wrapper.write_text(FAKE_SYSTEMCTL.format(calls=shlex.quote(str(calls))))
    wrapper.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(site.root)}
    settings = {"socket": str(server.socket), "ioc": True, **(console or {})}
    config: dict[str, Any] = {
        "defaults": {"operate": ["alice"], "viewer_buffer": "64K", **(defaults or {})},
        "ioc": {"scope": "user", "poll_interval": "1h", "discover": False},
        "audit_log": str(site.root / "audit.jsonl"),
        **top,
    }
    site.start({IOC: settings}, env=env, **config)
    witness = Witness(server.socket)
    site._stack.callback(witness.close)
    return Lab(site, server, received, calls, witness, config)


async def wait_count(buffer: bytearray, text: bytes, count: int, timeout: float = 20) -> None:
    """Until ``text`` appears ``count`` times in ``buffer`` (a client's output)."""
    deadline = trio.current_time() + timeout
    while (seen := buffer.count(text)) < count:
        if trio.current_time() > deadline:
            raise AssertionError(f"waited {timeout} s for {count} x {text!r}; saw {seen}")
        await trio.sleep(0.05)
