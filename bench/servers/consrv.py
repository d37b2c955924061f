"""consrv under test: ``consrv serve`` with a generated config, on a loopback port.

Owns: the config (port 0, one user ``bench`` with read-write on every console,
console logs on as in production), starting and stopping the process, and its
client command lines (``ssh console@`` / ``ssh observer@``).

Must not know: what is measured.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from bench.procs import Reaper
from bench.servers.base import HOST, PythonServer, Ready, command_output, ssh_argv, wait_log

USER = "bench"


class Consrv(PythonServer):
    """``python -m consrv serve --config FILE`` (the venv's consrv)."""

    label = "consrv"
    viewer_ready = Ready(rb"\[consrv: attached to", "stderr")
    holds_connections = True
    connect_at_once = 8

    stop_grace = 10.0

    def __init__(
        self, workdir: Path, reaper: Reaper, key: Path, public_key: str,
        wrapper: Sequence[str] = (), source: tuple[str, Path] | None = None,
    ) -> None:  # fmt: skip
        """``source``: (label, directory) to run the ``consrv`` package in that directory
        (another revision's, see ``bench/run --against``) on this venv's libraries."""
        super().__init__(workdir, reaper, "consrv.log", key, public_key, wrapper)
        self.source: Path | None = None
        if source is not None:
            self.label, self.source = source

    def config(self, consoles: Mapping[str, Path]) -> dict[str, object]:
        """The config consrv runs with (a subclass may find its consoles otherwise)."""
        return {
            "ssh": {"listen": [f"{HOST}:0"], "host_key": str(self.workdir / "host_key")},
            "log_dir": str(self.workdir / "logs"),
            # 0.1.0's defaults, which docs/performance.md measured (docs/changes.md)
            "log": {"timestamps": False},
            "users": {USER: {"keys": [self.public_key]}},
            "defaults": {"rw": [USER], "ro": ["*"], "replay": 0},
            "consoles": {name: {"socket": str(path)} for name, path in consoles.items()},
        }

    def _write_config(self, consoles: Mapping[str, Path]) -> Path:
        config = self.config(consoles)
        path = self.workdir / "consrv.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False, width=1000), encoding="utf-8")
        return path

    def start(self, consoles: Mapping[str, Path]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config(consoles)
        with self.log.open("wb") as out:
            self._proc = self.reaper.popen(
                [*self.wrapper, sys.executable, "-m", "consrv", "serve", "--config", str(config)],
                stdout=out.fileno(),
                stderr=out.fileno(),
                cwd=self.source,  # `python -m` looks in the working directory first
            )
        bound = self.start_bound() + 0.1 * len(consoles)
        match = wait_log(self.log, rb"ssh listening on [\d.]+:(\d+)", self._proc, bound)
        self.port = int(match.group(1))

    def interactive_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, "console", console, tty=True)

    def viewer_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, "observer", console, tty=False)

    def login_argv(self) -> list[str]:
        return ssh_argv(self.port, self.key, "console", "version", tty=False)

    def version(self) -> str:
        # An older revision may predate consrv's filter of asyncssh's DSA warning.
        quiet = ["-W", "ignore"] if self.source is not None else []
        return command_output([sys.executable, *quiet, "-m", "consrv", "version"], cwd=self.source)
