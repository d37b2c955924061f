"""No ``consrv`` command prints a library's warning (issue 22): what an admin sees on a
fresh install is consrv's own output and nothing else.

Each command runs as a user runs it: a new process with Python's default warning
filters (pytest's ``error`` filter does not reach a child), from the locked venv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import make_key, write_config

OWN_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) consrv[.:]")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    argv = [sys.executable, "-m", "consrv", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env)


@pytest.mark.parametrize(
    "args",
    [("--help",), ("version",), ("check-config", "--config", "config/consrv.yaml")],
    ids=["help", "version", "check-config"],
)
def test_a_command_prints_nothing_on_stderr(args: tuple[str, ...]) -> None:
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_serve_logs_only_its_own_lines(tmp_path: Path) -> None:
    user = make_key(tmp_path, "alice")
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
            "log_dir": str(tmp_path / "logs"),
            "users": {"alice": {"keys": [user.public]}},
        },
    )
    err_path = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARNINGS")}
    argv = [sys.executable, "-m", "consrv", "serve", "--config", str(config)]
    with err_path.open("wb") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=err, env=env)
    try:
        deadline = time.monotonic() + 15
        while b"ssh listening" not in err_path.read_bytes() and process.poll() is None:
            assert time.monotonic() < deadline, "consrv's 'ssh listening' line (15 s)"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
    lines = err_path.read_text().splitlines()
    assert any("ssh listening" in line for line in lines), lines
    assert [line for line in lines if not OWN_LINE.match(line)] == []
