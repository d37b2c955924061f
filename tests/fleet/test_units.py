"""The fleet's pure parts: the feed's diffs, the directory, routing words, reports, metrics,
the ``fleet:`` config section, certificates and ``fleet init``. No network."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from asyncssh.forward import SSHForwarder
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consrv.access import Role
from consrv.commands.grammar import name_index
from consrv.config import ConfigError, parse_config
from consrv.contracts import UNREACHABLE, Login
from consrv.fleet.bridge import HIGH_WATER, Bridge
from consrv.fleet.directory import Ambiguous, Directory, Found, Missing
from consrv.fleet.gateway import Gateway, Identity
from consrv.fleet.identity import VALIDITY, Minter
from consrv.fleet.link import LinkSettings
from consrv.fleet.metrics import FleetCollector
from consrv.fleet.targets import peers_of, targets_url
from consrv.host.feed import Feed
from consrv.host.policy import suggestion
from consrv.metrics import metrics_registry
from consrv.protocol.feed import FeedError
from consrv.ssh.compat import _ChannelSide
from tests.fleet.offline import NO_HOSTS, entry, line, offline_gateway
from tests.fleet.sim import fleet_init
from tests.test_service import FakeChannel

ALICE = Login("alice", frozenset(), read_only=False, login="console")
BOB = Login("bob", frozenset(), read_only=False, login="console")

# -- the feed (peer side) ---


def decode(data: bytes) -> list[dict[str, object]]:
    return [json.loads(text) for text in data.splitlines()]


def test_the_feed_sends_a_snapshot_then_only_changes() -> None:
    feed = Feed()
    first = decode(feed.update({"alice": []}, {"a": entry("a"), "b": entry("b")}))
    assert [m["type"] for m in first] == ["hello", "console", "console", "sync"]
    assert all(m["schema"] == 1 for m in first)
    assert feed.update({"alice": []}, {"a": entry("a"), "b": entry("b")}) == b""
    changed = decode(feed.update({"alice": ["ops"]}, {"a": entry("a", viewers=1)}))
    assert [(m["type"], m.get("name")) for m in changed] == [
        ("hello", None),
        ("removed", "b"),
        ("console", None),
    ]
    assert changed[2]["console"] == entry("a", viewers=1)


# -- the directory (gateway side) ---


def fed(*messages: bytes) -> Directory:
    directory = Directory([("h1", "127.0.0.11:22"), ("h2", "127.0.0.12:22")])
    for name in ("h1", "h2"):
        peer = directory.peers[name]
        directory.connected(peer, 1.0)
        for message in messages:
            directory.receive(peer, message, 1.0)
    return directory


def test_a_new_feed_replaces_the_old_picture_only_at_sync() -> None:
    directory = fed(
        line(type="hello", users={"alice": []}),
        line(type="console", console=entry("a")),
        line(type="sync"),
    )
    peer = directory.peers["h1"]
    assert peer.up
    directory.connected(peer, 2.0)
    directory.receive(peer, line(type="console", console=entry("b")), 2.0)
    assert set(peer.consoles) == {"a"}  # still the last whole picture
    directory.receive(peer, line(type="sync"), 2.0)
    assert set(peer.consoles) == {"b"}


def test_a_lost_peer_keeps_its_consoles_as_unreachable_and_says_since_when() -> None:
    directory = fed(
        line(type="hello", users={"alice": []}),
        line(type="console", console=entry("a")),
        line(type="sync"),
    )
    peer = directory.peers["h1"]
    directory.lost(peer, 5.0, "connection reset")
    directory.lost(peer, 9.0, "still down")  # since: when it went down, not the last try
    assert (peer.up, peer.since, peer.error) == (False, 5.0, "still down")
    assert directory.missing() == [peer]
    assert Found(peer, "a") in directory.visible("alice", read_only=False)


def test_what_a_user_sees_follows_the_owning_peers_rules() -> None:
    secret = entry("secret", rw=["@ops"], ro=[])
    directory = fed(
        line(type="hello", users={"alice": ["ops"], "bob": []}),
        line(type="console", console=secret),
        line(type="sync"),
    )
    peer = directory.peers["h1"]
    assert peer.role("alice", "secret", read_only=False) is Role.RW
    assert peer.role("alice", "secret", read_only=True) is Role.RO
    assert peer.role("bob", "secret", read_only=False) is None
    assert peer.role("mallory", "secret", read_only=False) is None  # no user there
    assert directory.visible("bob", read_only=False) == []


def test_a_directory_user_is_judged_by_the_unix_groups_the_gateway_knows() -> None:
    """With identity.nss on the gateway, a user no peer's YAML lists may still be theirs."""
    secret = entry("secret", rw=["@ops"], ro=["@lab"])
    directory = fed(
        line(type="hello", users={"bob": ["lab"]}),
        line(type="console", console=secret),
        line(type="sync"),
    )
    peer = directory.peers["h1"]
    assert peer.role("carol", "secret", read_only=False, unix_groups=frozenset({"ops"})) is Role.RW
    assert peer.role("carol", "secret", read_only=False, unix_groups=frozenset()) is None
    assert peer.role("bob", "secret", read_only=False, unix_groups=frozenset({"ops"})) is Role.RW
    assert peer.role("carol", "secret", read_only=False) is None  # the gateway has no NSS
    assert peer.may_operate("carol", "secret", frozenset({"ops"})) is False  # no operate list
    seen = directory.visible("carol", read_only=True, unix_groups=frozenset({"lab"}))
    assert [(f.peer.name, f.name) for f in seen] == [("h1", "secret"), ("h2", "secret")]


