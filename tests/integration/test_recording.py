"""Recording a real soft IOC's console, played back over real SSH and by Debian's asciinema.

procServ runs the soft IOC; consrv (a process, ``log.record: true``) records it; a
witness on procServ's socket restarts the IOC (^X) once consrv is connected, so the
boot is recorded, then types three commands at known spacing. The OpenSSH client
plays the recording on a pty and writes a cast file that Debian's ``asciinema`` plays.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.sshclients import PtySSH, ssh_argv
from tests.waits import wait_until
from tests.witness import Witness

pytestmark = pytest.mark.integration

IOC = "rec-ioc"
GAP = 2.0  # seconds between the typed commands
WORDS = (b"alpha-1", b"bravo-2", b"charlie-3")
# Played spacing against recorded spacing: the 10 %, plus the scheduling
# noise of a loaded 2-core machine (named so that it is not mistaken for the claim).
SPACING_TOLERANCE = 0.10 * GAP + 0.15


@dataclass
class Recorded:
    root: Path
    consrv: Consrv
    alice: UserKey  # may see the console
    carol: UserKey  # a known user with no role on it

    @property
    def cast_file(self) -> Path:
        return self.root / "logs" / f"{IOC}.cast"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    root = tmp_path_factory.mktemp("rec")
    alice, carol = keys = [make_key(root, name) for name in ("alice", "carol")]
    with ProcServ(IOC, root) as procserv:
        procserv.wait_ioc()
        config = write_config(
            root / "consrv.yaml",
            {
                "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
                "log_dir": str(root / "logs"),
                "log": {"record": True},
                "users": {k.name: {"keys": [k.public]} for k in keys},
                "defaults": {"rw": ["alice"], "ro": []},
                "consoles": {IOC: {"socket": str(procserv.socket)}},
            },
        )
        consrv = Consrv(config, root).start()
        try:
            consrv.wait_for_log(rb"rec-ioc: connected to")
            with Witness(procserv.socket) as witness:
                _boot_and_type(witness)
            yield Recorded(root, consrv, alice, carol)
        finally:
            consrv.stop()


def _boot_and_type(witness: Witness) -> None:
    """^X restarts the IOC (its boot is recorded); then the words, GAP apart."""
    booted = len(re.findall(rb"iocRun: All initialization complete", witness.read()))
    witness.sock.send(b"\x18")
    wait_until(
        lambda: len(re.findall(rb"iocRun: All initialization complete", witness.read())) > booted,
        "the soft IOC's boot after ^X",
        30,
        seen=witness.read,
    )
    for word in WORDS:
        time.sleep(GAP)
        witness.sock.send(b"echo " + word + b"\r")
    wait_until(lambda: WORDS[-1] in witness.read(), "the last word's echo", seen=witness.read)


def _recorded_times(path: Path) -> list[float]:
    """When each word first appears in the recording."""
    events = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [next(t for t, code, data in events if word.decode() in data) for word in WORDS]


async def test_the_boot_plays_over_ssh_in_order_with_its_spacing(recorded: Recorded) -> None:
    argv = ssh_argv(recorded.consrv.port, recorded.alice.private, "console", "play", IOC)
    client = await PtySSH([*argv, "--since", "5m"]).start()
    try:
        await client.expect(rb"playing rec-ioc from .* at 1x; Ctrl-C or \^Ec\. stops")
        boot = await client.expect(rb"iocRun: All initialization complete")
        seen, where = [], [boot.start()]
        for word in WORDS:
            where.append((await client.expect(re.escape(word), timeout=3 * GAP + 5)).start())
            seen.append(trio.current_time())
        assert where == sorted(where)  # in the order they were recorded
        await client.expect(rb"end of recording")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    recorded_at = _recorded_times(recorded.cast_file)
    for i in (1, 2):
        played, wanted = seen[i] - seen[i - 1], recorded_at[i] - recorded_at[i - 1]
        assert abs(played - wanted) <= SPACING_TOLERANCE, (i, played, wanted)


async def test_ctrl_c_stops_a_slow_replay(recorded: Recorded) -> None:
    argv = ssh_argv(recorded.consrv.port, recorded.alice.private, "console", "play", IOC)
    client = await PtySSH([*argv, "--speed", "0.1"]).start()
    try:
        await client.expect(rb"at 0\.1x")
        await client.send(b"\x03")
        await client.expect(rb"stopped")
        assert await client.wait() == 0
    finally:
        await client.aclose()


def test_cast_writes_a_file_debians_asciinema_plays(recorded: Recorded) -> None:
    out = recorded.root / "exported.cast"
    argv = ssh_argv(recorded.consrv.port, recorded.alice.private, "console", tty=False)
    with out.open("wb") as sink:
        subprocess.run([*argv, "cast", IOC, "--since", "10m"], stdout=sink, check=True, timeout=30)
    header = json.loads(out.read_text().splitlines()[0])
    assert header["version"] == 2
    assert header["title"] == IOC
    played = subprocess.run(
        ["script", "-qec", f"asciinema play -s 100 {out}", "/dev/null"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    boot = played.find(b"iocRun: All initialization complete")
    assert 0 <= boot < played.find(WORDS[0]) < played.find(WORDS[1]) < played.find(WORDS[2])


def test_a_user_who_may_not_see_the_console_gets_nothing(recorded: Recorded) -> None:
    argv = ssh_argv(recorded.consrv.port, recorded.carol.private, "console", tty=False)
    for verb in ("cast", "play"):
        result = subprocess.run([*argv, verb, IOC], capture_output=True, check=False, timeout=30)
        assert result.returncode == 1, verb
        assert result.stdout == b""
        assert b"unknown console 'rec-ioc'" in result.stderr


def test_bad_options_are_usage_errors(recorded: Recorded) -> None:
    argv = ssh_argv(recorded.consrv.port, recorded.alice.private, "console", tty=False)
    for args, text in [
        (["play", IOC, "--speed", "99"], b"--speed wants a number from 0.1 to 16"),
        (["cast", IOC, "--since", "yesterday"], b"not a time: 'yesterday'"),
        (["cast"], b"usage: cast NAME"),
    ]:
        result = subprocess.run([*argv, *args], capture_output=True, check=False, timeout=30)
        assert result.returncode == 2, args
        assert text in result.stderr, result.stderr
