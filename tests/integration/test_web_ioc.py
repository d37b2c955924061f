"""The browser view's IOC unit column against a real ``ioc@`` unit.

consrv runs as a process (``consrv serve``) with ``ioc: {scope: user}`` against the
module's private systemd user manager (tests/systemd_user.py), one IOC unit whose
procServ runs a real EPICS soft IOC, and the web view on loopback. The unit is
stopped and started with ``systemctl --user`` behind consrv's back, and the list
must follow: both what the page's script reads (``/api/consoles``, which list.js
turns into the table every 2 s) and the table the server renders at ``/``. The
browser itself is not started here (tests/web/test_browser.py drives the same page).

Policy: loopback only; the web user comes from the identity header on the trusted
loopback address (no TLS needed); every wait bounded and named; consrv and the unit
are stopped at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.harness import Consrv, write_config
from tests.systemd_user import REPO, SystemdUser, softioc_cmd
from tests.waits import wait_until

pytestmark = pytest.mark.integration

IOC = "web-unit"


@dataclass
class Front:
    systemd: SystemdUser
    consrv: Consrv
    web: httpx.Client

    def api_state(self) -> object:
        listing = self.web.get("/api/consoles")
        assert listing.status_code == 200, listing.text
        (console,) = listing.json()["consoles"]
        assert console["name"] == IOC
        return (console["ioc"] or {}).get("active_state")

    def page_state(self) -> str:
        page = self.web.get("/")
        assert page.status_code == 200, page.text
        row = re.search(rf'<tr data-name="{IOC}".*?</tr>', page.text, re.DOTALL)
        assert row, page.text
        unit = re.search(r'<td class="wide unit">(.*?)</td>', row.group(0), re.DOTALL)
        assert unit, row.group(0)
        return str(unit[1]).strip()

    def follows(self, state: str) -> None:
        wait_until(
            lambda: self.api_state() == state and self.page_state() == state,
            f"the list (API and page) to show ioc@{IOC} {state}",
            timeout=15,
            seen=lambda: (self.api_state(), self.page_state()),
        )


@pytest.fixture
def front(manager: SystemdUser, tmp_path: Path) -> Iterator[Front]:
    manager.write_ioc_env(IOC, REPO, softioc_cmd(IOC))
    config = write_config(
        tmp_path / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(tmp_path / "host_key")},
            "log_dir": str(tmp_path / "logs"),
            "users": {"olga": {}},
            "defaults": {"ro": ["*"]},
            "ioc": {"scope": "user", "poll_interval": "1s"},
            "consoles": {IOC: {}},
            "web": {
                "listen": "127.0.0.1:0",
                "trusted_proxies": ["127.0.0.1"],
                "identity_header": "X-Remote-User",
            },
        },
    )
    consrv = Consrv(config, tmp_path, manager.env).start()
    try:
        url = consrv.wait_for_log(rb"web view on (http://127\.0\.0\.1:\d+)").group(1).decode()
        headers = {"X-Remote-User": "olga"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as web:
            yield Front(manager, consrv, web)
    finally:
        consrv.stop()
        manager.stop_iocs()


def test_the_list_shows_the_units_state_and_follows_a_stop_and_a_start(front: Front) -> None:
    unit = f"ioc@{IOC}.service"
    front.follows("inactive")
    front.systemd.systemctl("start", unit)
    front.follows("active")
    assert front.systemd.show(unit, "ActiveState") == {"ActiveState": "active"}
    front.systemd.systemctl("stop", unit)
    front.follows("inactive")
    front.systemd.systemctl("start", unit)
    front.follows("active")
