"""The Ansible role (deploy/ansible/) for real: ``ansible-playbook -c local`` on this machine.

The role installs the .deb, signs the host key with a host CA, renders the config
from inventory variables and starts consrv. No systemd runs as PID 1 here, so
consrv.service runs under a private systemd user manager (tests/systemd_user.py),
with the role's ``consrv_systemd_scope: user``: the unit's Exec lines as packaged,
without User=/Group= and the sandbox (a user manager cannot change user; the package
test runs those as the unit says). The handlers are the role's own: reload (SIGHUP
through ExecReload=) and restart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import yaml

from tests.harness import UserKey, make_key
from tests.packaging.conftest import Built
from tests.packaging.installed import REPO, attach, package_status, start_ioc
from tests.pvaclient import Monitors, client_conf
from tests.systemd_user import CONSRV_UNIT, SystemdUser

pytestmark = pytest.mark.integration

IOC = "role-ioc"
PVA_HOST = "rolehost"  # the {host} in the PV names
CONFIG = Path("/etc/consrv/consrv.yaml")
ROLES = REPO / "deploy" / "ansible" / "roles"
PLAYBOOK = "- hosts: consrv_hosts\n  roles: [consrv]\n"
UNIT_KEYS = (  # the lines that make consrv.service a notify service with a reload
    "Type", "NotifyAccess", "ExecStartPre", "ExecStart", "ExecReload", "Restart",
    "RestartSec", "TimeoutStopSec", "WatchdogSec",
)  # fmt: skip


def user_unit() -> str:
    """consrv.service for the user manager: the packaged Exec lines (/usr/bin/consrv)."""
    lines = ["[Unit]", "Description=consrv (user scope, the role's test)", "[Service]"]
    for line in CONSRV_UNIT.read_text().splitlines():
        if line.split("=", 1)[0] in UNIT_KEYS:
            lines.append(line.replace("/usr/local/bin/consrv", "/usr/bin/consrv"))
    return "\n".join([*lines, "[Install]", "WantedBy=default.target"]) + "\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Debian's python3 runs the modules on the host: the apt module needs python3-apt.
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"}


class Ansible:
    """ansible-playbook from the venv, against this machine, with an inventory."""

    def __init__(
        self, root: Path, host_vars: dict[str, object], inventory: Path | None = None
    ) -> None:
        self.root = root
        self.playbook = root / "playbook.yml"
        self.playbook.write_text(PLAYBOOK)
        self.inventory = inventory or root / "inventory.json"
        if inventory is None:
            hosts = {"localhost": {**LOCAL, **host_vars}}
            self.inventory.write_text(json.dumps({"consrv_hosts": {"hosts": hosts}}))

    def run(
        self, *extra_vars: dict[str, object], host: str = "localhost"
    ) -> tuple[int, str, dict[str, int]]:
        """(exit status, output, the recap's counts for ``host``)."""
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-c", "local",
                "-i", str(self.inventory), str(self.playbook)]  # fmt: skip
        for extra in extra_vars:
            argv += ["-e", json.dumps(extra)]
        env = {**os.environ, "ANSIBLE_ROLES_PATH": str(ROLES), "ANSIBLE_HOME": str(self.root),
               "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0",
               "ANSIBLE_LOCALHOST_WARNING": "0"}  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600,
                                stdin=subprocess.DEVNULL, check=False)  # fmt: skip
        output = result.stdout + result.stderr
        match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", output, re.MULTILINE)
        assert match is not None, output
        counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}
        return result.returncode, output, counts


@pytest.fixture
def manager() -> Iterator[SystemdUser]:
    with SystemdUser.running() as systemd:
        unit = systemd.unit_dir / "consrv.service"
        unit.write_text(user_unit())
        systemd.systemctl("daemon-reload")
        yield systemd


def main_pid(manager: SystemdUser) -> int:
    out = manager.systemctl("show", "-p", "MainPID", "--value", "consrv.service").stdout
    return int(out.strip())


