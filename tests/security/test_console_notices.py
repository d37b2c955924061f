"""consrv's own messages to viewers that never read share the viewer's bound (issue 13, item 4).

Ten observers attach and stop reading (their SSH channels paused); alice, with
the message limit raised out of the way, broadcasts 8,000 messages of 500
characters. Each broadcast is a notice to every viewer: past the 2 MiB SSH window
each stalled one has, an unbounded consrv would keep ~22 MB for them. Checked
from outside: consrv's RSS, and what a stalled observer is told once it reads again.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
import trio_asyncio

from tests.reliability.conftest import Site
from tests.reliability.probes import status_field
from tests.security.conftest import start_lab, wait_count
from tests.sshclients import ScriptedSSH, scripted_ssh

pytestmark = pytest.mark.integration

OBSERVERS = 10
MESSAGES = 8000
LENGTH = 500  # the line editor takes 512 bytes
GROWTH_BOUND_KIB = 8 * 1024  # 10 x 64 KiB of viewer_buffer, and the heap's noise


async def test_broadcasts_to_stalled_observers_do_not_grow_consrv(site: Site) -> None:
    lab = start_lab(
        site, messages={"burst": MESSAGES + 10, "per_minute": 600, "max_length": LENGTH}
    )
    await lab.probe()
    async with trio_asyncio.open_loop(), AsyncExitStack() as stack:
        observers: list[ScriptedSSH] = []
        for _ in range(OBSERVERS):
            olga = await stack.enter_async_context(
                scripted_ssh(lab.port, lab.key("olga"), "observer", "sec-ioc", pty=True)
            )
            await olga.expect(rb"read-only", stderr=True)
            olga.chan.pause_reading()  # a viewer that never reads again
            observers.append(olga)
        alice = await stack.enter_async_context(
            scripted_ssh(lab.port, lab.key("alice"), "console", "sec-ioc", pty=True)
        )
        await alice.expect(rb"you write", stderr=True)
        before = status_field(site.pid, "VmRSS")
        text = b"B" * LENGTH
        for i in range(MESSAGES):
            alice.send(b"\x05cb" + text + b"\r")
            if i % 200 == 199:
                await wait_count(alice.stderr, b"alice: BBBB", i + 1)
        grown = status_field(site.pid, "VmRSS") - before
        assert grown < GROWTH_BOUND_KIB, f"consrv grew {grown} KiB for {OBSERVERS} stalled viewers"

        first = observers[0]
        first.chan.resume_reading()  # reads again: told what it missed
        await first.expect(rb"\[consrv: \d+ consrv message\(s\) dropped\]", stderr=True, timeout=20)
