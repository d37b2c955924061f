"""The fleet through the real OpenSSH client: one namespace over many real consrv hosts.

One fleet for the module (tests/fleet/sim.py): PEERS real peers on 127.1.0.10...,
two gateways on 127.0.0.50 and .51. What a user sees through a gateway is checked
against what really happened: on procServ's side (a witness), in a peer's audit log,
and against a direct login on the peer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import websocket

from consrv.contracts import UNREACHABLE
from tests.fleet.sim import (
    DUPLICATE,
    PEERS,
    SECRET,
    SOFT_IOC,
    Fleet,
    Peer,
    ssh_argv,
)
from tests.harness import Consrv
from tests.sshclients import SSH_OPTIONS, PtySSH
from tests.waits import deadline, wait_until
from tests.web.browser import chromium, console_log, csp_violations, status, wait_for_screen
from tests.witness import Witness

pytestmark = pytest.mark.integration


RELOAD_NOTICE = 2.0  # seconds a loaded machine may take to read a config after SIGHUP


def read_until_closed(ws: websocket.WebSocket, seconds: float) -> bytes:
    """What `ws` receives until the server closes it (AssertionError if not in `seconds`)."""
    received, end = b"", time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            return received
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return received
        received += data
    raise AssertionError(f"the stream still open after {seconds} s: {received[-300:]!r}")


def rows(data: dict[str, object]) -> set[tuple[str, str]]:
    consoles = data["consoles"]
    assert isinstance(consoles, list)
    return {(row["name"], row["host"]) for row in consoles}


def pty_ssh(
    fleet: Fleet, user: str, login: str, *command: str, peer: Peer | None = None, gateway: int = 0
) -> PtySSH:
    host, port = (
        (peer.name, peer.port)
        if peer
        else (fleet.gateways[gateway].address, fleet.gateways[gateway].consrv.port)
    )
    return PtySSH(ssh_argv(host, port, fleet.users[user].private, login, *command, tty=True))


# -- list / who / status ------------------------------------------------------------


def test_list_covers_every_peer_with_a_host_column(fleet: Fleet) -> None:
    data = fleet.listing("alice")
    assert data["schema"] == 1
    assert data["missing_peers"] == []
    found = rows(data)
    for index, peer in enumerate(fleet.peers):
        assert (f"ioc-{index:02d}", peer.name) in found
    assert {(DUPLICATE, fleet.peers[0].name), (DUPLICATE, fleet.peers[1].name)} <= found
    assert (SECRET, fleet.peers[3].name) in found
    assert (SOFT_IOC, fleet.peers[2].name) in found
    assert len(found) == PEERS + 4
    first = data["consoles"][0]
    assert {"name", "state", "writer", "viewers", "host", "upstream"} <= first.keys()
    assert not {"rw", "ro", "operate"} & first.keys()  # routing data stays inside
    table = fleet.ssh("alice", "list", gateway=1)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "HOST", "STATE", "WRITER", "VIEWERS"]
    assert len(table.stdout.splitlines()) == PEERS + 5


def test_consoles_a_user_has_no_role_on_stay_invisible(fleet: Fleet) -> None:
    bob = rows(fleet.listing("bob"))
    assert SECRET not in {name for name, _ in bob}
    assert len(bob) == PEERS + 3
    result = fleet.ssh("bob", "tail", SECRET)
    assert result.returncode == 1
    assert "unknown console" in result.stderr
    direct = fleet.ssh("bob", "list", host=fleet.peers[3].name, port=fleet.peers[3].port)
    assert SECRET not in direct.stdout  # the same answer as on the host itself


def test_an_unknown_name_is_answered_from_the_fleets_names_the_user_may_see(
    fleet: Fleet,
) -> None:
    """The host's answer (exit status 1, a near name, else the names there are), from
    every peer's consoles, by each peer's rules; NAME@HOST where a bare name is not enough."""
    first, second, fourth = fleet.peers[0], fleet.peers[1], fleet.peers[3]
    direct = fleet.ssh("alice", "tail", "ioc-0", host=first.name, port=first.port)
    assert (direct.returncode, direct.stderr) == (
        1, "consrv: unknown console 'ioc-0'; did you mean 'ioc-00'?\n"
    )  # fmt: skip
    for command, said in (
        (("tail", "ioc-0"), "'ioc-0'; did you mean 'ioc-00'?"),
        (("dup-io",), f"'dup-io'; did you mean 'dup-ioc@{first.name}' or 'dup-ioc@{second.name}'?"),
        (("status", "secret-io"), "'secret-io'; did you mean 'secret-ioc'?"),
        (
            ("tail", f"ioc-03@{first.name}"),
            f"'ioc-03@{first.name}'; did you mean 'ioc-03@{fourth.name}'?",
        ),
    ):
        through = fleet.ssh("alice", *command)
        assert (through.returncode, through.stdout) == (1, ""), (command, through.stderr)
        assert through.stderr == f"consrv: unknown console {said}\n", command
    for command in (("status", "secret-io"), ("tail", "secret-ioc"), ("log", "zzz")):
        refused = fleet.ssh("bob", *command)  # bob has no role on secret-ioc
        assert refused.returncode == 1, (command, refused.stderr)
        assert "; consoles: dup-ioc@" in refused.stderr
        assert "secret" not in refused.stderr.split(";", 1)[1], refused.stderr


def test_status_and_who_cover_the_fleet(fleet: Fleet) -> None:
    states: dict[str, str] = {}

    def all_up() -> bool:
        # An IOC an earlier test restarted is up on its host before the gateway's feed
        # says so (the feed follows within a poll): wait for the gateway's word.
        status = fleet.ssh("olga", "status", "--json")
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)["consoles"]
        states.clear()
        states.update({f"{row['name']}@{row['host']}": row["state"] for row in rows})
        assert {row["host"] for row in rows} == {p.name for p in fleet.peers}
        return all(state == "up" for state in states.values())

    wait_until(all_up, "every console up in the gateway's status", timeout=15,
               seen=lambda: {k: v for k, v in states.items() if v != "up"})  # fmt: skip
    table = fleet.ssh("olga", "status")
    assert table.stdout.split("\n", 1)[0].split()[:3] == ["NAME", "HOST", "STATE"]
    # Nobody is on the fleet now; sessions of tests that ran before (the fleet is shared)
    # may still be ending on their peers, and the feed says so when they have.
    seen: list[object] = []

    def nobody() -> bool:
        who = fleet.ssh("olga", "who", "--json")
        seen[:] = [who.stdout]
        return bool(json.loads(who.stdout) == {"schema": 1, "users": [], "missing_peers": []})

    wait_until(nobody, "an empty fleet-wide who (no session of an earlier test left)",
               seen=lambda: seen)  # fmt: skip


def web_listing(fleet: Fleet, user: str, page: bool = False) -> Any:
    """The gateway's web list for `user` (signed in with ``ssh console@gw web``): its JSON,
    or with `page` the HTML of ``/``."""
    link = fleet.ssh(user, "web")
    assert link.returncode == 0, link.stderr
    url = link.stdout.strip()
    with httpx.Client(verify=False, timeout=20) as client:  # noqa: S501 (the test's own cert)
        assert client.get(url).status_code == 303
        base = url.split("/login/")[0]
        return client.get(base + "/").text if page else client.get(base + "/api/consoles").json()


def test_the_gateways_web_list_covers_the_fleet_with_a_host_column(fleet: Fleet) -> None:
    data = web_listing(fleet, "bob")
    rows = {(row["id"], row["host"], row["local"]) for row in data["consoles"]}
    for index, peer in enumerate(fleet.peers):
        assert (f"ioc-{index:02d}", peer.name, False) in rows
    assert {row["name"] for row in data["consoles"]}.isdisjoint({SECRET})  # bob has no role
    duplicates = {row[0] for row in rows if row[0].startswith(DUPLICATE)}
    assert duplicates == {
        f"{DUPLICATE}@{fleet.peers[0].name}",
        f"{DUPLICATE}@{fleet.peers[1].name}",
    }
    assert data["missing_peers"] == []
    assert not {"rw", "ro", "operate", "who"} & data["consoles"][0].keys()
    page = web_listing(fleet, "alice", page=True)
    assert "<th>host</th>" in page
    assert f'<td class="host">{fleet.peers[3].name}</td>' in page
    assert SECRET in page  # alice may see it
    assert 'href="/c/ioc-03"' not in page  # another host's console: NAME@HOST, through here
    assert f'href="/c/ioc-03%40{fleet.peers[3].name}"' in page


def test_a_peers_console_streams_in_the_gateways_page_and_its_host_judges(fleet: Fleet) -> None:
    peer = fleet.peers[7]
    link = fleet.ssh("olga", "web").stdout.strip()  # olga: read-only everywhere
    base = link.split("/login/")[0]
    with httpx.Client(verify=False, timeout=20) as client:  # noqa: S501 (the test's own cert)
        assert client.get(link).status_code == 303
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        page = client.get(f"{base}/c/ioc-07@{peer.name}")
        assert page.status_code == 200
        assert f'data-stream="/c/ioc-07%40{peer.name}/stream"' in page.text
        secret = client.get(f"{base}/c/{SECRET}@{fleet.peers[3].name}")
        assert secret.status_code == 404  # no role there: no page, as on that host
    ws_url = base.replace("https://", "wss://") + f"/c/ioc-07%40{peer.name}/stream"
    ws = websocket.create_connection(
        ws_url, header=[f"Cookie: {cookie}"], origin=base, timeout=10,
        sslopt={"cert_reqs": ssl.CERT_NONE},
    )  # fmt: skip
    try:
        received = b""
        end = time.monotonic() + 15
        while b"attached to ioc-07" not in received:  # the peer's own notice: it attached us
            assert time.monotonic() < end, f"the peer's attach notice in the page: {received!r}"
            received += ws.recv_data()[1]
        with Witness(peer.procservs["ioc-07"].socket) as witness:
            witness.send(b"through-the-gateway-page\r")  # cat echoes it
            while b"through-the-gateway-page" not in received:
                assert time.monotonic() < end, f"the peer's output in the page: {received!r}"
                received += ws.recv_data()[1]
        logins = [r for r in peer.audit() if r.get("event") == "login" and r.get("user") == "olga"]
        assert logins[-1]["via"].startswith("gw-127.0.0.50:")  # the host judged olga herself
        assert logins[-1]["login"] == "observer"
        # The host takes olga out of its config: the stream in the gateway's page ends.
        original = json.loads(json.dumps(peer.config))
        try:
            del peer.config["users"]["olga"]
            peer.write()
            assert peer.consrv.process is not None
            peer.consrv.process.send_signal(signal.SIGHUP)
            reloaded = time.monotonic()
            received += read_until_closed(ws, 10)
            # Within a second of the reload, plus the time a loaded machine takes to notice
            # the HUP (named: not the claim itself).
            assert time.monotonic() - reloaded < 1.0 + RELOAD_NOTICE, received[-300:]
        finally:
            peer.config = original
            peer.write()
            assert peer.consrv.process is not None
            peer.consrv.process.send_signal(signal.SIGHUP)
    finally:
        ws.close()
        # The socket too, also when the server closed first (websocket-client leaves it open).
        ws.shutdown()  # type: ignore[no-untyped-call]
    wait_until(
        lambda: fleet.ssh("olga", "tail", "ioc-07").returncode == 0,
        "olga back on ioc-07 after its host's config is restored",
    )


def test_a_peers_console_in_chromium_through_the_gateway(fleet: Fleet, tmp_path: Path) -> None:
    peer = fleet.peers[6]
    link = fleet.ssh("alice", "web").stdout.strip()
    with chromium(tmp_path / "profile") as driver:
        driver.get(link)
        wait_until(lambda: driver.current_url.endswith("/"), "the sign-in redirect to the list")
        wait_until(
            lambda: f"/c/ioc-06%40{peer.name}" in driver.page_source,
            "ioc-06 in the gateway's list",
        )
        driver.get(link.split("/login/")[0] + f"/c/ioc-06@{peer.name}")
        wait_for_screen(driver, "attached to ioc-06")  # the peer's own notice
        with Witness(peer.procservs["ioc-06"].socket) as witness:
            witness.send(b"seen-in-chromium-through-the-gateway\r")
            wait_for_screen(driver, "seen-in-chromium-through-the-gateway")
        assert status(driver).startswith("live")
        assert csp_violations(console_log(driver)) == []


def test_log_and_cast_of_a_peers_console_are_answered_by_that_peer(fleet: Fleet) -> None:
    peer = fleet.peers[2]
    direct = fleet.ssh("alice", "log", SOFT_IOC, "--grep", "upstream", host=peer.name,
                       port=peer.port)  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    assert "upstream up" in direct.stdout
    through = fleet.ssh("alice", "log", SOFT_IOC, "--grep", "upstream")
    assert (through.returncode, through.stdout) == (0, direct.stdout), through.stderr
    cast = fleet.ssh("alice", "cast", SOFT_IOC, "--since", "1h")
    assert cast.returncode == 0, cast.stderr
    header = json.loads(cast.stdout.splitlines()[0])
    assert (header["version"], header["title"]) == (2, SOFT_IOC)
    for verb in ("log", "cast", "play"):
        refused = fleet.ssh("bob", verb, SECRET)
        assert refused.returncode == 1, (verb, refused.stderr)
        assert "unknown console" in refused.stderr
        assert refused.stdout == ""


async def test_play_of_a_peers_recording_through_the_gateway_stops_on_ctrl_c(fleet: Fleet) -> None:
    gw = fleet.gateways[0]
    attach = ssh_argv(gw.address, gw.consrv.port, fleet.users["alice"].private, "observer",
                      SOFT_IOC, tty=False)  # fmt: skip
    for _ in range(2):  # markers on the peer a second apart (attach, detach): 10 s at 0.1x
        done = await trio.run_process(attach, stdin=b"", capture_stdout=True, check=False)
        assert done.returncode == 0, done
        await trio.sleep(1.0)
    argv = ("play", SOFT_IOC, "--since", "1m", "--speed", "0.1")
    client = await pty_ssh(fleet, "alice", "console", *argv).start()
    try:
        await client.expect(rf"playing {SOFT_IOC} from .* at 0\.1x; Ctrl-C".encode())
        await client.send(b"\x03")  # interpreted by the peer, which owns the console
        await client.expect(rb"stopped")
        assert await client.wait() == 0
    finally:
        await client.aclose()


async def test_who_shows_a_user_attached_through_the_gateway(fleet: Fleet) -> None:
    peer = fleet.peers[4]
    client = await pty_ssh(fleet, "alice", "console", "ioc-04").start()
    try:
        await client.expect(rb"you write")
        seen: list[object] = []

        def listed() -> bool:
            data = json.loads(fleet.ssh("olga", "who", "--json").stdout)
            seen[:] = [data]
            return any(u["console"] == "ioc-04" and u["user"] == "alice" for u in data["users"])

        await trio.to_thread.run_sync(
            lambda: wait_until(listed, "alice on ioc-04 in the fleet's who", seen=lambda: seen)
        )
        entry = next(u for u in seen[0]["users"] if u["console"] == "ioc-04")  # type: ignore[index]
        assert entry["host"] == peer.name
        assert entry["mode"] == "writer"
        assert re.fullmatch(r"127\.0\.0\.50:\d+ via gw-127\.0\.0\.50:\d+", entry["from"])
    finally:
        await client.aclose()
    login = [r for r in peer.audit() if r.get("event") == "login" and r.get("user") == "alice"]
    assert login
    assert login[-1]["via"].startswith("gw-127.0.0.50:")


# -- one console, wherever it is -----------------------------------------------------------


async def test_attach_through_the_gateway_reaches_the_ioc(fleet: Fleet) -> None:
    peer = fleet.peers[5]
    with Witness(peer.procservs["ioc-05"].socket) as witness:
        client = await pty_ssh(fleet, "alice", "console", "ioc-05").start()
        try:
            await client.expect(rb"you write")
            await client.send(b"hello-through-the-gateway\r")
            await witness.expect(rb"hello-through-the-gateway")
            await client.expect(rb"hello-through-the-gateway")  # cat's echo, back to the user
            await client.send(b"\x05c.")
            await client.expect(rb"detached from ioc-05")
            assert await client.wait() == 0
        finally:
            await client.aclose()


async def test_observer_through_the_gateway_sends_nothing(fleet: Fleet) -> None:
    peer = fleet.peers[6]
    with Witness(peer.procservs["ioc-06"].socket) as witness:
        client = await pty_ssh(fleet, "alice", "observer", "ioc-06").start()
        try:
            await client.expect(rb"read-only")
            await client.send(b"must-not-arrive\r\x18")
            await client.expect(rb"read-only: your input is not sent")
            await client.send(b"\x05c.")
            assert await client.wait() == 0
        finally:
            await client.aclose()
        await trio.sleep(0.3)  # what was typed had its time to arrive (it must not)
        assert b"must-not-arrive" not in witness.read()


async def test_lock_hand_off_between_a_gateway_user_and_a_direct_user(fleet: Fleet) -> None:
    peer = fleet.peers[7]
    alice = await pty_ssh(fleet, "alice", "console", "ioc-07").start()
    bob = pty_ssh(fleet, "bob", "console", "ioc-07", peer=peer)
    try:
        await alice.expect(rb"you write")
        await bob.start()
        await bob.expect(rb"alice writes")
        await bob.send(b"\x05cf")
        await bob.expect(rb"you now write \(forced from alice\)")
        await alice.expect(rb"bob forced write; you now watch")
        await alice.send(b"\x05cf")  # and back, through the gateway
        await alice.expect(rb"you now write \(forced from bob\)")
    finally:
        await alice.aclose()
        await bob.aclose()


async def test_restart_through_the_gateway(fleet: Fleet) -> None:
    """The console-level restart (procServ's ^X, confirmed) through the gateway: the
    peer asks, the child is restarted (a new pid). `restart NAME` (systemd units) is
    forwarded too: here the peer's own answer and exit status come back."""
    peer = fleet.peers[8]
    procserv = peer.procservs["ioc-08"]
    before = procserv.child_pids()
    client = await pty_ssh(fleet, "alice", "console", "ioc-08").start()
    try:
        await client.expect(rb"you write")
        await client.send(b"\x18")
        await client.expect(rb"Send \^X \(kill/restart\) to IOC ioc-08\? \[y/N\]")
        await client.send(b"y")
        await client.expect(rb"@@@ Restarting child", timeout=20)
    finally:
        await client.aclose()
    await trio.to_thread.run_sync(
        lambda: wait_until(
            lambda: procserv.child_pids() not in ([], before),
            "ioc-08's child to run again with a new pid",
        )
    )
    unit = fleet.ssh("alice", "restart", "ioc-08")
    assert unit.returncode == 1
    assert "ioc-08 is not an IOC unit" in unit.stderr


def test_duplicate_names_are_refused_with_both_choices(fleet: Fleet) -> None:
    first, second = fleet.peers[0].name, fleet.peers[1].name
    result = fleet.ssh("alice", "tail", DUPLICATE)
    assert result.returncode == 2
    assert f"{DUPLICATE}@{first}" in result.stderr
    assert f"{DUPLICATE}@{second}" in result.stderr
    picked = fleet.ssh("alice", "status", f"{DUPLICATE}@{second}")
    assert picked.returncode == 0, picked.stderr
    assert picked.stdout.startswith(f"console   {DUPLICATE}: up")
    nowhere = fleet.ssh("alice", "tail", f"{DUPLICATE}@127.0.0.99")
    assert nowhere.returncode == 1


def said(follow: bytes | bytearray, procserv: bytes) -> str:
    """The tails of what follow printed and what procServ said to a witness."""
    return f"follow printed ...{bytes(follow[-250:])!r}; procServ said ...{procserv[-250:]!r}"


async def test_follow_across_hosts(fleet: Fleet) -> None:
    """``follow`` over consoles of two hosts: each host's lines, whole and prefixed."""
    gateway = fleet.gateways[0]
    argv = ssh_argv(
        gateway.address,
        gateway.consrv.port,
        fleet.users["olga"].private,
        "observer",
        "follow",
        "ioc-0[56]",
        tty=False,
    )
    client = await PtySSH(argv).start()
    try:
        for index in (5, 6):
            name, peer = f"ioc-{index:02d}", fleet.peers[index]
            # One witness for the whole wait, typing through Witness.send: a witness that
            # typed and closed at once was dropped by procServ, mark and all, whenever
            # procServ accepted it only after the close (a busy machine: every time).
            with Witness(peer.procservs[name].socket) as witness:
                what = f"'{name}: mark-{name}' from follow through the gateway"
                with deadline(15, what, lambda: said(client.output, witness.read())):
                    while True:  # the followers attach once the command runs: say it again
                        witness.send(f"mark-{name}\r".encode())
                        with trio.move_on_after(0.5):
                            await client.expect(f"{name}: mark-{name}".encode())
                            break
        await client.send(b"\x04")  # ^D: the end of the user's input ends the follow
        assert await client.wait() == 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("tty", [False, True], ids=["into-a-pipe", "on-a-terminal"])
async def test_follow_through_the_gateway_takes_escapes_out_only_without_a_pty(
    fleet: Fleet, tty: bool
) -> None:
    """The soft IOC's coloured prompt, followed through the gateway: no escape codes
    without a pty (as on its host), the colours on a terminal (the peer is asked for
    ``--raw``: its session has no pty of its own)."""
    gateway, peer = fleet.gateways[0], fleet.peers[2]
    argv = ssh_argv(gateway.address, gateway.consrv.port, fleet.users["olga"].private,
                    "observer", "follow", SOFT_IOC, tty=tty)  # fmt: skip
    client = await PtySSH(argv).start()
    try:
        with Witness(peer.procservs[SOFT_IOC].socket) as witness:
            what = f"{SOFT_IOC}'s prompt line from follow through the gateway"
            with deadline(20, what, lambda: said(client.output, witness.read())):
                while True:  # the follower attaches once the command runs: type again
                    witness.send(b"dbl\r")
                    with trio.move_on_after(1):
                        match = await client.expect(SOFT_IOC.encode() + rb": [^\r\n]*epics> ")
                        break
        await client.send(b"\x04")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    assert (b"\x1b[" in match.group(0), b"\x1b[" in client.output) == (tty, tty), match


# -- failures ----------------------------------------------------------------------------------


def test_a_killed_peer_is_unreachable_then_back(fleet: Fleet) -> None:
    peer = fleet.peers[9]
    assert peer.consrv.process is not None
    peer.consrv.process.kill()
    peer.consrv.process.wait()
    try:
        seen: list[object] = []

        def missing() -> bool:
            data = fleet.listing()
            seen[:] = [data["missing_peers"]]
            return [m["host"] for m in data["missing_peers"]] == [peer.name]

        wait_until(missing, f"{peer.name} in missing_peers", timeout=15, seen=lambda: seen)
        data = fleet.listing()
        states = {row["state"] for row in data["consoles"] if row["host"] == peer.name}
        assert states == {"unreachable"}
        web = web_listing(fleet, "alice")  # the gateway's web list says the same
        assert [m["host"] for m in web["missing_peers"]] == [peer.name]
        assert {r["state"] for r in web["consoles"] if r["host"] == peer.name} == {"unreachable"}
        start = time.monotonic()
        result = fleet.ssh("alice", "tail", "ioc-09")
        assert time.monotonic() - start < 5
        assert result.returncode == UNREACHABLE
        assert re.search(rf"{re.escape(peer.name)} unreachable since \S+Z", result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert f"# {peer.name} unreachable since" in fleet.ssh("alice", "list").stdout
    finally:
        peer.consrv = Consrv(peer.config_path, peer.root).start(timeout=30)
    fleet.wait_complete(timeout=30)
    assert fleet.ssh("alice", "tail", "ioc-09").returncode == 0


def test_a_hung_peer_gets_an_error_within_5_seconds(fleet: Fleet) -> None:
    peer = fleet.peers[PEERS - 1]
    name = f"ioc-{PEERS - 1:02d}"
    assert peer.consrv.process is not None
    pid = peer.consrv.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        result = fleet.ssh("alice", "tail", name)
        elapsed = time.monotonic() - start
        assert result.returncode == UNREACHABLE, result.stderr
        assert elapsed < 5.5  # the gateway's deadline is 4 s; ssh's own start-up on top
        assert peer.name in result.stderr
        wait_until(
            lambda: peer.name in [m["host"] for m in fleet.listing()["missing_peers"]],
            f"{peer.name} (stopped) in missing_peers",
            timeout=15,
        )
        start = time.monotonic()
        again = fleet.ssh("alice", "tail", name)
        assert again.returncode == UNREACHABLE
        assert time.monotonic() - start < 2  # known down: answered at once
    finally:
        os.kill(pid, signal.SIGCONT)
    fleet.wait_complete(timeout=30)


def test_a_restarted_gateway_rebuilds_its_directory(fleet: Fleet) -> None:
    gateway = fleet.gateways[1]
    gateway.consrv.stop()
    start = time.monotonic()
    gateway.consrv = Consrv(gateway.consrv.config, gateway.root).start(timeout=30)
    fleet.wait_complete(gateway=1, timeout=30)
    rebuilt = time.monotonic() - start
    assert rebuilt < 20, f"directory rebuilt in {rebuilt:.1f} s"
    assert len(rows(fleet.listing(gateway=1))) == PEERS + 4


async def test_a_user_removed_on_the_peer_loses_the_session(fleet: Fleet) -> None:
    peer = fleet.peers[PEERS - 2]
    name = f"ioc-{PEERS - 2:02d}"
    client = await pty_ssh(fleet, "bob", "console", name).start()
    original = json.loads(json.dumps(peer.config))
    try:
        await client.expect(rb"you write")
        del peer.config["users"]["bob"]
        peer.config["defaults"]["rw"] = ["alice"]
        peer.write()
        assert peer.consrv.process is not None
        peer.consrv.process.send_signal(signal.SIGHUP)
        await client.expect(rb"removed from consrv's config")
        assert await client.wait() != 0
    finally:
        await client.aclose()
        peer.config = original
        peer.write()
        assert peer.consrv.process is not None
        peer.consrv.process.send_signal(signal.SIGHUP)
    await trio.to_thread.run_sync(
        lambda: wait_until(
            lambda: fleet.ssh("bob", "tail", name).returncode == 0,
            f"bob back on {name} after the config is restored",
        )
    )


def sign(ca: Path, key: Path, principal: str) -> None:
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(ca),
            "-I",
            "forged",
            "-n",
            principal,
            "-V",
            "-5m:+1h",
            str(key) + ".pub",
        ],
        check=True,
        timeout=20,
    )