def test_lookup_by_name_and_by_name_at_host() -> None:
    directory = fed(
        line(type="hello", users={"alice": []}),
        line(type="console", console=entry("dup")),
        line(type="sync"),
    )
    assert directory.lookup("alice", "dup", read_only=False) == Ambiguous(("dup@h1", "dup@h2"))
    found = directory.lookup("alice", "dup@h2", read_only=False)
    assert isinstance(found, Found)
    assert found.peer.name == "h2"
    assert directory.lookup("alice", "dup@h9", read_only=False) == Missing()
    assert directory.lookup("alice", "nope", read_only=False) == Missing()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"schema": 2, "type": "sync"}',
        b'{"schema": 1, "type": "what"}',
        b'{"schema": 1, "type": "console"}',
        b"[1]",
    ],
)
def test_a_broken_feed_line_is_an_error(data: bytes) -> None:
    directory = Directory([("h1", "127.0.0.11:22")])
    with pytest.raises(FeedError):
        directory.receive(directory.peers["h1"], data, 1.0)


# -- the gateway: routing words, reports ---


@pytest.mark.parametrize(
    ("command", "index"),
    [
        ("my-ioc", 0),
        ("my-ioc --ro", 0),
        ("attach --force my-ioc", 2),
        ("tail -n 5 my-ioc", 3),
        ("tail my-ioc -f", 1),
        ("restart my-ioc", 1),
        ("status my-ioc", 1),
        ("status", None),
        ("who --json", None),
        ("list", None),
        ("help", None),
        ("follow x*", None),
    ],
)
def test_where_the_console_name_is(command: str, index: int | None) -> None:
    assert name_index(command.split()) == index


async def test_fleet_list_has_hosts_and_names_the_missing_peers() -> None:
    gateway = offline_gateway()
    channel = FakeChannel()
    status = await gateway.handle(
        ALICE, "list --json", channel, pty=False, on_input=channel.on_input
    )
    assert status == 0
    data = json.loads(channel.stdout)
    assert [(row["name"], row["host"]) for row in data["consoles"]] == [("ioc-a", "iochost-17")]
    assert [m["host"] for m in data["missing_peers"]] == ["iochost-18"]
    table = FakeChannel()
    await gateway.handle(ALICE, "list", table, pty=False, on_input=table.on_input)
    assert table.stdout.splitlines()[-1] == "# iochost-18 not reached yet"