def login_and_list(port: int, key: UserKey, known_hosts: Path) -> list[str]:
    argv = ["ssh", "-T", "-p", str(port), "-i", str(key.private), "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={known_hosts}", "console@127.0.0.1", "list"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return [line.split()[0] for line in result.stdout.splitlines()[1:]]


@pytest.mark.usefixtures("purged_at_end")
def test_the_role_converges_then_changes_nothing_and_a_bad_value_fails_at_validate(
    built: Built, manager: SystemdUser, ioc_root: Path, tmp_path: Path
) -> None:
    alice = make_key(tmp_path, "alice")
    host_ca = make_key(tmp_path, "host_ca")  # the role signs the host key with it
    port = free_port()
    with start_ioc(IOC, ioc_root) as procserv:
        procserv.wait_ioc()
        ansible = Ansible(tmp_path, {
            "consrv_package_file": str(built.deb),
            "consrv_systemd_scope": "user",
            "consrv_systemd_environment": {"XDG_RUNTIME_DIR": str(manager.runtime_dir)},
            "consrv_ssh_listen": [f"127.0.0.1:{port}"],
            "consrv_metrics_listen": None,
            "consrv_users": {"alice": {"keys": [alice.public]}},
            "consrv_defaults": {"rw": ["alice"]},
            "consrv_consoles": {IOC: {"socket": str(procserv.socket)}},
            "consrv_discover": [],
            "consrv_ioc": None,
            "consrv_host_ca_key": str(host_ca.private),
            "consrv_host_certificate_principals": ["127.0.0.1"],
        })  # fmt: skip
        try:
            status, output, counts = ansible.run()
            assert status == 0, output
            assert counts["failed"] == 0, output
            assert counts["changed"] > 0, output
            assert package_status() == "install ok installed 0.1.0-1"
            # One @cert-authority line and nothing about this host: the role's certificate.
            known_hosts = tmp_path / "known_hosts"
            known_hosts.write_text(f"@cert-authority * {host_ca.public}\n")
            trio.run(attach, port, alice.private, known_hosts, IOC)  # a real procServ console
            pid = main_pid(manager)

            # The second run changes nothing.
            status, output, counts = ansible.run()
            assert (status, counts["changed"], counts["failed"]) == (0, 0, 0), output

            # A bad value: the run fails at validate with consrv's message; nothing changes.
            live = CONFIG.read_bytes()
            status, output, counts = ansible.run({"consrv_defaults": {"write": "sometimes"}})
            assert status != 0, output
            assert counts["failed"] == 1, output
            assert "defaults.write" in output, output
            assert CONFIG.read_bytes() == live
            assert main_pid(manager) == pid
            assert login_and_list(port, alice, known_hosts) == [IOC]

            # A good change is a reload (SIGHUP), not a restart: the same process serves it.
            more = {IOC: {"socket": str(procserv.socket)}, "spare": {"tcp": "127.0.0.1:9"}}
            status, output, counts = ansible.run({"consrv_consoles": more})
            assert (status, counts["changed"]) == (0, 2), output  # the config, the handler
            assert "RUNNING HANDLER [consrv : Reload consrv]" in output, output
            assert "Restart consrv" not in output
            assert main_pid(manager) == pid
            assert login_and_list(port, alice, known_hosts) == [IOC, "spare"]

            # A newer package is an upgrade, and an upgrade restarts consrv (the same key).
            newer: dict[str, object] = {"consrv_package_file": str(built.newer_deb)}
            newer["consrv_consoles"] = more
            status, output, counts = ansible.run(newer)
            assert status == 0, output
            assert "RUNNING HANDLER [consrv : Restart consrv]" in output, output
            assert package_status() == "install ok installed 0.1.0-2"
            assert main_pid(manager) != pid
            assert login_and_list(port, alice, known_hosts) == [IOC, "spare"]
            pvs_on_then_off(ansible, built, newer)
        finally:
            manager.systemctl("stop", "consrv.service", check=False)
            for copied in Path("/var/cache").glob("consrv-consrv[_-]*.deb"):  # the role's copies
                copied.unlink()


def pvs_on_then_off(ansible: Ansible, built: Built, base: dict[str, object]) -> None:
    """``consrv_pva`` set: consrv-pva installed beside consrv and a restart (a p4p client
    reads the console's State), then 0 changed; unset: consrv-pva removed, a restart."""
    udp = free_udp_port()
    pva = {**base, "consrv_pva": {"host": PVA_HOST, "server_port": 0, "broadcast_port": udp},
           "consrv_pva_package_file": str(built.newer_pva_deb)}  # fmt: skip
    status, output, counts = ansible.run(pva)
    assert (status, counts["failed"]) == (0, 0), output
    assert "RUNNING HANDLER [consrv : Restart consrv]" in output, output
    assert package_status("consrv-pva") == "install ok installed 0.1.0-2"
    assert yaml.safe_load(CONFIG.read_text())["pva"]["host"] == PVA_HOST
    state = f"CONSRV:{PVA_HOST}:{IOC}:State"
    with Monitors(client_conf(udp)) as pvs:
        pvs.watch([state])
        pvs.wait_for(state, lambda u: u.value == "up", "up, with the role's consrv_pva", timeout=30)
    status, output, counts = ansible.run(pva)
    assert (status, counts["changed"], counts["failed"]) == (0, 0, 0), output

    status, output, counts = ansible.run(base)
    assert (status, counts["failed"]) == (0, 0), output
    assert "RUNNING HANDLER [consrv : Restart consrv]" in output, output
    assert not package_status("consrv-pva").startswith("install ")
    assert package_status() == "install ok installed 0.1.0-2"
    assert "pva" not in yaml.safe_load(CONFIG.read_text())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


RENDER = """- hosts: all
  gather_facts: false
  tasks:
    - ansible.builtin.include_role: {name: consrv, tasks_from: config}
"""


def test_the_sample_facility_derives_peers_and_from_lines_that_consrv_accepts(
    tmp_path: Path,
) -> None:
    """deploy/ansible/site.yml's inventory, rendered for every host and checked by consrv."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "deploy" / "ansible" / "inventory", inventory)
    consrv = str(Path(sys.executable).parent / "consrv")
    subprocess.run([consrv, "fleet", "init", "--dir", str(inventory / "fleet"), "--name", "gw",
                    "--gateway-address", "10.0.0.50", "--gateway-address", "10.0.0.51"],
                   check=True, capture_output=True)  # fmt: skip
    ca = make_key(tmp_path, "host_ca")
    (inventory / "fleet" / "known_hosts").write_text(f"@cert-authority *.example.org {ca.public}\n")
    out = tmp_path / "out"
    ansible = Ansible(tmp_path, {}, inventory)
    ansible.playbook.write_text(RENDER)
    render = {**LOCAL, "consrv_config_path": f"{out}/{{{{ inventory_hostname }}}}.yaml",
              "fleet_dir": f"{out}/{{{{ inventory_hostname }}}}/fleet", "consrv_user": "root",
              "consrv_config_group": "root", "consrv_check_config": f"{consrv} check-config",
              "consrv_manage_service": False}  # fmt: skip
    for _ in ("first", "second"):
        status, output, counts = ansible.run(render, host="gw1.example.org")
        assert status == 0, output
    assert counts["changed"] == 0, output  # the second run
    gateway = yaml.safe_load((out / "gw1.example.org.yaml").read_text())
    peer = yaml.safe_load((out / "ioc2.example.org.yaml").read_text())
    assert gateway["fleet"]["peers"] == ["ioc1.example.org:2222", "ioc2.example.org:2222"]
    assert gateway["fleet"]["key"] == f"{out}/gw1.example.org/fleet/gateway_key"
    gateway_key = (inventory / "fleet" / "gateway_key.pub").read_text().strip()
    gateway_ca = (inventory / "fleet" / "gateway_ca.pub").read_text().strip()
    assert peer["users"]["gateway"] == {"keys": [gateway_key]}
    assert peer["ssh"]["trusted_user_ca_keys"] == [f'from="10.0.0.50,10.0.0.51" {gateway_ca}']
    assert peer["fleet"] == {"gateway_users": ["gateway"]}
