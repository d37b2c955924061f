"""A reload takes back what it removed, from live streams, menus and actions (issue 13, item 3).

olga follows the console with ``tail -f`` and ``follow``, bob has the menu on his
screen, alice has asked to restart the IOC and not answered yet; then the config
is reloaded (SIGHUP) without olga and bob on the console, without alice in
its operate list, and with procServ's keys blocked instead of passed. Checked
where it would show: what olga's streams received after the reload, whether
bob's pick attached him, every systemctl call, and what procServ itself said.
"""

from __future__ import annotations

import pytest
import trio_asyncio

from tests.reliability.conftest import Site
from tests.security.conftest import start_lab
from tests.sshclients import PtySSH, scripted_ssh, ssh_argv

pytestmark = pytest.mark.integration

BEFORE = {"rw": ["alice", "bob"], "ro": ["olga"], "operate": ["alice"], "procserv_keys": "pass"}
AFTER = {"rw": ["alice"], "ro": [], "operate": [], "procserv_keys": "block"}


async def test_a_reload_ends_streams_menus_and_actions_it_no_longer_allows(site: Site) -> None:
    lab = start_lab(site, console=BEFORE)
    await lab.probe()
    olga = lab.key("olga")
    menu = await PtySSH(ssh_argv(lab.port, lab.key("bob"), "console")).start()
    try:
        async with (
            trio_asyncio.open_loop(),
            scripted_ssh(lab.port, olga, "observer", "tail sec-ioc -n 1 -f") as tail,
            scripted_ssh(lab.port, olga, "observer", "follow 'sec-*'") as follow,
            scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True) as alice,
        ):
            await menu.expect(rb"console \(number or name, empty to quit\): ")
            await alice.expect(rb"you write", stderr=True)
            lab.witness.send(b"SHOWN_BEFORE\r\n")  # the child echoes: everyone sees it
            await tail.expect(rb"SHOWN_BEFORE")
            await follow.expect(rb"sec-ioc: SHOWN_BEFORE")
            alice.send(b"\x05c!restart\r")
            await alice.expect(rb"Restart IOC sec-ioc\? \[y/N\]", stderr=True)

            await lab.reload(AFTER)
            lab.witness.send(b"SECRET_AFTER\r\n")
            await lab.wait_recorded(b"SECRET_AFTER")
            assert await tail.wait_closed() == 0
            assert await follow.wait_closed() == 0
            await menu.send(b"1\r")  # the console the menu showed before the reload
            await menu.expect(rb"no console '1'")
            alice.send(b"y")
            await alice.expect(rb"you may not restart sec-ioc \(no longer in its operate list\)",
                               stderr=True)  # fmt: skip
            alice.send(b"\x05c!stop\r")
            await alice.expect(rb"you may not operate sec-ioc", stderr=True)
            await alice.expect(rb"SECRET_AFTER")  # alice still reads the console
            alice.send(b"\x14")  # ^T: passed before the reload, blocked now
            await alice.expect(rb"\^T is not sent: blocked on sec-ioc", stderr=True)
    finally:
        await menu.aclose()
    for stream in (tail, follow):
        assert b"SECRET_AFTER" not in stream.stdout
        assert b"your access to sec-ioc changed" in stream.stderr
    assert b"attached to" not in menu.output
    assert lab.actions() == []
    assert '"event":"ioc_action"' not in lab.audit()
    assert b"Toggled auto restart" not in lab.witness.read()
