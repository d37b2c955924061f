"""The ``consrv`` command as a user runs it: exit statuses and messages."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import Consrv


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


def test_serve_says_why_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "consrv.yaml"
        config.write_text(f"ssh: {{listen: ['127.0.0.1:{port}'], host_key: {tmp_path}/key}}\n")
        result = subprocess.run(
            [sys.executable, "-m", "consrv", "serve", "--config", str(config)],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
    assert result.returncode == 1
    assert "ERROR consrv.daemon: cannot serve: [Errno 98]" in result.stderr
    assert "stopped" not in result.stderr


def test_sighup_does_not_stop_the_server(tmp_path: Path) -> None:
    config = tmp_path / "consrv.yaml"
    config.write_text(f"ssh: {{listen: ['127.0.0.1:0'], host_key: {tmp_path}/key}}\n")
    server = Consrv(config, tmp_path).start()
    try:
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log(rb"reloaded .*consrv.yaml: no console changed")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            assert conn.recv(64).startswith(b"SSH-2.0-")
    finally:
        assert server.stop() == 0


def test_sigint_stops_the_server_like_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "consrv.yaml"
    config.write_text(f"ssh: {{listen: ['127.0.0.1:0'], host_key: {tmp_path}/key}}\n")
    server = Consrv(config, tmp_path).start()
    assert server.process is not None
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=5) == 0
    assert "SIGINT: stopping" in server.stderr()
    assert "INFO consrv.daemon: stopped" in server.stderr()


@pytest.mark.parametrize("argv", [["version"], ["--help"]])
def test_version_and_help_import_none_of_the_server(argv: list[str]) -> None:
    """``consrv version`` and ``--help`` answer at once: no asyncssh, pydantic or trio-asyncio
    (each command's modules are imported once it is chosen)."""
    code = (
        "import sys\nfrom consrv.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('asyncssh', 'pydantic', 'trio_asyncio', 'consrv.daemon')"
        " if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stderr.strip() == "[]"


def test_serve_without_web_imports_none_of_the_browser_view() -> None:
    """A host without ``web:`` does not carry the browser view's stack (Starlette's app,
    Jinja2, the pages: about 3 MB of RSS); ``daemon`` imports it once ``web:`` is on."""
    code = (
        "import sys\nimport consrv.daemon\n"
        "print(sorted(m for m in ('jinja2', 'starlette.applications', 'consrv.web.app',"
        " 'consrv.web.server') if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stderr.strip() == "[]"
