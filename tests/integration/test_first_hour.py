"""A newcomer's first commands on a default install (issue 24), with the real OpenSSH
client against a real EPICS soft IOC under procServ: the IOC's coloured prompt in
`tail`, `log` and `follow` into a pipe (no escape codes, a final newline) and on a terminal
(the colours kept), `--raw`, the replay a watcher gets on attaching, a time search
that finds lines (log timestamps on), and an unknown name answered with the list.

Policy: as tests/integration/conftest.py (the `world` fixture's config sets neither
`replay` nor `log.timestamps`: the defaults are what is tested); every wait bounded.
"""

from __future__ import annotations

import re

import pytest
import trio

from tests.integration.conftest import IOC, World
from tests.sshclients import PtySSH, ssh_argv
from tests.waits import deadline

pytestmark = pytest.mark.integration

ESCAPE = b"\x1b["


async def run(world: World, *command: str, key: str = "olga") -> tuple[int, bytes, bytes]:
    """``ssh -T observer@HOST COMMAND...``: no pty, stdout into a pipe."""
    argv = ssh_argv(world.port, getattr(world, key).private, "observer", *command, tty=False)
    with deadline(30, f"ssh observer@127.0.0.1 {' '.join(command)} to finish"):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout, result.stderr


async def on_a_terminal(world: World, *command: str) -> bytes:
    """``ssh -tt observer@HOST COMMAND...`` on a real pty, until it exits: what it showed."""
    client = await PtySSH(ssh_argv(world.port, world.olga.private, "observer", *command)).start()
    try:
        assert await client.wait() == 0
    finally:
        await client.aclose()
    return bytes(client.output)


async def test_the_first_commands_on_a_default_install(world: World) -> None:
    alice = await PtySSH(ssh_argv(world.port, world.alice.private, "console", IOC)).start()
    try:
        await alice.expect(rb"attached to e2e-ioc: you write")
        await alice.send(b"dbl\r")
        await alice.expect(rb"e2e-ioc:name\s+\S*epics> ")
        await alice.send(b"\x05c.")
        await alice.expect(rb"detached from e2e-ioc")
        assert await alice.wait() == 0
    finally:
        await alice.aclose()
    assert ESCAPE in bytes(alice.output)  # the IOC colours its prompt on a terminal

    # A watcher attaching later sees what came before: replay is on by default.
    olga = await PtySSH(ssh_argv(world.port, world.olga.private, "observer", IOC)).start()
    try:
        await olga.expect(rb"attached to e2e-ioc: read-only")
        await olga.expect(rb"last 20 lines of e2e-ioc")
        # Nobody typed since alice left: dbl's answer can only come from the replay
        # (notices go to stderr, output to stdout: their order on the pty is not kept).
        await olga.expect(rb"e2e-ioc:counter")
        await olga.send(b"\x05c.")
        assert await olga.wait() == 0
    finally:
        await olga.aclose()

    # Into a pipe: no escape codes, a final newline; --raw keeps the bytes.
    status, out, err = await run(world, "tail", IOC, "-n", "3")
    assert (status, err) == (0, b"")
    assert ESCAPE not in out
    assert out.endswith(b"\n")
    assert b"epics> " in out
    status, raw, _ = await run(world, "tail", IOC, "-n", "3", "--raw")
    assert (status, ESCAPE in raw, raw.endswith(b"\n")) == (0, True, True)
    # On a terminal the colours stay, and the prompt ends its line.
    shown = await on_a_terminal(world, "tail", IOC, "-n", "3")
    assert ESCAPE in shown
    assert shown.endswith(b"\r\n")

    # The log is stamped by default: a time search finds the coloured prompt as shown.
    status, found, err = await run(world, "log", IOC, "--since", "10m", "--grep", "'epics> '")
    assert (status, err) == (0, b"")
    lines = found.decode().splitlines()
    assert lines, world.log.read_bytes()[-1500:]
    assert all(re.match(r"\d{4}-\d\d-\d\dT\S+ epics> ", line) for line in lines), lines
    assert ESCAPE not in found

    # A name near none gets the list of consoles.
    status, _, err = await run(world, "nope")
    assert (status, err) == (1, b"consrv: unknown console 'nope'; consoles: e2e-ioc\n")


# The IOC's prompt line as `follow` prints it: its name, then the prompt, coloured or not.
FOLLOWED_PROMPT = rb"e2e-ioc: [^\r\n]*epics> [^\r\n]*dbl"


async def follow_prompt(world: World, *extra: str, tty: bool) -> tuple[bytes, bytes]:
    """``ssh [-tt|-T] observer@HOST follow e2e-ioc EXTRA...`` while alice types ``dbl``:
    the prompt line it printed, and all it printed."""
    argv = ssh_argv(world.port, world.olga.private, "observer", "follow", IOC, *extra, tty=tty)
    follower = await PtySSH(argv).start()
    alice = await PtySSH(ssh_argv(world.port, world.alice.private, "console", IOC)).start()
    try:
        await alice.expect(rb"attached to e2e-ioc: you write")
        with deadline(20, f"the prompt line from follow {extra}", lambda: follower.output):
            while True:  # the follower attaches once its command runs: type again
                await alice.send(b"dbl\r")
                with trio.move_on_after(1):
                    line = (await follower.expect(FOLLOWED_PROMPT)).group(0)
                    break
        await alice.send(b"\x05c.")
        assert await alice.wait() == 0
        await follower.send(b"\x04")  # ^D: the end of input ends the follow
        assert await follower.wait() == 0
    finally:
        await alice.aclose()
        await follower.aclose()
    return line, bytes(follower.output)


@pytest.mark.parametrize(
    ("tty", "extra"),
    [(False, ()), (False, ("--raw",)), (True, ())],
    ids=["into-a-pipe", "raw", "on-a-terminal"],
)
async def test_follow_takes_the_escapes_out_without_a_pty_as_tail_does(
    world: World, tty: bool, extra: tuple[str, ...]
) -> None:
    """``ssh observer@host follow NAME > file`` (no pty): the coloured prompt without its
    escape codes; ``ssh -t``: the colours kept; ``--raw``: kept without a pty."""
    line, output = await follow_prompt(world, *extra, tty=tty)
    kept = tty or bool(extra)
    assert (ESCAPE in line, ESCAPE in output) == (kept, kept), line
    assert line.replace(b"\x1b[32;1m", b"").replace(b"\x1b[0m", b"") == b"e2e-ioc: epics> dbl"
