"""The .deb for real: built, installed with apt-get, run as its unit says, upgraded, purged.

Runs as root on this Debian 12 machine (as CI does) and changes the machine: it
installs the package (user ``consrv``, group ``ioc``, /opt/consrv, /etc/consrv, ...)
and purges it at the end, also when it fails. The users stay, as Debian policy says.
It refuses to run where consrv's package is already installed.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

import pytest
import trio
import yaml

from tests.harness import UserKey, make_key
from tests.packaging.conftest import Built
from tests.packaging.installed import (
    apt_get,
    attach,
    package_status,
    run,
    running_unit,
    start_ioc,
)
from tests.pvaclient import Monitors, client_conf
from tests.waits import wait_until

pytestmark = pytest.mark.integration

IOC = "pkg-ioc"
CONFIG = Path("/etc/consrv/consrv.yaml")
HOST_KEY = Path("/var/lib/consrv/ssh_host_ed25519_key")
UNIT = Path("/lib/systemd/system/consrv.service")
EDIT_MARK = "# edited on this host: an upgrade must keep this line"


def owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    user, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    return user, group, stat.S_IMODE(st.st_mode)


def edit_config(key: UserKey, socket: Path) -> str:
    """The shipped config as a site edits it: a user, one console, port 0 on loopback."""
    config = yaml.safe_load(CONFIG.read_text())
    config["ssh"]["listen"] = ["127.0.0.1:0"]
    config["metrics"]["listen"] = "127.0.0.1:0"
    config["users"] = {"alice": {"keys": [key.public]}}
    config["groups"] = {"operators": ["alice"]}
    config["defaults"]["rw"] = ["alice"]
    config["consoles"] = {IOC: {"socket": str(socket)}}
    del config["discover"], config["ioc"]
    text = f"{EDIT_MARK}\n{yaml.safe_dump(config, sort_keys=False)}"
    CONFIG.write_text(text)
    return text


def serve_and_attach(key: UserKey, known_hosts: Path, workdir: Path, runtime: Path) -> None:
    """consrv as its unit runs it; a login to the console; consrv stopped again."""
    with running_unit(UNIT, workdir, runtime) as (unit, port):
        if not known_hosts.exists():
            known_hosts.write_text(f"[127.0.0.1]:{port} {HOST_KEY.with_suffix('.pub').read_text()}")
        else:  # the same key, now on this run's port
            line = known_hosts.read_text().split(" ", 1)[1]
            known_hosts.write_text(f"[127.0.0.1]:{port} {line}")
        trio.run(attach, port, key.private, known_hosts, IOC)
        assert "login alice as console" in unit.stderr(), unit.stderr()


@pytest.mark.usefixtures("purged_at_end")
def test_install_serve_upgrade_remove_purge(built: Built, ioc_root: Path, tmp_path: Path) -> None:
    first, second = built.deb, built.newer_deb
    apt_get("install", str(first))
    assert package_status() == "install ok installed 0.1.0-1"

    # What the package made: users, directories and their owners, the program.
    assert pwd.getpwnam("consrv").pw_shell == "/usr/sbin/nologin"
    assert "consrv" not in grp.getgrnam("ioc").gr_mem  # the unit adds it (SupplementaryGroups=)
    assert owner(Path("/var/lib/consrv")) == ("consrv", "consrv", 0o750)
    assert owner(Path("/var/log/consrv")) == ("consrv", "consrv", 0o750)
    assert owner(CONFIG) == ("root", "consrv", 0o640)
    assert os.readlink("/usr/bin/consrv") == "/opt/consrv/bin/consrv"
    assert "ExecStart=/usr/bin/consrv serve" in UNIT.read_text()
    assert Path("/usr/share/doc/consrv/operations.md").exists()
    run(["consrv", "check-config", "--config", str(CONFIG)])  # the shipped config

    key = make_key(tmp_path, "alice")
    with start_ioc(IOC, ioc_root) as procserv:
        procserv.wait_ioc()
        edited = edit_config(key, procserv.socket)
        known_hosts = tmp_path / "known_hosts"
        serve_and_attach(key, known_hosts, tmp_path, ioc_root)
        assert owner(HOST_KEY)[:2] == ("consrv", "consrv")
        host_key = HOST_KEY.read_bytes()
        assert owner(Path(f"/var/log/consrv/{IOC}.log"))[0] == "consrv"

        # A newer build over it: the edited config and the host key stay.
        apt_get("install", str(second))
        assert package_status() == "install ok installed 0.1.0-2"
        assert CONFIG.read_text() == edited
        assert HOST_KEY.read_bytes() == host_key
        # The known_hosts line of the first run: StrictHostKeyChecking=yes proves the same key.
        serve_and_attach(key, known_hosts, tmp_path, ioc_root)

    # remove: the program goes; config, host key and logs stay.
    apt_get("remove", "consrv")
    assert package_status() == "deinstall ok config-files 0.1.0-2"
    assert not Path("/opt/consrv").exists()
    assert not Path("/usr/bin/consrv").is_symlink()
    assert not UNIT.exists()
    assert CONFIG.read_text() == edited
    assert HOST_KEY.read_bytes() == host_key
    assert Path(f"/var/log/consrv/{IOC}.log").exists()

    # purge: config, state and logs go; the users stay (Debian policy).
    apt_get("purge", "consrv")
    assert package_status() == ""
    for gone in ("/etc/consrv", "/var/lib/consrv", "/var/log/consrv"):
        assert not Path(gone).exists(), gone
    assert pwd.getpwnam("consrv").pw_dir == "/var/lib/consrv"


PVA_HOST = "pkghost"  # the {host} in the PV names


@pytest.mark.usefixtures("purged_at_end")
def test_pvs_from_the_consrv_pva_package(built: Built, ioc_root: Path, tmp_path: Path) -> None:
    """consrv-pva adds the pva extra to /opt/consrv: a config with ``pva:`` serves PVs a
    p4p client reads; without the package the same config fails its check, naming p4p."""
    apt_get("install", str(built.deb), str(built.pva_deb))
    assert package_status("consrv-pva") == "install ok installed 0.1.0-1"
    sizes = run(["dpkg-query", "-W", "-f=${Installed-Size} ", "consrv", "consrv-pva"]).split()
    assert all(int(size) > 0 for size in sizes), sizes
    run(["/opt/consrv/bin/python3.11", "-c", "import p4p.server, numpy"])

    key = make_key(tmp_path, "alice")
    with start_ioc(IOC, ioc_root) as procserv:
        procserv.wait_ioc()
        edit_config(key, procserv.socket)
        config = yaml.safe_load(CONFIG.read_text())
        config["pva"] = {"host": PVA_HOST, "server_port": 0, "broadcast_port": 0}
        CONFIG.write_text(yaml.safe_dump(config, sort_keys=False))
        run(["consrv", "check-config", "--config", str(CONFIG)])
        with running_unit(UNIT, tmp_path, ioc_root) as (unit, _):
            served = re.compile(r"pva on \S+ tcp port \d+ udp port (\d+)")
            wait_until(lambda: served.search(unit.stderr()) is not None,
                       "consrv's 'pva on ... udp port N' line", 30, seen=unit.stderr)  # fmt: skip
            match = served.search(unit.stderr())
            assert match is not None
            with Monitors(client_conf(int(match.group(1)))) as pvs:
                state = f"CONSRV:{PVA_HOST}:{IOC}:State"
                pvs.watch([state])
                pvs.wait_for(state, lambda u: u.value == "up", "up, from the packaged consrv")
                version = pvs.get(f"CONSRV:{PVA_HOST}:Version").value
        assert version == run(["consrv", "version"]).split()[-1]

        apt_get("remove", "consrv-pva")
        assert package_status("consrv") == "install ok installed 0.1.0-1"
        refused = subprocess.run(["consrv", "check-config", "--config", str(CONFIG)],
                                 capture_output=True, text=True, check=False)  # fmt: skip
        assert refused.returncode != 0
        assert "pva: needs p4p, which is not installed" in refused.stderr + refused.stdout
    apt_get("purge", "consrv")
    assert package_status("consrv") == package_status("consrv-pva") == ""
