"""The gateway: one namespace over every peer, answered from the live directory.

Owns the fleet's meaning of a command line: ``list|who|status [--json]`` with no
name cover this host and every peer (from the directory: no peer is asked at
request time); a command naming one console (``NAME``, ``attach``, ``tail``,
``status NAME``, ``who NAME``, ``start|stop|restart``, ``log``, ``play``, ``cast``)
runs on the console's own host, through a `Bridge` under a certificate minted for
the user; ``follow`` spans hosts. ``NAME@HOST`` picks a host; a name on several
hosts is refused with the choices; a name whose host is down gets one line naming the host and since
when (exit status 5), within the hop's deadline; an unknown one, the host's answer from the
fleet's names (`places`, `Host.suggest`). Everything else is this host's
`commands.Shell`. The SSH front reaches the gateway only through
``contracts.Commands``; which verb goes where is ``commands.grammar``'s.
"""

from __future__ import annotations

import fnmatch
import logging
import shlex
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import asyncssh
import trio

from consrv import views
from consrv.commands.grammar import REPORTS, VERBS, name_index
from consrv.contracts import (
    DENIED,
    NOT_FOUND,
    OK,
    UNREACHABLE,
    USAGE,
    Channel,
    Commands,
    Input,
    Login,
    error_bytes,
    text_bytes,
)
from consrv.fleet import reports
from consrv.fleet.bridge import Bridge, Hop, Terminal, open_hop
from consrv.fleet.directory import Ambiguous, Directory, Found, Missing, Peer, split_host
from consrv.fleet.fanout import Fanout, Lines
from consrv.fleet.hops import HopPool, Key
from consrv.fleet.identity import Minter
from consrv.fleet.link import LinkSettings, PeerLink, Tune, split_address
from consrv.fleet.targets import TargetSource, read_peers
from consrv.host import Host
from consrv.menu import LineReader, pick
from consrv.names import InvalidName, validate_console_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """What the gateway is on its peers: its link settings (its key, ``known_hosts``,
    deadlines) and its CA's minter. Swapped whole by a reload."""

    settings: LinkSettings
    minter: Minter


CONNECTING = 32
RAW = "--raw"  # follow's option: the console's bytes as they came, escapes and all
SWEEP = 1.0  # seconds between looks at the connections kept for web reads (hops.py)


