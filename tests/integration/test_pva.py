"""Console health as PVs, read by real pvAccess clients over loopback.

consrv runs as a process (``consrv serve``) with a ``pva:`` section in front of procServ
running a real EPICS soft IOC. p4p's client (tests/pvaclient.py) and p4p's command-line
tool (``python -m p4p.client.cli``, the only pvget-like tool a wheel ships: pvxslibs has
no pvget/pvmonitor binaries) find the PVs by a UDP search on loopback. The IOC is
killed with procServ's ^X and with SIGKILL, procServ itself is killed and its socket
removed and made again, the console stays silent past its limit; each time the PVs
must show the right state and severity, stamped within `REACTION` of the act, with
timestamps that never go back.

Policy: loopback only, port 0 (TCP and UDP); every wait bounded and named; procServ,
the IOC and consrv are stopped by the fixtures.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from p4p.client.thread import RemoteError

from consrv.demo import ProcServ
from tests.harness import Consrv, write_config
from tests.pvaclient import Monitors, Update, assert_monotonic, client_conf
from tests.waits import wait_until
from tests.witness import Witness

pytestmark = pytest.mark.integration

IOC = "pva-ioc"
HOST = "testhost"
P = f"CONSRV:{HOST}:{IOC}:"
H = f"CONSRV:{HOST}:"
# How long after an act (a kill, a stop) consrv may take to post the new state: the
# issue's bound. It is checked on the PV's own timestamp (consrv's post), not on the
# client's arrival, so a loaded machine's client threads do not count against it.
REACTION = 1.0
SILENT_AFTER = 2.0
MAJOR, MINOR, NO_ALARM = 2, 1, 0


@dataclass
class Served:
    root: Path
    procserv: ProcServ
    consrv: Consrv
    conf: dict[str, str]


def pva_config(root: Path, socket: Path, **pva: object) -> Path:
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "users": {"olga": {}},
            "defaults": {"ro": ["*"]},
            "consoles": {IOC: {"socket": str(socket), "patterns": {"xyzzy": "XYZZY"}}},
            "pva": {
                "host": HOST,
                "interfaces": ["127.0.0.1"],
                "server_port": 0,
                "broadcast_port": 0,
                "consoles": {IOC: {"silent_after": f"{SILENT_AFTER}s"}},
                **pva,
            },
        },
    )


def pva_ports(consrv: Consrv) -> dict[str, str]:
    match = consrv.wait_for_log(rb"pva on \S+ tcp port (\d+) udp port (\d+)")
    return client_conf(int(match.group(2)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with ProcServ(IOC, tmp_path) as procserv:
        procserv.wait_ioc()
        consrv = Consrv(pva_config(tmp_path, procserv.socket), tmp_path).start()
        try:
            yield Served(tmp_path, procserv, consrv, pva_ports(consrv))
        finally:
            consrv.stop()


@pytest.fixture
def pvs(served: Served) -> Iterator[Monitors]:
    names = ["State", "Pid", "Unit", "Restarts", "SilentFor", "Writer", "Viewers",
             "Pattern:xyzzy"]  # fmt: skip
    host = ["ConsolesUp", "Consoles", "Sessions", "Version"]
    with Monitors(served.conf) as monitors:
        monitors.watch([P + n for n in names] + [H + n for n in host])
        wait_until(
            lambda: all(monitors.last(P + n) for n in names),
            "a first value of every console PV",
            timeout=15,
            seen=lambda: {n: monitors.last(P + n) is not None for n in names},
        )
        yield monitors


def is_state(value: str, severity: int) -> Callable[[Update], bool]:
    return lambda u: u.value == value and u.severity == severity


def reacted(update: Update, act: float) -> None:
    assert update.stamp - act <= REACTION, f"posted {update.stamp - act:.3f} s after the act"


def test_every_pv_has_a_value_alarm_and_real_timestamp(served: Served, pvs: Monitors) -> None:
    child = served.procserv.child_pids()
    state = pvs.get(P + "State")
    assert (state.value, state.severity) == ("up", NO_ALARM)
    assert list(state.raw["value.choices"]) == ["down", "up", "no child"]
    assert pvs.get(P + "Pid").value in child
    assert pvs.get(P + "Writer").value == ""
    assert pvs.get(P + "Viewers").value == 0
    assert pvs.get(P + "Unit").value == "none"  # not an ioc@ unit
    silent = pvs.get(P + "SilentFor")
    assert silent.raw["display.units"] == "s"
    assert silent.raw["display.limitHigh"] > 0
    assert pvs.get(H + "ConsolesUp").value == 1
    assert pvs.get(H + "Consoles").value == 1
    assert pvs.get(H + "Version").value
    for name in (P + "State", P + "Pid", H + "Version"):
        assert abs(pvs.get(name).stamp - time.time()) < 3600, f"{name}: not a real timestamp"


def test_no_pv_takes_a_put(served: Served, pvs: Monitors) -> None:
    for name in (P + "State", P + "Writer", P + "Restarts", H + "Sessions"):
        with pytest.raises(RemoteError, match="read-only"):
            pvs.context.put(name, 0 if not name.endswith("Writer") else "mallory", timeout=5)
    assert pvs.get(P + "Writer").value == ""


def test_the_command_line_client_reads_a_pv(served: Served, pvs: Monitors) -> None:
    env = {**os.environ, **served.conf}
    out = subprocess.run(
        [sys.executable, "-m", "p4p.client.cli", "get", P + "State", H + "ConsolesUp"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "up" in out.stdout, out.stdout
    assert "1" in out.stdout, out.stdout


def test_ctrl_x_kills_the_ioc_the_state_follows(served: Served, pvs: Monitors) -> None:
    old = pvs.get(P + "Pid").value
    with Witness(served.procserv.socket) as witness:
        act = time.time()
        witness.send(b"\x18")  # procServ's kill key: the child dies, procServ restarts it
        down = pvs.wait_for(P + "State", is_state("no child", MAJOR), "no child, MAJOR", after=act)
    reacted(down, act)
    pvs.wait_for(P + "State", is_state("up", NO_ALARM), "up again", after=down.stamp)
    pid = pvs.wait_for(P + "Pid", lambda u: u.value not in (0, old), "a new pid", after=act)
    assert pid.value in served.procserv.child_pids()
    pvs.wait_for(P + "Restarts", lambda u: u.value >= 1, "one restart counted", after=act)
    assert_monotonic(pvs.history(P + "State"))


def test_sigkill_of_the_ioc_names_the_signal(served: Served, pvs: Monitors) -> None:
    (child,) = served.procserv.child_pids()
    act = time.time()
    os.kill(child, signal.SIGKILL)
    down = pvs.wait_for(P + "State", is_state("no child", MAJOR), "no child, MAJOR", after=act)
    reacted(down, act)
    assert "signal 9" in down.message
    pvs.wait_for(P + "State", is_state("up", NO_ALARM), "up again", after=down.stamp)
    assert_monotonic(pvs.history(P + "State"))


def test_procserv_gone_then_its_socket_made_again(served: Served, pvs: Monitors) -> None:
    act = time.time()
    served.procserv.kill()
    down = pvs.wait_for(P + "State", is_state("down", MAJOR), "down, MAJOR", after=act)
    reacted(down, act)
    pvs.wait_for(H + "ConsolesUp", lambda u: u.value == 0, "no console up", after=act)
    served.procserv.socket.unlink()
    act = time.time()
    with ProcServ(IOC, served.root):  # the socket made again; its child starts 0.5 s later
        pvs.wait_for(P + "State", is_state("up", NO_ALARM), "up on the new socket", after=act)
        pvs.wait_for(H + "ConsolesUp", lambda u: u.value == 1, "one console up", after=act)
    assert_monotonic(pvs.history(P + "State"))
    assert_monotonic(pvs.history(H + "ConsolesUp"))


def test_silence_past_the_limit_is_minor_and_output_clears_it(
    served: Served, pvs: Monitors
) -> None:
    quiet = pvs.wait_for(
        P + "SilentFor", lambda u: u.severity == MINOR, "silent past its limit", timeout=20
    )
    assert quiet.value >= SILENT_AFTER
    with Witness(served.procserv.socket) as witness:
        act = time.time()
        witness.send(b"XYZZY\r")  # echoed by the IOC's shell: output, and a match
        clear = pvs.wait_for(
            P + "SilentFor", lambda u: u.severity == NO_ALARM, "output clears it", after=act
        )
    reacted(clear, act)
    assert clear.value < SILENT_AFTER
    pvs.wait_for(P + "Pattern:xyzzy", lambda u: u.value >= 1, "the pattern counted", after=act)
    # watched, the age grows by itself, at most once a second
    pvs.wait_for(P + "SilentFor", lambda u: u.value >= 1, "the age growing", after=clear.stamp)
    ages = [u for u in pvs.history(P + "SilentFor") if u.stamp >= clear.stamp]
    gaps = [b.stamp - a.stamp for a, b in itertools.pairwise(ages)]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert_monotonic(pvs.history(P + "SilentFor"))


def test_the_command_line_monitor_follows_a_kill(served: Served, pvs: Monitors) -> None:
    """``python -m p4p.client.cli monitor`` (pvmonitor's part) prints each change."""
    out = served.root / "monitor.out"
    env = {**os.environ, **served.conf}
    with out.open("wb") as sink:
        monitor = subprocess.Popen(
            [sys.executable, "-m", "p4p.client.cli", "monitor", P + "State"],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        wait_until(lambda: b"up" in out.read_bytes(), "the monitor's first value",
                   seen=out.read_bytes)  # fmt: skip
        (child,) = served.procserv.child_pids()
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: b"no child" in out.read_bytes(), "the monitor to print 'no child'",
                   seen=out.read_bytes)  # fmt: skip
        wait_until(lambda: out.read_bytes().count(b"up") >= 2, "the monitor to print 'up' again",
                   timeout=15, seen=out.read_bytes)  # fmt: skip
    finally:
        monitor.terminate()
        monitor.wait(10)


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_the_pv_servers_process_ends_when_consrv_is_killed(served: Served, pvs: Monitors) -> None:
    """The PV server runs in a child of consrv (docs/pva.md); a SIGKILLed consrv leaves none."""
    consrv = served.consrv.process
    assert consrv is not None
    workers = [p for p in children(consrv.pid)
               if b"consrv.pva.worker" in Path(f"/proc/{p}/cmdline").read_bytes()]  # fmt: skip
    assert len(workers) == 1, children(consrv.pid)
    assert os.getpriority(os.PRIO_PROCESS, workers[0]) == 19
    consrv.kill()
    consrv.wait(10)
    wait_until(lambda: gone(workers[0]), "the PV server's process to end after consrv's death",
               timeout=10)  # fmt: skip
