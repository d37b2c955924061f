"""IOC units as PVs: real ``ioc@`` units under a systemd user manager, read over pvAccess.

consrv runs as a process with ``ioc: {scope: user}`` against the module's private
manager (tests/systemd_user.py) and a ``pva:`` section; one unit runs procServ with a
real EPICS soft IOC, another has no env file, so starting it fails. The units are
stopped, failed and killed behind consrv's back with ``systemctl --user``; p4p's client
must see the unit's state and the console's with the right severity, stamped within
`REACTION` of the act (plus one health poll), and a crash loop as MAJOR.

Policy: loopback only, port 0; every wait bounded and named; the units, consrv and
the manager are stopped at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import Consrv, write_config
from tests.pvaclient import Monitors, Update, assert_monotonic, client_conf
from tests.systemd_user import REPO, SystemdUser, softioc_cmd
from tests.waits import wait_until

pytestmark = pytest.mark.integration

IOC, BROKEN = "pva-unit", "pva-nosuch"
HOST = "unithost"
POLL = 0.3  # ioc.poll_interval: the unit's state is known this long after it changes
REACTION = 1.0  # the bound, on the PV's own timestamp
MAJOR, MINOR, NO_ALARM = 2, 1, 0


def pv(console: str, name: str) -> str:
    return f"CONSRV:{HOST}:{console}:{name}"


@dataclass
class Units:
    systemd: SystemdUser
    consrv: Consrv
    pvs: Monitors

    def unit(self, name: str = IOC) -> str:
        return f"ioc@{name}.service"


def is_(value: object, severity: int) -> Callable[[Update], bool]:
    return lambda u: u.value == value and u.severity == severity


@pytest.fixture
def units(manager: SystemdUser, tmp_path: Path) -> Iterator[Units]:
    manager.write_ioc_env(IOC, REPO, softioc_cmd(IOC))
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
            "users": {"olga": {}},
            "defaults": {"ro": ["*"]},
            "ioc": {"scope": "user", "poll_interval": f"{POLL}s"},
            "consoles": {IOC: {}, BROKEN: {}},
            "pva": {"host": HOST, "server_port": 0, "broadcast_port": 0, "crash_loop": 2},
        },
    )
    consrv = Consrv(config, tmp_path, manager.env).start()
    try:
        match = consrv.wait_for_log(rb"pva on \S+ tcp port (\d+) udp port (\d+)")
        with Monitors(client_conf(int(match.group(2)))) as pvs:
            names = [pv(c, n) for c in (IOC, BROKEN) for n in ("State", "Unit", "Restarts")]
            pvs.watch(names)
            wait_until(lambda: all(pvs.last(n) for n in names), "a first value of every PV")
            yield Units(manager, consrv, pvs)
    finally:
        consrv.stop()
        manager.stop_iocs()
        manager.systemctl("reset-failed", check=False)


def test_a_stopped_unit_is_down_and_inactive(units: Units) -> None:
    pvs = units.pvs
    pvs.wait_for(pv(IOC, "Unit"), is_("inactive", MINOR), "inactive before the start")
    units.systemd.systemctl("start", units.unit())
    pvs.wait_for(pv(IOC, "Unit"), is_("active", NO_ALARM), "active")
    pvs.wait_for(pv(IOC, "State"), is_("up", NO_ALARM), "up", timeout=30)
    act = time.time()
    units.systemd.systemctl("stop", units.unit())
    down = pvs.wait_for(pv(IOC, "State"), is_("down", MAJOR), "down, MAJOR", after=act)
    inactive = pvs.wait_for(pv(IOC, "Unit"), is_("inactive", MINOR), "inactive", after=act)
    done = time.time()  # systemctl stop returns once the unit is down
    assert down.stamp - done <= REACTION
    assert inactive.stamp - done <= REACTION + POLL
    assert_monotonic(pvs.history(pv(IOC, "Unit")))
    assert_monotonic(pvs.history(pv(IOC, "State")))


def test_a_failed_unit_is_major(units: Units) -> None:
    pvs = units.pvs
    # Restart=always would retry for ever (activating/auto-restart, MAJOR too): not here.
    drop_in = units.systemd.unit_dir / f"{units.unit(BROKEN)}.d"
    drop_in.mkdir(exist_ok=True)
    (drop_in / "once.conf").write_text("[Service]\nRestart=no\n")
    units.systemd.systemctl("daemon-reload")
    result = units.systemd.systemctl("start", units.unit(BROKEN), check=False)
    assert result.returncode != 0  # no env file: the unit fails
    done = time.time()
    failed = pvs.wait_for(pv(BROKEN, "Unit"), is_("failed", MAJOR), "failed, MAJOR")
    assert failed.stamp - done <= REACTION + POLL
    assert pvs.get(pv(BROKEN, "State")).severity == MAJOR  # its procServ never came


def test_a_crash_loop_is_major(units: Units) -> None:
    pvs = units.pvs
    units.systemd.systemctl("start", units.unit())
    act = 0.0
    for n in (1, 2):  # procServ killed: systemd starts it again (Restart=always, 2 s later)
        pvs.wait_for(pv(IOC, "Unit"), is_("active", NO_ALARM), f"active ({n})", after=act)
        pvs.wait_for(pv(IOC, "State"), is_("up", NO_ALARM), f"up ({n})", after=act, timeout=30)
        act = time.time()
        units.systemd.systemctl("kill", "--signal=SIGKILL", "--kill-whom=main", units.unit())
        pvs.wait_for(pv(IOC, "State"), is_("down", MAJOR), f"down after kill {n}", after=act)
    loop = pvs.wait_for(pv(IOC, "Restarts"), lambda u: u.value >= 2, "two restarts counted")
    assert loop.severity == MAJOR
    assert "crash loop" in loop.message
    # between a kill and systemd's restart (2 s) the unit is activating/auto-restart: MAJOR
    restarting = [u for u in pvs.history(pv(IOC, "Unit")) if "auto-restart" in u.message]
    assert restarting, pvs.history(pv(IOC, "Unit"))
    assert {u.severity for u in restarting} == {MAJOR}
    assert_monotonic(pvs.history(pv(IOC, "Restarts")))
    assert_monotonic(pvs.history(pv(IOC, "Unit")))