def test_a_certificate_from_a_non_gateway_address_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    """The gateways' CA signs a certificate (as a thief of the CA key could): it is refused
    from any address but the gateways' (``from=`` on the peer's trusted CA line)."""
    peer = fleet.peers[2]
    key = tmp_path / "id_forged"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sign(fleet.ca, key, "alice")
    argv = ssh_argv(peer.name, peer.port, key, "console", "list", tty=False)
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr
    from_gateway = ["ssh", "-b", fleet.gateways[0].address, *argv[1:]]
    accepted = subprocess.run(from_gateway, capture_output=True, text=True, timeout=20, check=False)
    assert accepted.returncode == 0, accepted.stderr  # the same certificate, the right address


def test_the_feed_is_for_gateway_users_only(fleet: Fleet) -> None:
    peer = fleet.peers[0]
    result = fleet.ssh("alice", "watch", "--json", host=peer.name, port=peer.port)
    assert result.returncode == 3
    assert "fleet gateways" in result.stderr


def run_jumping(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run an ssh that jumps through the gateway, until that ssh ends.

    Its stderr goes to a file, not a pipe: the ProxyCommand (``ssh -W``) inherits it and
    may outlive the ssh it served (seen once holding it for 20 s), which a pipe's reader
    would wait for."""
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=errors, text=True,
                                timeout=20, check=False)  # fmt: skip
        errors.seek(0)
        result.stderr = errors.read().decode(errors="replace")
    return result


def test_proxyjump_reaches_a_peer_end_to_end_and_nothing_else(fleet: Fleet) -> None:
    """``ssh -J console@gw console@peer``: the gateway opens tunnels to its peers only;
    the user logs in to the peer with their own key (OpenSSH's -W, which -J runs)."""
    gateway, peer, key = fleet.gateways[0], fleet.peers[1], fleet.users["bob"].private
    jump = " ".join(ssh_argv(gateway.address, gateway.consrv.port, key, "console", tty=False))
    proxy = ["-o", f"ProxyCommand={jump} -W %h:%p"]
    argv = ssh_argv(peer.name, peer.port, key, "console", "list", tty=False)
    result = run_jumping([argv[0], *proxy, *argv[1:]])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["NAME", "STATE", "WRITER", "VIEWERS"]
    assert "ioc-01" in result.stdout  # the peer's own list: no HOST column
    elsewhere = ssh_argv("127.0.0.1", gateway.consrv.port, key, "console", "list", tty=False)
    refused = run_jumping([elsewhere[0], *proxy, *elsewhere[1:]])
    assert refused.returncode == 255
    gateway.consrv.wait_for_log(rb"bob: tunnel to 127\.0\.0\.1:\d+ refused")


def test_ssh_dash_j_reaches_a_peer_as_a_user_types_it(fleet: Fleet, tmp_path: Path) -> None:
    """``ssh -J gw peer ioc-01``, spelt so (OpenSSH gives the jump host the destination's
    ``-F`` file, not its other options): the user's own key on both hops, the console's
    echo back through the tunnel; a peer's other port is refused."""
    gateway, peer, key = fleet.gateways[0], fleet.peers[1], fleet.users["bob"].private
    config = tmp_path / "ssh_config"
    options = "".join(f"  {opt.split('=', 1)[0]} {opt.split('=', 1)[1]}\n"
                      for opt in SSH_OPTIONS[1::2])  # fmt: skip
    config.write_text(
        f"Host gw\n  HostName {gateway.address}\n  Port {gateway.consrv.port}\n"
        f"  User console\n  IdentityFile {key}\n{options}"
        f"Host {peer.name}\n  User console\n  IdentityFile {key}\n{options}"
    )
    argv = ["ssh", "-F", str(config), "-J", "gw", "-p", str(peer.port), peer.name]
    result = run_jumping([*argv, "list"])
    assert result.returncode == 0, result.stderr
    assert "ioc-01" in result.stdout  # the peer's own list
    other = ["ssh", "-F", str(config), "-J", "gw", "-p", str(peer.port + 1), peer.name, "list"]
    refused = run_jumping(other)
    assert refused.returncode == 255
    gateway.consrv.wait_for_log(
        rf"bob: tunnel to {re.escape(peer.name)}:{peer.port + 1} refused".encode()
    )


async def test_the_menu_covers_the_fleet(fleet: Fleet) -> None:
    peer = fleet.peers[3]
    client = await pty_ssh(fleet, "alice", "console").start()
    try:
        await client.expect(rb"#\s+NAME\s+HOST\s+STATE")
        await client.expect(rb"console \(number or name, empty to quit\): ")
        await client.send(b"dup\r")  # a prefix of two consoles on two hosts
        await client.expect(rb"dup-ioc@127\.1\.0\.10, dup-ioc@127\.1\.0\.11")
        await client.send(f"{SECRET}\r".encode())
        await client.expect(rb"you write")
        await client.send(b"\x05ci")
        await client.expect(rf"console   {SECRET}: up".encode())
        await client.send(b"\x05c.")
        assert await client.wait() == 0
    finally:
        await client.aclose()
    assert SECRET in [r["console"] for r in peer.audit() if r.get("event") == "attach"]