class Gateway:
    """``contracts.Commands`` for a consrv with peers: the fleet first, then this host."""

    def __init__(
        self,
        host: Host,
        local: Commands,  # this host's command line (commands.Shell)
        name: str,
        peers: list[tuple[str, str]],
        link_settings: LinkSettings,
        minter: Minter,
        *,
        clock: Callable[[], float] = time.time,
        tune: Tune | None = None,
    ) -> None:
        self.host, self.local, self.name, self.minter = host, local, name, minter
        self.tune = tune  # done to every connection to a peer (link.Tune)
        self.link_settings = link_settings = self._tuned(link_settings)
        self.clock = clock
        self.directory = Directory(peers)
        # Links being set up at once: a gateway starting in front of 1,000 peers does
        # their key exchanges a few dozen at a time, so its own users are served meanwhile.
        self.connecting = trio.CapacityLimiter(CONNECTING)
        self.links = {
            peer.name: PeerLink(peer, self.directory, link_settings, clock, self.connecting)
            for peer in self.directory.peers.values()
        }
        self.static = frozenset(self.links)  # from the config: never dropped
        self.source: TargetSource | None = None  # more peers from Prometheus
        self.proxied = 0  # sessions carried to a peer, ever
        self.active = 0  # carried now
        self.received: Counter[str] = Counter()  # bytes each peer sent to users, ever
        self.hops = HopPool()  # connections kept for users' web reads
        self._nursery: trio.Nursery | None = None
        self._scopes: dict[str, trio.CancelScope] = {}
        host.places = self.places  # an unknown name is answered from the whole fleet

    def _tuned(self, settings: LinkSettings) -> LinkSettings:
        return settings if settings.tune is self.tune else replace(settings, tune=self.tune)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep a link to every peer, forever (each its own task: none waits for another)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for name in self.links:
                self._start(name)
            if self.source is not None:
                nursery.start_soon(self._follow_targets, self.source)
            nursery.start_soon(self._sweep_hops)
            task_status.started()

    async def _sweep_hops(self) -> None:
        """Close the web reads' kept connections once idle, old, or to a peer now down."""
        while True:
            await trio.sleep(SWEEP)
            self.hops.sweep(self._up)

    def _up(self, name: str) -> bool:
        peer = self.directory.peers.get(name)
        return peer is not None and peer.up

    def _start(self, name: str) -> None:
        assert self._nursery is not None
        scope = self._scopes[name] = trio.CancelScope()
        self._nursery.start_soon(_run_link, self.links[name], scope, name=f"fleet:{name}")

    def _add(self, name: str, address: str, why: str) -> None:
        peer = self.directory.add_peer(name, address)
        self.links[name] = PeerLink(
            peer, self.directory, self.link_settings, self.clock, self.connecting
        )
        if self._nursery is not None:
            self._start(name)
        logger.info("fleet: peer %s (%s) added (%s)", name, address, why)

    def _drop(self, name: str, why: str) -> None:
        """The peer's link closed and its entries gone from the directory, at once."""
        scope = self._scopes.pop(name, None)
        if scope is not None:
            scope.cancel()
        del self.directory.peers[name], self.links[name]
        logger.info("fleet: peer %s dropped (%s)", name, why)

    def update_peers(self, found: list[tuple[str, str]]) -> None:
        """Peers read from Prometheus: new ones linked, gone ones dropped (not the config's)."""
        wanted = dict(found)
        for name in list(self.directory.peers):
            peer = self.directory.peers[name]
            if name not in self.static and wanted.get(name) != peer.address:
                self._drop(name, "no longer a target")
        for name, address in found:
            if name not in self.directory.peers:
                self._add(name, address, "from Prometheus")

    def reconfigure(self, peers: list[tuple[str, str]], identity: Identity) -> None:
        """A reload: the config's peers (``fleet.peers``, ``peers_file``) and identity.

        A peer no longer listed (or listed at another address) is dropped, a new
        one linked; the others keep their links. New connections, to a peer or for
        a user's session, use the new key, CA and ``known_hosts``; open ones stay.
        """
        wanted = dict(peers)
        self.hops.close_all()  # rights or identity may have changed: new reads, new logins
        settings = self._tuned(identity.settings)
        self.link_settings, self.minter = settings, identity.minter
        for link in self.links.values():
            link.settings = settings
        for name in sorted(self.static):
            if wanted.get(name) != self.directory.peers[name].address:
                self._drop(name, "no longer in the config")
        for name, address in peers:
            known = self.directory.peers.get(name)
            if known is not None and known.address != address:
                self._drop(name, f"now at {address}")  # a Prometheus peer the config moved
            if name not in self.directory.peers:
                self._add(name, address, "in the config")
        self.static = frozenset(wanted)

    async def _follow_targets(self, source: TargetSource) -> None:
        while True:
            try:
                self.update_peers(await read_peers(source))
            except (OSError, ValueError, KeyError, TypeError, trio.TooSlowError) as exc:
                logger.warning("fleet: cannot read peers from %s: %s", source.url, exc)
            await trio.sleep(source.interval)

    # -- contracts.FleetView (the web front's list) -----------------------------------
    def rows_for(self, login: Login) -> list[dict[str, Any]]:
        """Every console `login` may see, here and on every peer, by name then host."""
        rows = []
        for name in self.host.visible(login):
            row = views.console_dict(self.host.view(name))
            who = self.host.registry.consoles[name].who()
            row["who"] = [views.who_dict(name, entry) for entry in who]
            rows.append({**row, "host": self.name})
        now = self.clock()
        for found in self.directory.visible(
            login.user, read_only=login.read_only, unix_groups=self.unix_groups(login)
        ):
            row = dict(found.peer.consoles[found.name])
            row.setdefault("last_output", None)
            row["who"] = reports.with_idle(row.get("who", ()), now)
            if not found.peer.up:
                row["state"] = reports.UNREACHABLE
            rows.append({**row, "host": found.peer.name})
        return sorted(rows, key=lambda r: (r["name"], r["host"]))

    def places(self, login: Login) -> list[tuple[str, str]]:
        """(NAME, HOST) of every console `login` may see, here and on every peer (by the
        peer's rules): what an unknown name's answer suggests from (`Host.suggest`)."""
        here = [(name, self.name) for name in self.host.visible(login)]
        found = self.directory.visible(
            login.user, read_only=login.read_only, unix_groups=self.unix_groups(login)
        )
        return here + [(f.name, f.peer.name) for f in found]

    def unix_groups(self, login: Login) -> frozenset[str] | None:
        """The user's Unix groups when this gateway's NSS defines users (its peers share
        the facility's directory: docs/identity.md); None: peers' YAML users only."""
        identity = self.host.registry.config.identity
        return login.unix_groups if identity is not None and identity.nss else None

    def fleet_rows(self, login: Login) -> list[dict[str, Any]]:
        return reports.web_rows(self.rows_for(login), self.name)

    def fleet_missing(self) -> list[dict[str, Any]]:
        return [reports.missing_dict(peer) for peer in self.directory.missing()]

    async def fleet_stream(
        self, login: Login, target: str, sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        run = FleetRun(self, self.host.current(login), sink, False, on_input)
        if not run.login.read_only:
            return run.error("a browser stream is read-only", DENIED)
        return await run.named(["attach", target, "--ro"], 1)

    async def fleet_read(
        self, login: Login, words: list[str], sink: Channel, on_input: Callable[[Input], None]
    ) -> int:
        run = FleetRun(self, self.host.current(login), sink, False, on_input)
        verb = VERBS.get(words[0]) if words else None
        if not run.login.read_only or verb is None or not verb.reads_files:
            return run.error("the browser view only reads a console's files", DENIED)
        index = name_index(words)
        where = run.where(words[index]) if index is not None else None
        if index is None or where is None or isinstance(where, Missing):
            return run.error("no such console on a peer", NOT_FOUND)  # the web has its own
        run.pooled = True
        return await run.named(words, index)

    def allows_tunnel(self, host: str, port: int) -> bool:
        """``ssh -J``: only to a peer of the directory, by its name or its address."""
        return any(
            port == split_address(peer.address)[1]
            and host in (peer.name, split_address(peer.address)[0])
            for peer in self.directory.peers.values()
        )

    # -- contracts.Commands -----------------------------------------------------------
    async def handle(
        self,
        login: Login,
        command: str,
        channel: Channel,
        *,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> int:
        run = FleetRun(self, self.host.current(login), channel, pty, on_input)
        try:
            words = shlex.split(command)
        except ValueError:
            words = []
        if not words:
            return await (run.menu() if pty and command.strip() == "" else run.local(command))
        verb, args = words[0], words[1:]
        if verb in REPORTS and name_index(words) is None:
            return await run.report(verb, args, command)
        if verb in VERBS and VERBS[verb].spans_hosts:
            return await run.follow(args, command)
        index = name_index(words)
        if index is None:
            return await run.local(command)
        return await run.named(words, index)


async def _run_link(link: PeerLink, scope: trio.CancelScope) -> None:
    with scope:
        await link.run()


class FleetRun:
    """One command line on the gateway for one login."""

    def __init__(
        self,
        gateway: Gateway,
        login: Login,
        channel: Channel,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> None:
        self.gateway, self.login, self.channel, self.pty = gateway, login, channel, pty
        self.on_input = on_input
        self.host, self.directory = gateway.host, gateway.directory
        self.pooled = False  # a web read: a connection kept for the user may carry it

    async def local(self, command: str, channel: Channel | None = None,
                    on_input: Callable[[Input], None] | None = None) -> int:  # fmt: skip
        return await self.gateway.local.handle(
            self.login, command, channel or self.channel, pty=self.pty,
            on_input=on_input or self.on_input,
        )  # fmt: skip

    def _unix_groups(self) -> frozenset[str] | None:
        return self.gateway.unix_groups(self.login)

    def text(self, text: str) -> None:
        self.channel.write(text_bytes(text, pty=self.pty))

    def error(self, text: str, status: int) -> int:
        self.channel.write_notice(error_bytes(text, pty=self.pty))
        return status

    # -- list / who / status over the fleet ------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        """Every console the user may see, here and on every peer, by name then host."""
        return self.gateway.rows_for(self.login)

    async def report(self, verb: str, args: list[str], command: str) -> int:
        flags = set(args)
        if not flags <= {"--json"}:
            return await self.local(command)  # this host's shell says what is wrong
        rows, missing, now = self.rows(), self.directory.missing(), self.gateway.clock()
        if verb == "who":
            who = reports.who_json(rows, missing) if flags else None
            text = who or reports.who_table(rows, missing, now)
        elif flags:
            text = reports.list_json(rows, missing)
        elif verb == "list":
            text = reports.list_table(rows, missing, now)
        else:
            text = reports.status_table(rows, missing, now)
        self.text(text)
        return OK

    # -- the menu, over the fleet -------------------------------------------------------
    async def menu(self) -> int:
        """``ssh -t console@gw``: every console the user may see, picked by number or name."""
        rows = self.rows()
        if not rows:
            return await self.local("")  # this host's shell says there is none
        self.text(reports.list_table(rows, self.directory.missing(), self.gateway.clock(),
                                     numbered=True))  # fmt: skip
        choices = [f"{row['name']}@{row['host']}" for row in rows]
        reader = LineReader(self.channel)
        self.on_input(reader)
        while True:
            self.channel.write_notice(b"console (number or name, empty to quit): ")
            line = await reader.read_line()
            if not line:
                return OK
            choice = pick(line, choices)
            if isinstance(choice, str):
                name, host = split_host(choice)
                command = shlex.join(["attach", name])
                peer = self.directory.peers.get(host)
                if host == self.gateway.name or peer is None:
                    return await self.local(command)
                return await self.forward(peer, command)
            text = ", ".join(choice[:10]) if choice else "no such console"
            self.text(f"{line[:40]!r}: {text}\n")

    # -- one console, wherever it is ---------------------------------------------------
    def where(self, text: str) -> Found | Ambiguous | Missing | None:
        """The peer that owns ``text`` (NAME or NAME@HOST), None for this host."""
        name, host = split_host(text)
        if host == self.gateway.name:
            return None
        here = not host and name in self.host.visible(self.login)
        found = self.directory.lookup(
            self.login.user, text, read_only=self.login.read_only, unix_groups=self._unix_groups()
        )
        if not here:
            return found
        if isinstance(found, Missing):
            return None
        there = found.choices if isinstance(found, Ambiguous) else (f"{name}@{found.peer.name}",)
        return Ambiguous(tuple(sorted((f"{name}@{self.gateway.name}", *there))))

    async def named(self, words: list[str], index: int) -> int:
        text = words[index]
        name, host = split_host(text)
        where = self.where(text)
        if where is None or (isinstance(where, Missing) and not host):
            words[index] = name
            return await self.local(shlex.join(words))  # unknown: Host.suggest over `places`
        if isinstance(where, Missing):
            return self.unknown(text)
        if isinstance(where, Ambiguous):
            choices = ", ".join(where.choices)
            return self.error(f"{name!r} is on several hosts: {choices}; name one as NAME@HOST",
                              USAGE)  # fmt: skip
        words[index] = name
        return await self.forward(where.peer, shlex.join(words))

    def unknown(self, text: str) -> int:
        """``NAME@HOST`` that is not there: the host's answer, from the whole fleet."""
        try:
            validate_console_name(split_host(text)[0])
        except InvalidName as exc:
            return self.error(str(exc), NOT_FOUND)
        suggestion = self.host.suggest(self.login, text, qualified=True)
        return self.error(f"unknown console {text[:130]!r}{suggestion}", NOT_FOUND)

    async def forward(
        self,
        peer: Peer,
        command: str,
        channel: Channel | None = None,
        on_input: Callable[[Input], None] | None = None,
    ) -> int:
        """Run ``command`` on ``peer`` as this user, bridging the channel to it (a web read:
        on a connection kept for this user and peer, `hops.HopPool`)."""
        now = self.gateway.clock()
        if not peer.up:
            return self.error(reports.unreachable_text(peer, now), UNREACHABLE)
        gateway, channel = self.gateway, channel or self.channel
        key = Key.of(self.login, peer.name, self._peer_login()) if self.pooled else None
        lent = gateway.hops.take(key) if key is not None else None
        host, port = split_address(peer.address)
        if lent is None:
            source = gateway.links[peer.name].local_address
            credential = gateway.minter.mint(self.login.user, source, now)
            hop = Hop(host, port, self._peer_login(), command, credential)
            conn = await self._connect(peer, hop)
            if isinstance(conn, int):
                return conn
            if key is not None:
                gateway.hops.add(key, conn, credential)
        else:
            conn, credential = lent
            hop = Hop(host, port, self._peer_login(), command, credential)
        bridge = Bridge(channel, gateway.received, peer.name)
        (on_input or self.on_input)(bridge)
        terminal = channel if isinstance(channel, Terminal) else None
        logger.info("fleet: %s %r on %s as %s (%s%s)", self.login.user, command, peer.name,
                    hop.login, credential.key_id, ", kept" if lent else "")  # fmt: skip
        gateway.proxied += 1
        gateway.active += 1
        failed = True
        try:
            with trio.fail_after(gateway.link_settings.connect_timeout):
                await bridge.open(conn, hop, terminal)
            failed = False
            status = await bridge.wait()
            failed = bridge.status is None
            return status
        except trio.TooSlowError:
            return self._unreachable(peer, "no answer within "
                                     f"{gateway.link_settings.connect_timeout:g} s")  # fmt: skip
        except (OSError, asyncssh.Error) as exc:
            return self._unreachable(peer, str(exc) or type(exc).__name__)
        finally:
            gateway.active -= 1
            if key is None:
                conn.abort()
            else:
                bridge.close()
                gateway.hops.release(conn, failed)

    async def _connect(self, peer: Peer, hop: Hop) -> asyncssh.SSHClientConnection | int:
        """A new connection to `peer` under the hop's certificate (an int: why not)."""
        settings = self.gateway.link_settings
        try:
            return await open_hop(settings, hop)
        except trio.TooSlowError:
            return self._unreachable(peer, f"no answer within {settings.connect_timeout:g} s")
        except asyncssh.PermissionDenied:
            return self.error(f"{peer.name} refused this gateway's certificate for "
                              f"{self.login.user}", DENIED)  # fmt: skip
        except (OSError, asyncssh.Error) as exc:
            return self._unreachable(peer, str(exc) or type(exc).__name__)

    def _unreachable(self, peer: Peer, why: str) -> int:
        since = f" (up since {views.iso(peer.since)})" if peer.up and peer.since else ""
        return self.error(f"{peer.name} unreachable{since}: {why}", UNREACHABLE)

    def _peer_login(self) -> str:
        ssh = self.host.registry.config.ssh
        return ssh.observer_login if self.login.read_only else ssh.login

    # -- follow across hosts -------------------------------------------------------------
    async def follow(self, args: list[str], command: str) -> int:
        words = [word for word in args if word not in VERBS["follow"].flags]  # --raw
        if len(words) != 1 or words[0].startswith("-"):
            return await self.local(command)
        pattern = words[0]
        visible = self.directory.visible(
            self.login.user, read_only=self.login.read_only, unix_groups=self._unix_groups()
        )
        peers = sorted({f.peer.name for f in visible if fnmatch.fnmatchcase(f.name, pattern)})
        if not peers:
            return await self.local(command)
        here = any(fnmatch.fnmatchcase(n, pattern) for n in self.host.visible(self.login))
        fan = Fanout()
        self.on_input(fan)
        statuses: list[int] = []

        # A peer's session has no pty (lines from several hosts are whole lines, not a
        # screen), so it would take the escapes out: a user on a terminal asks for them.
        raw = [*words, RAW] if self.pty and RAW not in args else None
        remote = shlex.join(["follow", *raw]) if raw else command

        async def one(peer: Peer) -> None:
            statuses.append(await self.forward(peer, remote, Lines(self.channel), fan.add))

        async def local() -> None:
            statuses.append(await self.local(command, Lines(self.channel), fan.add))

        async with trio.open_nursery() as nursery:
            if here:
                nursery.start_soon(local)
            for name in peers:
                nursery.start_soon(one, self.directory.peers[name])
        return OK if OK in statuses else min(statuses)