async def test_remote_who_rows_have_idle_times_from_the_feeds_last_input() -> None:
    gateway = offline_gateway(now=1000.0)
    who = {"mode": "writer", "since": "1970-01-01T00:10:00Z", "login": "console", "from": "x"}
    gateway.directory.peers["iochost-17"].consoles["ioc-a"]["who"] = [
        {**who, "user": "alice", "last_input": "1970-01-01T00:16:10Z"},  # 30 s before now
        {**who, "user": "bob", "last_input": None},  # no keystroke yet
        {**who, "user": "olga"},  # a peer from before last_input: as unknown
    ]
    channel = FakeChannel()
    assert await gateway.handle(ALICE, "who --json", channel, pty=False,
                                on_input=channel.on_input) == 0  # fmt: skip
    users = json.loads(channel.stdout)["users"]
    assert [(u["user"], u["idle_seconds"]) for u in users] == [
        ("alice", 30.0), ("bob", None), ("olga", None)
    ]  # fmt: skip
    assert not any("last_input" in u for u in users)  # who's schema: only idle_seconds
    table = FakeChannel()
    await gateway.handle(ALICE, "who", table, pty=False, on_input=table.on_input)
    lines = table.stdout.splitlines()
    assert lines[0].split()[:6] == ["CONSOLE", "HOST", "USER", "MODE", "IDLE", "SINCE"]
    assert lines[1].split()[2:5] == ["alice", "writer", "30s"]


async def test_a_console_on_a_down_peer_is_one_line_and_status_5() -> None:
    gateway = offline_gateway(now=1000.0)
    gateway.directory.lost(gateway.directory.peers["iochost-17"], 940.0, "connection refused")
    channel = FakeChannel()
    status = await gateway.handle(
        ALICE, "tail ioc-a", channel, pty=False, on_input=channel.on_input
    )
    assert status == UNREACHABLE == 5
    assert channel.notices.decode() == (
        "consrv: iochost-17 unreachable since 1970-01-01T00:15:40Z (1m ago): connection refused\n"
    )
    listed = FakeChannel()
    await gateway.handle(ALICE, "list --json", listed, pty=False, on_input=listed.on_input)
    assert json.loads(listed.stdout)["consoles"][0]["state"] == "unreachable"


async def test_an_unknown_name_gets_the_hosts_own_answer() -> None:
    channel = FakeChannel()
    status = await offline_gateway().handle(
        BOB, "tail nope", channel, pty=False, on_input=channel.on_input
    )
    assert status == 1
    assert "unknown console 'nope'" in channel.notices.decode()


async def unknown_answer(gateway: Gateway, login: Login, command: str) -> tuple[int, str]:
    channel = FakeChannel()
    status = await gateway.handle(login, command, channel, pty=False, on_input=channel.on_input)
    assert channel.stdout == ""
    return status, channel.notices.decode()


