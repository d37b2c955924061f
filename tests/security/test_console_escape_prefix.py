"""An escape prefix that starts with a procServ key cannot bypass the guard (issue 13, item 7).

consrv's escape holds its first key until the next one (0.5 s at most, then it is
passed on). ``check-config`` refuses a prefix that starts with one of procServ's
default keys, naming the key; and when procServ is started with its kill key on
the prefix's first key (``-k ^E`` under the default ``^Ec``), a lone ^E released
after the pause, or followed by another key, is guarded like any procServ key.
Checked on procServ's side: the child's pid and recorded input, procServ's own
messages, the audit log.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio
import trio_asyncio

from tests.reliability.conftest import Site
from tests.security.conftest import start_lab
from tests.sshclients import scripted_ssh

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("escape", "named"),
    [("^Tc", "^T, procServ's auto-restart toggle key"), ("^Xa", "^X, procServ's kill key")],
)
def test_check_config_refuses_a_prefix_that_starts_with_a_procserv_key(
    site: Site, escape: str, named: str
) -> None:
    config = site.config({"x": {"socket": "/run/x/control", "escape": escape}})
    result = subprocess.run(
        [sys.executable, "-m", "consrv", "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"consoles.x.escape: escape prefix '{escape}' starts with {named}" in result.stderr


async def test_a_released_prefix_key_that_procserv_uses_is_guarded(site: Site) -> None:
    lab = start_lab(site, console={"procserv_keys": "block"}, options=["-k", "^E"])
    await lab.probe()
    child = lab.child_pids()
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True) as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        alice.send(b"\x05")  # alone: released after the escape's pause
        await alice.expect(rb"\^E is not sent: blocked on sec-ioc", stderr=True)
        await trio.sleep(0.2)
        alice.send(b"\x05x")  # followed by a key that is not the escape's
        await alice.expect(rb"(?s)\^E is not sent.*\^E is not sent", stderr=True)
        alice.send(b"\x05c?")  # the escape itself still works
        await alice.expect(rb"\^Ec\.  detach", stderr=True)
        alice.send(b"MARK\r")
        data = await lab.wait_recorded(b"MARK\r")
    assert b"\x05" not in data
    assert data.endswith(b"xMARK\r")
    assert lab.child_pids() == child
    assert b"Restarting child" not in lab.witness.read()
    assert lab.audit().count('"key":"^E","action":"blocked"') == 2
