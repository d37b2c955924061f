"""The ``consrv`` command as a user runs it: exit statuses and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def consrv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consrv", *args], capture_output=True, text=True, check=False
    )


def test_check_config_accepts_the_shipped_example() -> None:
    result = consrv("check-config", "--config", "config/consrv.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("consoles:\n  my-ioc: {sokcet: /run/x}\n")
    result = consrv("check-config", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"consrv: {config}: 1 problem",
        "  consoles.my-ioc.sokcet: unknown key, did you mean 'socket'?",
    ]
    assert result.stdout == ""


def test_check_config_names_a_missing_file(tmp_path: Path) -> None:
    result = consrv("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"consrv: {tmp_path / 'nope.yaml'}: cannot read: No such file or directory\n"
    )


def test_serve_refuses_a_bad_config_without_starting(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("ssh: {listen: [nonsense]}\n")
    result = consrv("serve", "--config", str(config))
    assert result.returncode == 2
    assert "ssh.listen[0]" in result.stderr


def test_version() -> None:
    result = consrv("version")
    assert result.returncode == 0
    assert result.stdout.startswith("consrv ")
