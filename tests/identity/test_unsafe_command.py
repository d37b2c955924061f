"""A keys command sshd would refuse, consrv refuses: real files, real modes and owners.

OpenSSH's ``safe_path()`` (misc.c), as sshd applies it to an AuthorizedKeysCommand:
an absolute path whose real path is a regular file, it and every directory above it
owned by root (consrv also allows its own user) and writable by neither group nor
others. ``check-config`` fails (2), ``serve`` does not start (1), a reload that would
bring one in is refused and the running config (and its keys command) stays; one
made unsafe while consrv runs is refused at its next run. Each message names the
key and the unsafe component.

The files live under ``/run`` (tests/harness.safe_tempdir): /tmp, mode 1777, is
itself an unsafe component. The tests run as root, as the suite does (chown to
``nobody`` makes a file someone else's).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consrv.identity.command import program_problem
from tests.harness import Consrv, UserKey, make_key, safe_tempdir, write_config
from tests.sshclients import ssh_argv

pytestmark = pytest.mark.integration

NOBODY = 65534
KEY = "ssh.authorized_keys_command: unsafe program: "


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    path = safe_tempdir("consrv-unsafe-")
    try:
        yield path
    finally:
        shutil.rmtree(path)


def script(directory: Path, text: str = "#!/bin/sh\n", mode: int = 0o755) -> Path:
    path = directory / "keys.sh"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_safe_program_passes(bin_dir: Path) -> None:
    assert program_problem(str(script(bin_dir))) is None
    assert program_problem("/usr/bin/ssh") is None  # a Debian binary


def test_every_unsafe_component_is_named(bin_dir: Path, tmp_path: Path) -> None:
    keys = script(bin_dir)
    assert program_problem("keys.sh") == "keys.sh is not an absolute path"
    assert program_problem(f"{bin_dir}/missing") == f"{bin_dir}/missing: No such file or directory"
    assert program_problem(str(bin_dir)) == f"{bin_dir} is not a regular file"
    keys.chmod(0o644)
    assert program_problem(str(keys)) == f"{keys} is not executable"
    keys.chmod(0o775)
    assert program_problem(str(keys)) == (
        f"file {keys} is writable by its group or others (mode 0775)"
    )
    keys.chmod(0o755)
    bin_dir.chmod(0o757)
    assert program_problem(str(keys)) == (
        f"directory {bin_dir} is writable by its group or others (mode 0757)"
    )
    bin_dir.chmod(0o755)
    shutil.chown(keys, NOBODY)
    assert program_problem(str(keys)) == (
        f"file {keys} is owned by uid {NOBODY}, not root or consrv's user"
    )
    shutil.chown(keys, 0)
    shutil.chown(bin_dir, NOBODY)
    assert program_problem(str(keys)) == (
        f"directory {bin_dir} is owned by uid {NOBODY}, not root or consrv's user"
    )
    shutil.chown(bin_dir, 0)
    # A link is judged by where it leads (sshd takes the realpath): here, under /tmp.
    elsewhere = script(tmp_path)
    (bin_dir / "link").symlink_to(elsewhere)
    problem = program_problem(str(bin_dir / "link"))
    assert problem is not None
    assert problem.startswith("directory ")
    assert "writable by its group or others" in problem
    assert str(bin_dir) not in problem  # the safe link's own directory is not the problem


def config(root: Path, program: Path, alice: UserKey) -> Path:
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {
                "listen": ["127.0.0.1:0"],
                "host_key": str(root / "host_key"),
                "authorized_keys_command": f"{program} %u",
            },
            # Every login runs it, and a failed run is not covered by a cached answer.
            "identity": {"ttl": 0.001, "negative_ttl": 0.001, "grace": 0.001},
            "consoles": {"lab-ioc": {"tcp": "127.0.0.1:9", "rw": ["alice"]}},
        },
    )


def keys_for(directory: Path, alice: UserKey) -> Path:
    """A keys command that gives alice her key."""
    return script(directory, f'#!/bin/sh\n[ "$1" = alice ] && echo "{alice.public}"\nexit 0\n')


def consrv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "consrv", *args], capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip


def test_check_config_and_serve_refuse_an_unsafe_program(bin_dir: Path, tmp_path: Path) -> None:
    alice = make_key(tmp_path, "alice")
    path = config(tmp_path, keys_for(bin_dir, alice), alice)
    assert consrv("check-config", "--config", str(path)).returncode == 0
    bin_dir.chmod(0o775)
    checked = consrv("check-config", "--config", str(path))
    assert checked.returncode == 2
    expected = f"{KEY}directory {bin_dir} is writable by its group or others (mode 0775)"
    assert f"consrv: {expected}" in checked.stderr
    served = consrv("serve", "--config", str(path))
    assert served.returncode == 1
    assert f"cannot serve: {expected}" in served.stderr


def login(server: Consrv, alice: UserKey) -> subprocess.CompletedProcess[str]:
    argv = ssh_argv(server.port, alice.private, "alice", "list", tty=False)
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def test_a_reload_to_an_unsafe_program_is_refused_and_the_old_one_serves(
    bin_dir: Path, tmp_path: Path
) -> None:
    alice = make_key(tmp_path, "alice")
    path = config(tmp_path, keys_for(bin_dir, alice), alice)
    server = Consrv(path, tmp_path).start()
    try:
        assert login(server, alice).returncode == 0, server.stderr()
        unsafe_dir = bin_dir / "shared"
        unsafe_dir.mkdir(mode=0o775)
        unsafe_dir.chmod(0o775)
        config(tmp_path, keys_for(unsafe_dir, alice), alice)
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)
        server.wait_for_log(
            rb"reload failed, the running config stays: \S+: ssh\.authorized_keys_command: "
            rb"unsafe program: directory \S+/shared is writable by its group or others"
        )
        served = login(server, alice)  # the old command, from the config still in force
        assert served.returncode == 0, served.stderr + server.stderr()
        assert "lab-ioc" in served.stdout
        # Made unsafe under a running consrv: its next run is refused, as sshd's would be
        # (a cached answer could serve for identity.grace, as in any failed run).
        bin_dir.chmod(0o757)
        refused = login(server, alice)
        assert refused.returncode == 255
        server.wait_for_log(rb"keys command for alice failed: unsafe program: directory ")
    finally:
        server.stop()
