"""One user's chatter cannot rotate away the record of others' actions (issue 13, item 5).

alice (the writer) sends procServ's ^T (``procserv_keys: pass``: sent and recorded);
then olga, an observer, sends 500 ``^Ecn`` notes of 300 characters as fast as
she can, with the logs rotated at 64 KiB and one old file kept. Without a limit
her notes would fill both files several times over. bob, a read-write watcher, then
asks for the write lock and leaves the queue 500 times (each request is a record).
Checked in the files: alice's records are still there, olga's notes and bob's
requests are their bursts, the notes cut to the length limit, and both were told.
"""

from __future__ import annotations

import json

import pytest
import trio_asyncio

from tests.reliability.conftest import Site
from tests.security.conftest import start_lab, wait_count
from tests.sshclients import scripted_ssh

pytestmark = pytest.mark.integration

NOTES = 500
BURST = 10


async def test_an_observers_note_flood_leaves_the_audit_and_console_logs_whole(
    site: Site,
) -> None:
    lab = start_lab(
        site,
        console={"procserv_keys": "pass"},
        log={"max_size": "64K", "keep": 1},
        messages={"burst": BURST, "per_minute": 6, "max_length": 200},
    )
    await lab.probe()
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True) as alice,
        scripted_ssh(lab.port, lab.key("olga"), "observer", "sec-ioc", pty=True) as olga,
        scripted_ssh(lab.port, lab.key("bob"), "console", "sec-ioc", pty=True) as bob,
    ):
        await alice.expect(rb"you write", stderr=True)
        await olga.expect(rb"read-only", stderr=True)
        await bob.expect(rb"watching", stderr=True)
        alice.send(b"\x14")  # ^T: toggles auto-restart, recorded with alice's name
        await alice.expect(rb"Toggled auto restart to OFF")
        for i in range(NOTES):
            olga.send(b"\x05cn" + b"%03d" % i + b"N" * 297 + b"\r")
        # olga is told each time (at most 2 tokens come back meanwhile)
        await wait_count(olga.stderr, b"not sent: too many messages", NOTES - BURST - 2)
        bob.send(b"\x05ca\x05cs" * NOTES)  # a read-write watcher: queued, left, ...
        await wait_count(bob.stderr, b"too many write-lock changes", NOTES - BURST - 2)
    records = [json.loads(line) for line in lab.audit().splitlines()]
    keys = [r for r in records if r["event"] == "procserv_key"]
    assert [(r["user"], r["key"], r["action"]) for r in keys] == [("alice", "^T", "sent")]
    notes = [r for r in records if r["event"] == "note"]
    assert BURST <= len(notes) <= BURST + 2  # a token comes back every 10 s
    assert {len(r["text"]) for r in notes} == {200}
    queued = [r for r in records if r["event"] == "write" and r.get("who") == "bob"]
    assert BURST <= len(queued) <= BURST + 2
    assert not (site.root / "audit.jsonl.1").exists()  # never rotated
    log = lab.console_log()
    assert "alice sent ^T (toggle auto-restart)" in log
    assert log.count("note from olga") == len(notes)
