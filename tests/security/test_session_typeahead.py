"""Typeahead never answers a safety question (issue 13, item 2).

A writer pastes ``text^Xyes more`` in one packet under ``procserv_keys: confirm``,
or ``^Ec!restart⏎y`` in one write: the question is raised by the paste, so the
rest of the paste must not answer it. Checked where it would land: the child's
recorded input, procServ's own messages (a witness on its socket), the child's
pid, and every systemctl call consrv made.
"""

from __future__ import annotations

import pytest
import trio_asyncio

from tests.reliability.conftest import Site
from tests.security.conftest import Lab, start_lab
from tests.sshclients import PtySSH, scripted_ssh, ssh_argv

pytestmark = pytest.mark.integration


async def test_a_pasted_kill_key_and_yes_do_not_kill_the_ioc(site: Site) -> None:
    lab: Lab = start_lab(site)
    await lab.probe()
    child = lab.child_pids()
    client = await PtySSH(ssh_argv(lab.port, lab.key("alice"), "console", "sec-ioc")).start()
    try:
        await client.expect(rb"attached to sec-ioc: you write")
        await client.send(b"text\x18yes more")  # one write: one packet
        await client.expect(rb"Send \^X \(kill/restart\) to IOC sec-ioc\? \[y/N\]")
        await client.expect(rb"8 byte\(s\) typed before the question was shown: discarded")
        await client.send(b"n")
        await client.expect(rb"not sent")
        await client.send(b"AFTER\r")
        data = await lab.wait_recorded(b"AFTER\r")
    finally:
        await client.aclose()
    assert data.split(b"PROBE")[-1].lstrip(b"\r\n") == b"textAFTER\r"
    assert b"shutting down" not in lab.witness.read()
    assert lab.child_pids() == child
    assert '"key":"^X"' not in lab.audit()


async def test_a_restart_escape_with_its_yes_in_one_write_restarts_nothing(site: Site) -> None:
    lab = start_lab(site)
    await lab.probe()
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True) as alice,
    ):
        await alice.expect(rb"you write", stderr=True)
        alice.send(b"\x05c!restart\ry")
        await alice.expect(rb"Restart IOC sec-ioc\? \[y/N\]", stderr=True)
        await alice.expect(rb"1 byte\(s\) typed before the question", stderr=True)
        alice.send(b"\x05c!stop\ryes\r")  # a paste while the question is open: discarded
        # not before the question this time: said as it is (issue 24)
        await alice.expect(rb"byte\(s\) came together \(a paste or typeahead\)", stderr=True)
        alice.send(b"n")
        await alice.expect(rb"cancelled", stderr=True)
        alice.send(b"MARK\r")
        await lab.wait_recorded(b"MARK\r")
    assert lab.actions() == []
    assert '"event":"ioc_action"' not in lab.audit()
