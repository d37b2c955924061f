"""The floor under test: `bench.floor`, a bare asyncssh bridge on consrv's stack.

Owns: its console map and keys, starting and stopping it, its client command
lines (``ssh -tt`` / ``ssh -T`` with the console's name as the command).

Must not know: what is measured.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.procs import Reaper
from bench.servers.base import PythonServer, Ready, command_output, ssh_argv, wait_log
from consrv.ssh.keys import write_new_key


class Floor(PythonServer):
    """``python -m bench.floor``: what Python, trio and asyncssh cost before consrv's code."""

    label = "floor"
    viewer_ready = Ready(rb"@@@ Welcome to procServ", "stdout")  # procServ's banner, raw
    holds_connections = False
    connect_at_once = 8

    def __init__(
        self, workdir: Path, reaper: Reaper, key: Path, public_key: str,
        wrapper: Sequence[str] = (),
    ) -> None:  # fmt: skip
        super().__init__(workdir, reaper, "floor.log", key, public_key, wrapper)

    def start(self, consoles: Mapping[str, Path]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        table = self.workdir / "consoles.json"
        table.write_text(json.dumps({name: str(path) for name, path in consoles.items()}))
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.public_key + "\n")
        host_key = self.workdir / "host_key"
        if not host_key.exists():
            write_new_key(host_key, "bench floor host key")
        argv = [*self.wrapper, sys.executable, "-m", "bench.floor", "--consoles", str(table),
                "--host-key", str(host_key), "--authorized-keys", str(authorized)]  # fmt: skip
        with self.log.open("wb") as out:
            self._proc = self.reaper.popen(
                argv, stdout=out.fileno(), stderr=out.fileno(), cwd=Path(__file__).parents[2]
            )
        match = wait_log(
            self.log, rb"ssh listening on [\d.]+:(\d+)", self._proc, self.start_bound()
        )
        self.port = int(match.group(1))

    def interactive_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, "bench", console, tty=True)

    def viewer_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, "bench", console, tty=False)

    def login_argv(self) -> list[str]:
        return ssh_argv(self.port, self.key, "bench", "none", tty=False)

    def version(self) -> str:
        asyncssh = command_output(
            # importlib.metadata: importing asyncssh would print cryptography's DSA warning
            [sys.executable, "-c", "import importlib.metadata as m; print(m.version('asyncssh'))"]
        )
        return f"bare asyncssh {asyncssh} bridge (bench/floor.py)"