async def test_an_unknown_name_is_answered_from_the_whole_fleets_names() -> None:
    gateway = offline_gateway()
    directory = gateway.directory
    other = directory.peers["iochost-18"]
    directory.connected(other, 1000.0)
    for message in (
        line(type="hello", users={"alice": [], "bob": []}),
        line(type="console", console=entry("ioc-a", rw=["alice", "bob"])),
        line(type="console", console=entry("llrf-1", rw=["alice", "bob"])),
        line(type="console", console=entry("vault", rw=["alice"], ro=["alice"])),
        line(type="sync"),
    ):
        directory.receive(other, message, 1000.0)
    # ioc-a is on both peers: each as NAME@HOST; llrf-1 on one: its bare name finds it.
    assert await unknown_answer(gateway, ALICE, "tail ioc-b") == (
        1, "consrv: unknown console 'ioc-b'; did you mean 'ioc-a@iochost-17' or "
        "'ioc-a@iochost-18'?\n"
    )  # fmt: skip
    assert await unknown_answer(gateway, ALICE, "llrf-2") == (
        1, "consrv: unknown console 'llrf-2'; did you mean 'llrf-1'?\n"
    )  # fmt: skip
    assert await unknown_answer(gateway, ALICE, "status vaul") == (
        1, "consrv: unknown console 'vaul'; did you mean 'vault'?\n"
    )  # fmt: skip
    # bob has no role on vault (nor on iochost-17, where he is no user): not near, not
    # listed, as on its host; ioc-a only on iochost-18 for him: its bare name.
    assert await unknown_answer(gateway, BOB, "status vaul") == (
        1, "consrv: unknown console 'vaul'; consoles: ioc-a, llrf-1\n"
    )  # fmt: skip
    assert await unknown_answer(gateway, BOB, "vault") == (
        1, "consrv: unknown console 'vault'; consoles: ioc-a, llrf-1\n"
    )  # fmt: skip
    # NAME@HOST that is not there: the same kind of answer, every name with its host.
    assert await unknown_answer(gateway, ALICE, "tail llrf-1@iochost-17") == (
        1, "consrv: unknown console 'llrf-1@iochost-17'; did you mean 'llrf-1@iochost-18'?\n"
    )  # fmt: skip
    assert await unknown_answer(gateway, ALICE, "tail zzz@iochost-99") == (
        1, "consrv: unknown console 'zzz@iochost-99'; consoles: ioc-a@iochost-17, "
        "ioc-a@iochost-18, llrf-1@iochost-18, vault@iochost-18\n"
    )  # fmt: skip
    assert await unknown_answer(gateway, BOB, "tail vault@iochost-18") == (
        1, "consrv: unknown console 'vault@iochost-18'; consoles: ioc-a@iochost-18, "
        "llrf-1@iochost-18\n"
    )  # fmt: skip
    status, said = await unknown_answer(gateway, ALICE, "tail b/d@iochost-17")
    assert (status, said.split(":")[:2]) == (1, ["consrv", " invalid console name 'b/d'"])
    # Usage is judged first, as on a host.
    assert (await unknown_answer(gateway, ALICE, "tail ioc-b -n x"))[0] == 2


def test_an_unknown_names_suggestion_shows_a_host_only_where_needed() -> None:
    places = [("a-ioc", "h1"), ("a-ioc", "h2"), ("b-ioc", "h2")] + [
        (f"x{i}", "h3") for i in range(8)
    ]
    assert suggestion("b-io", places) == "; did you mean 'b-ioc'?"
    assert suggestion("b-ioc", places) == "; did you mean 'b-ioc@h2'?"  # not where asked
    assert suggestion("b-io@h1", places, qualified=True) == "; did you mean 'b-ioc@h2'?"
    assert suggestion("nothing", places) == (
        "; consoles: a-ioc@h1, a-ioc@h2, b-ioc, x0, x1, x2, x3, x4 and 3 more (list)"
    )
    assert suggestion("nothing", []) == "; there are no consoles you may see"
    here = [("my-ioc", ""), ("other", "")]  # a host with no fleet: bare names only
    assert suggestion("my-iocc", here) == "; did you mean 'my-ioc'?"
    assert suggestion("zz", here) == "; consoles: my-ioc, other"


