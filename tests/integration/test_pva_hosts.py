"""PVs across hosts and reloads: two consrv hosts on loopback, each serving its own PVs.

Two ``consrv serve`` processes stand for two IOC hosts: each serves its PVs on its own
UDP search port and TCP port (on one machine two servers cannot share them), and one
p4p client searches both (``EPICS_PVA_ADDR_LIST`` entries with their ports), as a
client on a controls network searches every IOC host, and finds each host's PVs under
its host's name. (pvxs answers a search from its wildcard UDP socket: on a loopback
alias such as 127.0.0.2 the reply's source is 127.0.0.1, so the client would connect
to the wrong address; each host is therefore on 127.0.0.1 here.) A reload (SIGHUP)
adds and removes a console's PVs while the server keeps serving the others, on the
same ports.

procServ runs ``cat`` here (a cheap child); tests/integration/test_pva.py has the real
soft IOC. Policy: loopback only, port 0 (TCP and UDP); every wait bounded and named;
every process stopped by its fixture.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from consrv.demo import ProcServ
from tests.harness import Consrv, write_config
from tests.pvaclient import Monitors, client_conf
from tests.waits import wait_until

pytestmark = pytest.mark.integration


def udp_port(consrv: Consrv) -> int:
    return int(consrv.wait_for_log(rb"pva on \S+ tcp port \d+ udp port (\d+)").group(1))


def host_config(root: Path, host: str, consoles: dict[str, Path]) -> Path:
    root.mkdir(exist_ok=True)
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "users": {"olga": {}},
            "defaults": {"ro": ["*"]},
            "consoles": {name: {"socket": str(path)} for name, path in consoles.items()},
            "pva": {"host": host, "server_port": 0, "broadcast_port": 0},
        },
    )


@pytest.fixture
def consoles(tmp_path: Path) -> Iterator[dict[str, ProcServ]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(ProcServ(name, tmp_path / "iocs", ["/bin/cat"]))
            for name in ("ioc-a1", "ioc-a2", "ioc-b1")
        }


def test_two_hosts_each_serve_their_own_pvs(tmp_path: Path, consoles: dict[str, ProcServ]) -> None:
    hosts = {"hosta": ("ioc-a1", "ioc-a2"), "hostb": ("ioc-b1",)}
    with contextlib.ExitStack() as stack:
        search = []
        for host, names in hosts.items():
            mine = {name: consoles[name].socket for name in names}
            consrv = Consrv(host_config(tmp_path / host, host, mine), tmp_path / host).start()
            stack.callback(consrv.stop)
            search.append(f"127.0.0.1:{udp_port(consrv)}")
        pvs = stack.enter_context(Monitors(client_conf(0, " ".join(search))))
        for host, names in hosts.items():
            assert pvs.get(f"CONSRV:{host}:Consoles").value == len(names)
            assert pvs.get(f"CONSRV:{host}:ConsolesUp").value == len(names)
            for name in names:
                assert pvs.get(f"CONSRV:{host}:{name}:State").value == "up"
        # a console is served only by its own host
        with pytest.raises(TimeoutError):
            pvs.context.get("CONSRV:hostb:ioc-a1:State", timeout=1.5)


def test_a_reload_adds_and_removes_pvs_without_restarting_the_server(
    tmp_path: Path, consoles: dict[str, ProcServ]
) -> None:
    sockets = {name: consoles[name].socket for name in ("ioc-a1", "ioc-a2")}
    config = host_config(tmp_path / "h", "hosta", sockets)
    consrv = Consrv(config, tmp_path / "h").start()
    try:
        tcp = consrv.wait_for_log(rb"pva on \S+ tcp port (\d+)").group(1)
        with Monitors(client_conf(udp_port(consrv))) as pvs:
            kept, gone, new = (f"CONSRV:hosta:{n}:State" for n in ("ioc-a1", "ioc-a2", "ioc-b1"))
            pvs.watch([kept, gone])
            wait_until(lambda: pvs.last(kept) and pvs.last(gone), "both consoles' State")
            data = yaml.safe_load(config.read_text())
            del data["consoles"]["ioc-a2"]
            data["consoles"]["ioc-b1"] = {"socket": str(consoles["ioc-b1"].socket)}
            config.write_text(yaml.safe_dump(data))
            assert consrv.process is not None
            consrv.process.send_signal(signal.SIGHUP)
            consrv.wait_for_log(rb"reloaded .*added ioc-b1; removed ioc-a2")
            wait_until(lambda: pvs.errors.get(gone), f"{gone}: disconnected")
            assert pvs.get(new).value == "up"
            assert pvs.get("CONSRV:hosta:Consoles").value == 2
            with pytest.raises(TimeoutError):
                pvs.context.get(gone, timeout=1.5)
            assert kept not in pvs.errors  # its monitor never dropped
            assert pvs.get(kept).value == "up"
        assert consrv.stderr().count("pva on ") == 1  # one server, never restarted
        assert consrv.wait_for_log(rb"tcp port (\d+)").group(1) == tcp
    finally:
        consrv.stop()
