"""``procserv_keys`` guards the keys procServ really uses (issue 13, item 6).

procServ's kill, auto-restart and logout keys are options (``-k``,
``--autorestartcmd``, ``-x``); its greeting names them. Here procServ runs with
``-k ^K -x ^L --noautorestart`` and the console blocks procServ's keys: the writer's
^K and ^L must not act, and once the child is down neither may ^R, ^Q or ^K.
Checked on procServ's side: the child's pid and recorded input, procServ's own
messages, whether procServ still runs, and the audit log.
"""

from __future__ import annotations

import os
import signal

import pytest
import trio
import trio_asyncio

from tests.reliability.conftest import Site
from tests.security.conftest import start_lab
from tests.sshclients import scripted_ssh

pytestmark = pytest.mark.integration

OPTIONS = ["-k", "^K", "-x", "^L", "--noautorestart"]


async def test_custom_kill_and_logout_keys_and_the_keys_of_a_down_child_are_guarded(
    site: Site,
) -> None:
    lab = start_lab(site, console={"procserv_keys": "block"}, options=OPTIONS)
    await lab.probe()
    (child,) = lab.child_pids()
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True) as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        alice.send(b"\x0b\x0c\x18MARK\r")  # ^K, ^L; ^X is no procServ key here: the IOC's
        await alice.expect(rb"(?s)\^K is not sent.*\^L is not sent", stderr=True)
        data = await lab.wait_recorded(b"MARK\r")
        assert data.endswith(b"\x18MARK\r")
        assert lab.child_pids() == [child]

        os.kill(child, signal.SIGKILL)  # down, and procServ will not restart it by itself
        await alice.expect(rb"Received a sigChild for process")
        alice.send(b"\x12\x11\x0b")  # ^R, ^Q and ^K would restart it or quit procServ
        await alice.expect(rb"(?s)\^R is not sent.*\^Q is not sent.*\^K is not sent", stderr=True)
        await trio.sleep(1.5)  # procServ would have acted by now (holdoff 1 s)
        assert b"sec-ioc down" not in alice.stderr  # ^L never logged consrv out
    said = lab.witness.read()
    assert b"Got a kill command" not in said
    assert b"Restarting child" not in said
    assert lab.procserv.running()
    assert lab.child_pids() == []
    audit = lab.audit()
    for key in ("^K", "^L", "^R", "^Q"):
        assert f'"key":"{key}","action":"blocked"' in audit