def test_the_gateways_metrics() -> None:
    text = generate_latest(metrics_registry(FleetCollector(offline_gateway()))).decode()
    samples = {
        (s.name, s.labels.get("peer")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("consrv_fleet_peer_up", "iochost-17")] == 1
    assert samples[("consrv_fleet_peer_up", "iochost-18")] == 0
    assert samples[("consrv_fleet_peer_consoles", "iochost-17")] == 1
    assert samples[("consrv_fleet_directory_consoles", None)] == 1
    assert samples[("consrv_fleet_proxied_sessions_total", None)] == 0
    assert samples[("consrv_fleet_peer_received_bytes_total", "iochost-17")] == 0


def test_a_reconfigured_gateway_drops_and_adds_peers_and_swaps_its_identity() -> None:
    gateway = offline_gateway()
    settings = LinkSettings(asyncssh.generate_private_key("ssh-ed25519"), NO_HOSTS)
    identity = Identity(settings, Minter(asyncssh.generate_private_key("ssh-ed25519"), "gw"))
    peers = [("iochost-17", "127.0.0.17:22"), ("iochost-19", "127.0.0.19:22")]
    gateway.reconfigure(peers, identity)
    assert sorted(gateway.directory.peers) == ["iochost-17", "iochost-19"]
    assert sorted(gateway.links) == ["iochost-17", "iochost-19"]
    assert gateway.directory.peers["iochost-17"].consoles.keys() == {"ioc-a"}  # kept, linked
    assert all(link.settings is settings for link in gateway.links.values())
    assert gateway.link_settings is settings
    assert gateway.minter is identity.minter
    gateway.reconfigure([("iochost-17", "127.0.0.99:22")], identity)  # moved: a new link
    assert gateway.directory.peers["iochost-17"].address == "127.0.0.99:22"
    assert gateway.directory.peers["iochost-17"].consoles == {}
    assert gateway.static == {"iochost-17"}


# -- certificates ---


def test_a_minted_certificate_names_one_user_briefly_without_forwarding(tmp_path: Path) -> None:
    """Read back by OpenSSH's own ``ssh-keygen -L``."""
    ca = asyncssh.generate_private_key("ssh-ed25519")
    credential = Minter(ca, "gw1").mint("alice", "127.0.0.50", now=1_000_000.0)
    assert credential.key_id.startswith("gw1:")
    path = tmp_path / "id-cert.pub"
    path.write_bytes(credential.certificate.export_certificate())
    shown = subprocess.run(
        ["ssh-keygen", "-L", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=20,
    ).stdout
    fields = " ".join(shown.split())
    assert f'Key ID: "{credential.key_id}"' in fields
    assert "Principals: alice Critical Options: source-address 127.0.0.50/32" in fields
    assert fields.endswith("Extensions: permit-pty no-touch-required")  # no forwarding, no rc
    valid = shown.split("Valid: from ")[1].split("\n")[0].split(" to ")
    assert [t[-8:] for t in valid] == ["13:45:40", "13:48:40"]  # 1e6 - 60 s .. 1e6 + VALIDITY
    assert VALIDITY == 120


# -- the fleet: config section ---


def problems(data: dict[str, object], tmp_path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    return [str(problem) for problem in caught.value.problems]


def test_fleet_settings_errors_name_the_key(tmp_path: Path) -> None:
    assert problems({"fleet": {"peers": ["iochost"]}}, tmp_path)[0].startswith("fleet.peers[0]:")
    assert problems({"fleet": {"peers": ["iochost:22"]}}, tmp_path) == [
        "fleet: a gateway (peers) needs known_hosts, key, ca_key (consrv fleet init makes them)"
    ]
    assert problems({"fleet": {"connect_timeout": "9s"}}, tmp_path)[0].startswith(
        "fleet.connect_timeout: must be more than 0 and at most 4.5 s"
    )
    assert problems({"fleet": {"gateway_users": ["gateway"]}}, tmp_path) == [
        "fleet.gateway_users[0]: unknown user 'gateway' (not in users:)"
    ]
    assert problems({"fleet": {"peerz": []}}, tmp_path)[0].startswith("fleet.peerz: unknown key")
    assert problems({"fleet": {"bind": "gw"}}, tmp_path)[0].startswith("fleet.bind:")


def test_peers_come_from_a_file_with_line_numbers_in_errors(tmp_path: Path) -> None:
    (tmp_path / "peers").write_text("# from config management\niochost-1:22\n\nbad\niochost-1:22\n")
    gateway = {"peers_file": "peers", "known_hosts": "kh", "key": "k", "ca_key": "ca"}
    found = problems({"fleet": gateway}, tmp_path)
    assert found[0].startswith(f"fleet.peers_file: {tmp_path / 'peers'}:4:")
    assert "is listed twice" in found[1]
    (tmp_path / "peers").write_text("iochost-1:22\niochost-2:2222\n10.0.0.7:22 # a comment\n")
    config = parse_config({"fleet": gateway}, tmp_path)
    assert config.fleet is not None
    assert [p.name for p in config.fleet.peers] == ["iochost-1", "iochost-2", "10.0.0.7"]
    assert config.fleet.key == tmp_path / "k"


def test_a_trusted_ca_may_be_limited_to_some_addresses(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    config = parse_config(
        {"ssh": {"trusted_user_ca_keys": [f'from="10.0.0.1,10.0.1.0/24" {key} gw-ca']}}, tmp_path
    )
    assert config.ssh.trusted_user_ca_keys == (
        f'from="10.0.0.1,10.0.1.0/24" {" ".join(key.split()[:2])}',
    )
    bad = problems({"ssh": {"trusted_user_ca_keys": [f'from="a b" {key}']}}, tmp_path)
    assert bad[0].startswith("ssh.trusted_user_ca_keys[0]: from=:")


def test_fleet_init_prints_lines_that_check_config_accepts(tmp_path: Path) -> None:
    first = fleet_init(tmp_path / "keys", "gw1", ("10.0.0.1",))
    again = fleet_init(tmp_path / "keys", "gw1", ("10.0.0.1",))
    assert "# created" in first
    assert "# kept" in again
    assert first.split("fleet:", 1)[1] == again.split("fleet:", 1)[1]  # the same keys again
    (tmp_path / "keys" / "peers").write_text("iochost-1:22\n")
    gateway_part, peer_part = first.split("# --- every peer's config")
    (tmp_path / "gw.yaml").write_text(gateway_part.split("\n", 3)[3])
    (tmp_path / "peer.yaml").write_text(peer_part.split("\n", 1)[1])
    for name in ("gw.yaml", "peer.yaml"):
        checked = subprocess.run(
            [sys.executable, "-m", "consrv", "check-config", "--config", str(tmp_path / name)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert checked.returncode == 0, (name, checked.stderr)


# -- the bridge: what crosses the hop ---


class FakePeerChannel:
    """The peer's side of a bridge, as asyncssh's client channel: records what it is told."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.calls: list[tuple[object, ...]] = []

    def write(self, data: bytes) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.calls.append(("eof",))

    def change_terminal_size(self, width: int, height: int, pw: int, ph: int) -> None:
        self.calls.append(("size", width, height, pw, ph))

    def send_break(self, msec: int) -> None:
        self.calls.append(("break", msec))

    def pause_reading(self) -> None:
        self.calls.append(("pause",))

    def resume_reading(self) -> None:
        self.calls.append(("resume",))


def test_the_bridge_passes_input_pty_events_and_flow_control() -> None:
    channel = FakeChannel()
    bridge = Bridge(channel)
    peer = FakePeerChannel()
    bridge.peer = peer  # type: ignore[assignment]
    bridge.feed(b"\x05c.\x00\xff")  # escapes and any byte: passed, not interpreted
    bridge.resized(132, 43, 0, 0)
    bridge.break_received(250)
    bridge.eof()
    assert bytes(peer.written) == b"\x05c.\x00\xff"
    assert peer.calls == [("size", 132, 43, 0, 0), ("break", 250), ("eof",)]
    bridge.from_peer(b"out", stderr=False)
    bridge.from_peer(b"[consrv: note]\n", stderr=True)
    assert bytes(channel.out) == b"out"
    assert bytes(channel.notices) == b"[consrv: note]\n"
    channel.stalled = True  # the user stops reading: the peer is paused, then resumed
    bridge.from_peer(b"x" * (HIGH_WATER + 1), stderr=False)
    assert peer.calls[-1] == ("pause",)
    bridge.drained()
    assert peer.calls[-1] == ("resume",)


# -- peers from Prometheus ---


def answer(*targets: dict[str, str]) -> dict[str, object]:
    return {
        "status": "success",
        "data": {"activeTargets": [{"labels": labels} for labels in targets]},
    }


def test_peers_are_the_jobs_targets_with_their_ssh_port() -> None:
    data = answer(
        {"job": "consrv", "instance": "iochost-17:9108"},
        {"job": "consrv", "instance": "iochost-18:9108", "ssh_port": "2222"},
        {"job": "consrv", "instance": "[2001:db8::7]:9108"},
        {"job": "consrv", "instance": "iochost-17:9109"},  # the same host twice: one peer
        {"job": "node", "instance": "iochost-19:9100"},
    )
    assert peers_of(data, "consrv", 22) == [
        ("2001:db8::7", "[2001:db8::7]:22"),
        ("iochost-17", "iochost-17:22"),
        ("iochost-18", "iochost-18:2222"),
    ]
    with pytest.raises(ValueError, match="not a successful"):
        peers_of({"status": "error"}, "consrv", 22)
    with pytest.raises(ValueError, match="bad ssh_port"):
        peers_of(answer({"job": "consrv", "instance": "h:1", "ssh_port": "0"}), "consrv", 22)
    assert targets_url("http://prom:9090/") == "http://prom:9090/api/v1/targets?state=active"
    with pytest.raises(ValueError, match="http"):
        targets_url("file:///etc/passwd")


def test_prometheus_as_a_peer_source_is_validated(tmp_path: Path) -> None:
    keys = {"known_hosts": "kh", "key": "k", "ca_key": "ca"}
    source = {"url": "http://prom:9090", "job": "consrv"}
    config = parse_config({"fleet": {"prometheus": source, **keys}}, tmp_path)
    assert config.fleet is not None
    assert config.fleet.gateway
    assert config.fleet.prometheus is not None
    assert (config.fleet.prometheus.ssh_port, config.fleet.prometheus.interval) == (22, 30.0)
    assert problems({"fleet": {"prometheus": {**source, "url": "prom:9090"}, **keys}}, tmp_path)[
        0
    ].startswith("fleet.prometheus.url: expected an http")
    assert problems({"fleet": {"prometheus": source}}, tmp_path) == [
        "fleet: a gateway (peers) needs known_hosts, key, ca_key (consrv fleet init makes them)"
    ]


def test_a_gateway_key_others_may_read_is_refused(tmp_path: Path) -> None:
    fleet_init(tmp_path / "keys", "gw1", ("10.0.0.1",))
    ca_key = tmp_path / "keys" / "gateway_ca"
    ca_key.chmod(0o644)
    config = tmp_path / "gw.yaml"
    config.write_text(
        "fleet:\n  peers: [iochost-1:22]\n  known_hosts: keys/known_hosts\n"
        "  key: keys/gateway_key\n  ca_key: keys/gateway_ca\n"
    )
    for command in ("check-config", "serve"):
        argv = [sys.executable, "-m", "consrv", command, "--config", str(config)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        assert result.returncode in (1, 2), result.stderr
        assert f"fleet.ca_key: {ca_key}: UNPROTECTED PRIVATE KEY FILE" in result.stderr


# -- ssh -J: the tunnel's first bytes ---


class _Collecting(asyncio.Transport):
    """A transport that keeps what is written to it and whether reading is paused."""

    def __init__(self) -> None:
        super().__init__()
        self.data, self.paused = b"", False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def test_a_tunnel_passes_on_what_the_destination_said_before_the_channel_opened() -> None:
    """An SSH server speaks first: its banner may come before the channel is open
    (asyncssh's own forwarder drops it; the fleet suite saw ProxyJump fail so)."""
    tcp, tcp_transport = SSHForwarder(), _Collecting()
    tcp.connection_made(tcp_transport)
    tcp.data_received(b"SSH-2.0-")  # before the channel's end exists
    channel = _ChannelSide(tcp)
    assert tcp_transport.paused  # no more until the channel is open
    tcp.data_received(b"peer\r\n")  # already in flight
    channel_transport = _Collecting()
    channel.connection_made(channel_transport)
    assert channel_transport.data == b"SSH-2.0-peer\r\n"
    assert not tcp_transport.paused
    tcp.data_received(b"more")
    assert channel_transport.data.endswith(b"\r\nmore")
