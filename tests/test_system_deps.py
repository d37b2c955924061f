"""`make demo` installs only what the demo uses, and no package starts a service.

Policy: tools/system-deps runs for real, on a PATH that holds only the few programs a
fresh machine has (so every tool the tests use looks missing), with `apt-get` and
`sudo` replaced by scripts that record what they were asked and whether the
"start no service" policy was in force at that moment: no package is installed here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "system-deps"
BASICS = ("sh", "sort", "tr", "sed", "id", "printf", "cat", "chmod", "rm", "tee", "test")
TOOLBOX = {"chromium", "chromium-driver", "nginx", "prometheus", "nodejs", "dropbear-bin"}
# What the fake apt-get writes: its arguments, then what policy-rc.d answers now.
FAKE_APT = """#!/bin/sh
echo "apt-get $*" >> {log}
if [ -x {policy} ]; then {policy} nginx start; echo "policy says $?" >> {log}; \
else echo "no policy" >> {log}; fi
"""


def bare_path(tmp_path: Path) -> Path:
    """A bin directory with a fresh machine's basics only (no ssh, no procServ ...)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        found = shutil.which(name)
        if found is not None:
            (bin_dir / name).symlink_to(found)
    return bin_dir


def missing(tmp_path: Path, what: str) -> set[str]:
    env = {"PATH": str(bare_path(tmp_path))}
    result = subprocess.run(
        [str(SCRIPT), "--missing", what], env=env, capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_the_demo_needs_procserv_and_an_ssh_client_only(tmp_path: Path) -> None:
    assert missing(tmp_path, "demo") == {"procserv", "openssh-client"}


def test_the_tests_need_the_whole_toolbox(tmp_path: Path) -> None:
    wanted = missing(tmp_path, "test")
    assert {"procserv", "openssh-client", "systemd", "nodejs", "prometheus"} <= wanted
    assert TOOLBOX - {"chromium", "chromium-driver", "nginx"} <= wanted  # by path: installed
    assert {"sssd-ldap", "libnss-sss"} <= wanted  # identity with a real sssd (tests/sssd.py)


def test_the_makefile_demo_target_installs_with_demo_only(tmp_path: Path) -> None:
    plan = subprocess.run(
        ["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "tools/system-deps demo" in plan
    assert "tools/system-deps test" not in plan
    assert "requirements/test.txt" not in plan  # the demo's venv: runtime + soft IOC


@pytest.mark.parametrize("had_policy", [False, True])
def test_no_service_starts_while_packages_install(tmp_path: Path, had_policy: bool) -> None:
    bin_dir = bare_path(tmp_path)
    log, policy = tmp_path / "apt.log", tmp_path / "policy-rc.d"
    if had_policy:  # the machine's own policy: used as it is, and left alone
        policy.write_text("#!/bin/sh\nexit 104\n")
        policy.chmod(0o755)
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, policy=policy))
    apt.chmod(0o755)
    sudo = bin_dir / "sudo"
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(0o755)
    env = {"PATH": str(bin_dir), "CONSRV_POLICY_RC_D": str(policy)}
    subprocess.run([str(SCRIPT), "demo"], env=env, check=True, capture_output=True)
    lines = log.read_text().splitlines()
    install = next(line for line in lines if line.startswith("apt-get install"))
    assert install.split()[-2:] == ["openssh-client", "procserv"]
    assert "--no-install-recommends" in install
    answers = [line for line in lines if line.startswith("policy says")]
    assert answers == ["policy says 104"] * 2 if had_policy else ["policy says 101"] * 2
    assert policy.exists() == had_policy  # ours is gone, theirs stays
    assert os.access(policy, os.X_OK) or not had_policy
