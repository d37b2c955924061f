"""Integration harness: consrv as a real process, user keys, config files.

Sync helpers, so they can back fixtures of any scope; the tests themselves are
trio functions that talk to these processes through real sockets.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from consrv.ssh.keys import write_new_key


@dataclass(frozen=True)
class UserKey:
    name: str
    private: Path
    public: str


def make_key(directory: Path, name: str) -> UserKey:
    """A fresh ed25519 key pair on disk, as ``ssh -i`` wants it."""
    private = directory / f"id_{name}"
    key = write_new_key(private, f"{name}@test")
    return UserKey(name, private, key.export_public_key().decode().strip())


# A keys command must live where only root can change it (sshd's safe_path, which
# consrv applies): not under /tmp (mode 1777), where a clone or pytest's tmp_path may be.
SAFE_ROOT = Path("/run")


def safe_tempdir(prefix: str) -> Path:
    """A new directory (mode 0755) whose every parent only root may write: for a keys
    command. The caller removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SAFE_ROOT))
    path.chmod(0o755)
    return path


def write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Consrv:
    """``consrv serve --config FILE`` in the background, stderr kept in a file.

    ``env``: consrv's whole environment (None: the test's own), e.g. a systemd user
    manager's ``XDG_RUNTIME_DIR`` and a ``PATH`` with a ``systemctl`` wrapper first.
    """

    def __init__(self, config: Path, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(env) if env is not None else None
        self.stderr_path = workdir / "consrv.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 15) -> Consrv:
        """Spawn, then wait until the SSH port is bound (``port`` is then set)."""
        self.spawn()
        match = self.wait_for_log(rb"ssh listening on [\d.]+:(\d+)", timeout)
        self.port = int(match.group(1))
        return self

    def metrics_port(self, timeout: float = 10) -> int:
        """The port of ``/metrics`` (``metrics.listen`` with port 0), from consrv's log line."""
        match = self.wait_for_log(rb"metrics on http://\S+?:(\d+)/metrics", timeout)
        return int(match.group(1))

    def spawn(self) -> Consrv:
        """Start the process and return at once (``start()`` also waits for the port)."""
        with self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "consrv", "serve", "--config", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=self.env,
            )  # fmt: skip
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_bytes().decode(errors="replace")

    def wait_for_log(self, pattern: bytes, timeout: float = 10) -> re.Match[bytes]:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.stderr_path.read_bytes())
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in consrv's stderr:\n{self.stderr()}")

    def stop(self, timeout: float = 5) -> int:
        """SIGTERM, as systemd does; the exit status (SIGKILL after ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise
        return self.process.returncode

    def open_fds(self) -> int:
        assert self.process is not None
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))
