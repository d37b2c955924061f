"""The SSH front: asyncssh inside trio (via trio-asyncio). The only asyncio code.

Owns listening, host keys, public-key authentication (key → user), the login
names (service login / observer login), and adapting an asyncssh channel to
``contracts.Channel``. Everything a command means lives in ``commands``.

asyncssh callbacks run in the trio thread (trio-asyncio's loop), so they may
call trio's synchronous API (``nursery.start_soon``) directly.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import typing
from collections.abc import Awaitable
from typing import Any

import asyncssh
import trio
import trio_asyncio

from consrv.access import Role
from consrv.audit import NO_AUDIT, AuditLog
from consrv.config import Config, split_ca_line
from consrv.contracts import Commands, Input, Login, notice_bytes
from consrv.handover import FAREWELL, Handover
from consrv.host import Host
from consrv.identity import Directory
from consrv.session import Session
from consrv.ssh import compat
from consrv.ssh import directory as dirauth
from consrv.ssh.certs import certificate_key_id, revoked_blob, signing_ca
from consrv.ssh.handshake import describe_failure
from consrv.ssh.keys import HostCertificateError, UnprotectedKeyError, load_host_keys
from consrv.ssh.limits import (
    AcceptErrors,
    Admission,
    AuthTries,
    RefusalLog,
)
from consrv.ssh.stats import SshStats

logger = logging.getLogger(__name__)

_conn_ids = itertools.count(1)
CLOSE_TIMEOUT = 2.0
# At a restart, how long users' clients have to hang up after being told.
GOODBYE_WAIT = 0.5
# Bytes queued for a user beyond which consrv stops reading what they send.
OUTPUT_LIMIT = 1 << 20
# Input kept for a session whose command has not started reading yet; then it is paused.
PENDING_LIMIT = 64 << 10


class Tunnels(typing.Protocol):
    """Where a user may open a TCP tunnel through this server (``ssh -J``): a fleet
    gateway allows its directory's peers (wired in daemon.py); nothing else does."""

    def allows_tunnel(self, host: str, port: int) -> bool: ...


class SSHFront:
    """Listens on every ``ssh.listen`` address; one trio task per SSH session."""

    def __init__(
        self,
        config: Config,
        host: Host,
        commands: Commands,  # this host's commands.Shell, or a fleet gateway in front of it
        stats: SshStats | None = None,
        audit: AuditLog = NO_AUDIT,
        tunnels: Tunnels | None = None,
    ) -> None:
        self.config, self.host, self.commands, self.audit = config, host, commands, audit
        self.tunnels = tunnels  # ssh -J to a fleet gateway's peers; None: no tunnels
        self.ca_keys = _ca_entries(config)
        self.stats = stats or SshStats((config.ssh.login, config.ssh.observer_login))
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.sessions: set[_SSHSession] = set()
        self.nursery: trio.Nursery | None = None
        ssh = config.ssh
        self.admission = Admission(ssh.max_startups, ssh.max_startups_per_source)
        self.stats.unauthenticated = lambda: self.admission.startups
        self.accept_errors = AcceptErrors(self.stats.accept_error)
        self.refusals = RefusalLog()
        # A restart: listeners come from and go to the next process (consrv/handover.py).
        self.handover: Handover | None = None
        self.acceptors: list[asyncssh.SSHAcceptor] = []
        # Users from the facility's directory (docs/identity.md); None: YAML users only.
        # The host keeps it: the web view asks it about the same users (host.Host).
        if config.identity is not None and host.directory is None:
            host.directory = Directory(config.identity, audit)

    @property
    def directory(self) -> Directory | None:
        return self.host.directory

    async def serve(
        self, *, task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, report the bound addresses through ``task_status``, serve until cancelled."""
        host_keys = load_host_keys(self.config.ssh.host_key, self.config.ssh.host_certificate)
        acceptors = self.acceptors
        loop = trio_asyncio.current_loop.get()
        self.accept_errors.install(loop)
        compat.run_ready_callbacks_together(loop)
        compat.install_keyed_umac()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                for ep in self.config.ssh.listen:
                    acceptors.append(await self._listen(ep.host, ep.port, *host_keys))
                task_status.started([a.sockets[0].getsockname()[:2] for a in acceptors])
                if self.directory is not None:
                    self._start_directory(self.directory)
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
                await self._close(acceptors)

    async def restart_goodbye(self, handover: Handover) -> None:
        """A restart (consrv/handover.py): stop accepting, leaving the listening sockets
        open for the next process (a user reconnecting waits in the kernel's queue), then
        tell every user and wait (briefly) for their clients to hang up, so the notice
        is shown: OpenSSH exits on a disconnect without printing what came before it."""
        for acceptor in self.acceptors:
            for sock in acceptor.sockets:
                handover.keep_listener(sock.fileno())
            acceptor.close()
        for chan_session in list(self.sessions):
            chan_session.say_goodbye(FAREWELL)
        with trio.move_on_after(GOODBYE_WAIT):
            while self.connections:  # noqa: ASYNC110 (emptied by asyncssh's callbacks; at most GOODBYE_WAIT)
                await trio.sleep(0.01)

    async def _listen(
        self,
        host: str,
        port: int,
        host_keys: list[asyncssh.SSHKey],
        host_certs: list[asyncssh.SSHCertificate],
    ) -> asyncssh.SSHAcceptor:
        create = trio_asyncio.aio_as_trio(asyncssh.create_server)
        sock = self.handover.listener(host, port) if self.handover is not None else None
        acceptor: asyncssh.SSHAcceptor = await create(
            lambda: _Server(self),
            host,
            port,
            sock=sock,  # handed over by the previous process: connections waiting in it
            server_host_keys=host_keys,
            server_host_certs=host_certs,  # ssh.host_certificate (sshd's HostCertificate)
            kex_algs=compat.kex_algs(),  # curve25519-sha256 first, for Dropbear: see compat
            encryption_algs=self.config.ssh.ciphers,  # never CBC: see docs/upstream.md
            encoding=None,
            line_editor=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            sftp_factory=None,
            login_timeout=self.config.ssh.login_timeout,
            keepalive_interval=60,
        )
        return acceptor

    def _start_directory(self, directory: Directory) -> None:
        """Its background probes, and the check that ends sessions it no longer allows."""
        assert self.nursery is not None
        self.nursery.start_soon(directory.run)
        self.nursery.start_soon(dirauth.watch, directory, lambda: self.sessions)

    async def _close(self, acceptors: list[asyncssh.SSHAcceptor]) -> None:
        for acceptor in acceptors:
            acceptor.close()
        for chan_session in list(self.sessions):
            chan_session.say_goodbye()
        for conn in list(self.connections):
            conn.close()
        for acceptor in acceptors:
            await trio_asyncio.aio_as_trio(acceptor.wait_closed)()

    def reconfigure(self, config: Config) -> None:
        """A reloaded config: new logins use it; users who lost access are sent away."""
        self.config = config
        self.ca_keys = _ca_entries(config)
        if config.identity is not None and self.directory is not None:
            self.directory.reconfigure(config.identity)
        elif config.identity is not None and self.nursery is not None:  # turned on by a reload
            directory = self.host.directory = Directory(config.identity, self.audit)
            self._start_directory(directory)
        self.admission.max_startups = config.ssh.max_startups
        self.admission.per_source = config.ssh.max_startups_per_source
        self._reload_host_keys(config)
        for chan_session in list(self.sessions):
            chan_session.recheck(config)

    def _reload_host_keys(self, config: Config) -> None:
        """The host key and certificate, read again (a renewed certificate, a new key)
        for the connections accepted from now on; on an error the old ones stay."""
        if not self.acceptors:  # not serving (yet): serve() reads them
            return
        ssh = config.ssh
        try:
            keys, certs = load_host_keys(ssh.host_key, ssh.host_certificate)
        except (OSError, asyncssh.KeyImportError, HostCertificateError, UnprotectedKeyError) as exc:
            logger.error("reload: the host key and certificate stay as they were: %s", exc)
            return
        for acceptor in self.acceptors:
            acceptor.update(server_host_keys=keys, server_host_certs=certs)
        logger.info("host key %s%s", keys[0].get_fingerprint(),
                    f", certificate {ssh.host_certificate}" if certs else "")  # fmt: skip

    def session_roles(self) -> list[tuple[str, Role | None]]:
        """(login name, role) of every SSH session; None while not on a console."""
        return [
            (s.login.login, s.input.role if isinstance(s.input, Session) else None)
            for s in self.sessions
        ]

    def start_session(self, chan_session: _SSHSession, login: Login) -> None:
        assert self.nursery is not None
        self.nursery.start_soon(chan_session.run, self.commands, login)


def _ca_entries(config: Config) -> asyncssh.SSHAuthorizedKeys | None:
    """Trusted user CAs as asyncssh authorized_keys entries, one per (CA, user).

    ``principals="USER"`` makes asyncssh accept a certificate whose principals
    name USER (instead of the login name, which is `console` or `observer`), and
    tells us afterwards who it was (``get_key_option("principals")``). asyncssh
    still checks the certificate's validity period and signature.
    """
    cas, users = config.ssh.trusted_user_ca_keys, list(config.users)
    nss = config.identity is not None and config.identity.nss
    if not cas or not (users or nss):
        return None
    lines = [_ca_entry(ca, user) for ca in cas for user in users]
    # After them, any principal: NSS must know it (dirauth.Authenticator.principal).
    wildcard = dirauth.ca_entries_for(config, None) if nss else ""
    return asyncssh.import_authorized_keys("\n".join(lines) + "\n" + wildcard)


def _ca_entry(line: str, user: str) -> str:
    """One CA's authorized_keys entry for one user (``from=`` limits it to some addresses)."""
    sources, key = split_ca_line(line)
    limit = f',from="{sources}"' if sources is not None else ""
    return f'cert-authority,principals="{user}"{limit} {key}'


class _ConnLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with the connection's number: ``[conn=3] ...``."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        assert self.extra is not None
        return f"[conn={self.extra['conn']}] {msg}", kwargs


class _Server(asyncssh.SSHServer):
    """One SSH connection: authentication and session requests."""

    def __init__(self, front: SSHFront) -> None:
        self.front = front
        self.config = front.config.ssh
        self.conn: asyncssh.SSHServerConnection | None = None
        self.log = _ConnLog(logger, {"conn": next(_conn_ids)})
        self.peer = ""
        self.peer_addr = ("", 0)
        self.login_name = ""
        self.user: str | None = None
        self.key = b""  # the public key the user signed with
        self.certified = False  # logged in with a certificate
        self.via: str | None = None  # its key id: a fleet gateway's GATEWAY:SESSION
        self.asked = self.authenticated = False
        self.failure: str | None = None  # why authentication failed, for the metrics
        self.host = ""
        self.refused = False  # closed at once: over a limit (limits.Admission)
        self.tries = AuthTries(self.config.max_auth_tries)
        self.attempt: str | None = None  # why the request being answered is refused
        self.attempt_key = ""  # the fingerprint of the key it offered
        self.credential = b""  # the key or certificate last accepted, as offered
        self.channels: list[_SSHSession] = []
        self.dir_auth: dirauth.Authenticator | None = None  # a directory user's login
        self.principal_auth: dirauth.Authenticator | None = None  # a certificate's NSS user

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.host = str(conn.get_extra_info("peername")[0])
        if not self._admitted(conn):
            return
        compat.count_auth_failures(conn, self._auth_refused)
        self._check_principals(conn)
        compat.check_keys(conn, self._revoked)
        compat.one_packet_per_write(conn)
        compat.lazy_keepalive(conn)
        compat.skip_config_reload(conn)
        self.front.connections.add(conn)
        host, port = conn.get_extra_info("peername")[:2]
        self.peer, self.peer_addr = f"{host}:{port}", (host, port)

    def _admitted(self, conn: asyncssh.SSHServerConnection) -> bool:
        """Let the connection in, or close it at once (over a limit: limits.Admission)."""
        front = self.front
        front.accept_errors.accepted()
        reason = front.admission.admit(self.host)
        if reason is None:
            return True
        self.refused = True
        front.stats.connection_refused(reason)
        front.refusals.note(reason, self.host)
        conn.abort()
        return False

    def _revoked(self, key_data: bytes) -> bool:
        """True if ``key_data`` (a key or certificate) is revoked (``ssh.revoked_keys``)."""
        if not revoked_blob(self.front.config.ssh.revoked, key_data):
            self.credential = key_data
            return False
        self.attempt = "revoked"
        if self.failure is None:
            self.failure = "revoked"
        self.log.warning("refused a revoked key or certificate from %s", self.peer)
        return True

    def _auth_refused(self, supported_method: bool) -> bool:
        """An authentication request was refused: count and record it; True: cut now."""
        reason = (self.attempt or "other") if supported_method else "no_method"
        key, self.attempt, self.attempt_key = self.attempt_key, None, ""
        if not self.tries.refused(supported_method):
            return False  # the client's first probe (``none``): not a failure
        self.front.stats.auth_attempt_failure(reason)
        self.front.audit.record(
            "auth_failed", login=self.login_name[:64], reason=reason, key=key or None,
            attempt=self.tries.count, **{"from": self.peer},
        )  # fmt: skip
        if not self.tries.exceeded:
            return False
        self.log.warning(
            "%d failed authentication requests from %s: disconnecting", self.tries.count, self.peer
        )
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return  # counted as refused, never let in
        self.front.admission.closed(self.host, self.authenticated)
        if self.conn is not None:
            self.front.connections.discard(self.conn)
        if not self.asked:  # ended before its first authentication request
            failure = describe_failure(self.peer_addr, exc)
            self.front.stats.handshake_failure(failure.reason)
            self.log.log(logging.INFO if failure.routine else logging.WARNING, failure.message)
        elif not self.authenticated:  # once per connection, not per key tried
            timed_out = isinstance(exc, asyncssh.ConnectionLost) and "timeout" in str(exc).lower()
            reason = self.failure or ("timeout" if timed_out else "no_method")
            self.front.stats.auth_failure(reason)
            self.front.audit.record(
                "login_failed", login=self.login_name[:64], reason=reason,
                attempts=self.tries.count, **{"from": self.peer},
            )  # fmt: skip

    def _check_principals(self, conn: asyncssh.SSHServerConnection) -> None:
        """Before asyncssh answers for a key or certificate: forget what the directory said
        of the one before (the last one asked about is the one that signs); with NSS, a
        certificate for the service or observer login must name a YAML user or a user
        NSS knows."""
        directory = self.front.directory
        if directory is None:
            return

        async def screen(key_data: bytes) -> bool:
            self.principal_auth = None
            if self.dir_auth is not None:
                self.dir_auth.forget()
            elif directory.config.nss and dirauth.certificate_principals(key_data) is not None:
                auth = dirauth.Authenticator(
                    directory, self.front.config, self.host, self.peer_addr[0]
                )
                if not await self._directory(auth.principal, key_data):
                    return False
                self.principal_auth = auth if auth.user is not None else None
            elif self._owner_asked(directory, key_data):
                auth = dirauth.Authenticator(
                    directory, self.front.config, self.host, self.peer_addr[0]
                )
                if not await self._directory(auth.owner, key_data):
                    return False
                self.principal_auth = auth
            return True

        compat.screen_keys(conn, screen)

    def _owner_asked(self, directory: Directory, key_data: bytes) -> bool:
        """Is the key owner command asked about this key? A plain key no YAML user has,
        offered to the service or observer login (docs/identity.md)."""
        config = self.front.config
        return (
            bool(directory.config.owner_command)
            and self.login_name in (config.ssh.login, config.ssh.observer_login)
            and dirauth.certificate_principals(key_data) is None
            and config.user_for_key(key_data) is None
        )

    async def _directory(self, ask: Any, *args: object) -> bool:
        """Ask the directory (trio code, from asyncssh's asyncio task); refused: False."""
        try:
            return await dirauth.trio_call(ask, *args)
        except dirauth.Refused as exc:
            self.attempt = exc.reason
            if self.failure is None or self.failure == "unknown_key":
                self.failure = exc.reason
            return False

    def begin_auth(self, username: str) -> bool | Awaitable[bool]:
        self.login_name, self.asked = username, True
        front = self.front
        if front.directory is not None and dirauth.is_directory_login(front.config, username):
            return self._begin_directory(username, front.directory)
        if self.front.ca_keys is not None and self.conn is not None:
            self.conn.set_authorized_keys(self.front.ca_keys)
        if username not in (self.config.login, self.config.observer_login):
            self.failure = "unknown_login"
            self.log.info("refused login name %r from %s", username[:64], self.peer)
            assert self.conn is not None
            self.conn.send_auth_banner(
                f"consrv: unknown login {username[:64]!r}; use "
                f"{self.config.login}@ or {self.config.observer_login}@\r\n"
            )
        return True

    async def _begin_directory(self, username: str, directory: Directory) -> bool:
        """``ssh alice@``: ask the directory about alice; her CA entries if she exists."""
        assert self.conn is not None
        auth = self.dir_auth = dirauth.Authenticator(
            directory, self.front.config, self.host, self.peer_addr[0]
        )
        await dirauth.trio_call(auth.begin, username)
        if auth.refused is None and (
            auth.person is not None or username in self.front.config.users
        ):
            entries = dirauth.ca_entries_for(self.front.config, username)
            if entries:
                self.conn.set_authorized_keys(asyncssh.import_authorized_keys(entries))
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool | Awaitable[bool]:
        # asyncssh calls this for the key of every query and signed request; the
        # last call before auth_completed() is the key that signed, so ``user``
        # ends up as the authenticated user.
        self.attempt_key = key.get_fingerprint()
        if self.dir_auth is not None:
            self.key = bytes(key.public_data)
            return self._directory(self.dir_auth.key, key)
        if username not in (self.config.login, self.config.observer_login):
            self.attempt = "unknown_login"
            return False
        self.user = self.front.config.user_for_key(key.public_data)
        if self.user is None and self.principal_auth is not None:  # the key owner command's
            self.user = self.principal_auth.user
        self.key = bytes(key.public_data)
        if self.user is None and self.failure is None:
            self.failure = "unknown_key"
        self.attempt = "unknown_key" if self.user is None else None
        return self.user is not None

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool | Awaitable[bool]:
        # Called only when no trusted CA entry matched: an unknown CA, or a
        # certificate for nobody configured. Refused, counted as bad_certificate;
        # for a directory user, the keys command's cert-authority lines may say yes.
        if self.dir_auth is not None:
            self.attempt_key = key.get_fingerprint()
            return self._directory(self.dir_auth.ca, key, self.credential)
        if self.failure is None:
            self.failure = "bad_certificate"
        self.attempt, self.attempt_key = "bad_certificate", key.get_fingerprint()
        return False

    def auth_completed(self) -> None:
        assert self.conn is not None
        patterns = typing.cast("list[Any] | None", self.conn.get_key_option("principals"))
        auth = self.dir_auth or self.principal_auth
        if auth is not None:  # a directory user (docs/identity.md)
            assert auth.user is not None
            self.certified = dirauth.certificate_principals(self.credential) is not None
            self.user, self.key = auth.user, b"" if self.certified else self.key
        elif patterns:  # a certificate from a trusted CA: the entry's principal is the user
            # Each entry's pattern is one literal user name (see _ca_entries).
            users = [u for u in self.front.config.users if all(p.matches(u) for p in patterns)]
            self.user, self.key, self.certified = users[0], b"", True
        self.authenticated = True
        self.front.admission.authenticated(self.host)
        self.front.stats.login(self.login_name)
        # A certificate's key id: a fleet gateway's GATEWAY:SESSION (the audit's `via`).
        via = self.via = certificate_key_id(self.credential) if self.certified else None
        self.front.audit.record(
            "login", user=self.user, login=self.login_name, **{"from": self.peer},
            **({"via": via} if via else {}),
        )  # fmt: skip
        self.log.info("login %s as %s from %s%s", self.user, self.login_name, self.peer,
                      f" via {via}" if via else "")  # fmt: skip

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Awaitable[asyncssh.SSHTCPSession[bytes]] | bool:
        """``ssh -J``: a tunnel, only to a fleet gateway's peers (the peer then
        authenticates the user end to end). Everything else is refused."""
        tunnels, where = self.front.tunnels, f"{dest_host[:64]}:{dest_port}"
        allowed = tunnels is not None and tunnels.allows_tunnel(dest_host, dest_port)
        self.front.audit.record(
            "tunnel", user=self.user, to=where, result="opened" if allowed else "refused",
            **{"from": self.peer},
        )  # fmt: skip
        self.log.info("%s: tunnel to %s %s", self.user, where, "opened" if allowed else "refused")
        return compat.open_tunnel(dest_host, dest_port) if allowed else False

    def session_requested(self) -> _SSHSession | bool:
        assert self.user is not None
        self.channels = [chan for chan in self.channels if not chan.closed]
        if len(self.channels) >= self.config.max_sessions:
            self.front.stats.sessions_refused += 1
            self.log.info("%s: refused a session: %d open", self.user, len(self.channels))
            return False
        auth = self.dir_auth or self.principal_auth
        login = Login(
            user=self.user,
            groups=self.front.host.groups(self.user, auth.groups if auth else frozenset()),
            unix_groups=auth.groups if auth else frozenset(),
            read_only=self.login_name == self.config.observer_login,  # USER@: best role too
            peer=f"{self.peer} via {self.via}" if self.via else self.peer,
            login=self.login_name,
        )
        chan_session = _SSHSession(
            self.front, login, self.key, certified=self.certified, credential=self.credential
        )
        if auth is not None:
            chan_session.directory_login, chan_session.unix_groups = auth.login, auth.groups
        self.channels.append(chan_session)
        return chan_session


class _SSHSession(asyncssh.SSHServerSession[bytes]):
    """One SSH channel: exec / shell requests, data, and the channel as a ``Channel``."""

    def __init__(
        self,
        front: SSHFront,
        login: Login,
        key: bytes = b"",
        *,
        certified: bool = False,
        credential: bytes = b"",
    ) -> None:
        self.front, self.login, self.key, self.certified = front, login, key, certified
        self.credential = credential  # the key or certificate the user logged in with
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.command = ""
        self.pty = False
        self.term_type: str | None = None  # the pty's, for a fleet gateway's next hop
        self.term_size: tuple[int, int, int, int] = (80, 24, 0, 0)
        self.input: Input | None = None
        self._pending = bytearray()
        self._paused: set[str] = set()  # why the channel is not being read
        self._eof = False
        self._closed = False
        self._cancel = trio.CancelScope()
        self.directory_login: dirauth.DirectoryLogin | None = None  # a directory user
        self.unix_groups: frozenset[str] = frozenset()  # their groups from NSS

    # -- asyncssh callbacks --------------------------------------------------
    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan
        compat.refuse_env(chan)

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        self.pty, self.term_type, self.term_size = True, term_type, tuple(term_size)
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self.front.sessions.add(self)
        self.front.start_session(self, self.login)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.input is not None:
            self.input.feed(data)
        else:
            self._pending += data
            if len(self._pending) >= PENDING_LIMIT:
                self._pause("pending")  # nobody reads it yet: keep no more
        if self.buffered() >= OUTPUT_LIMIT:
            # The user asks for more (replays, help, echo) than they read: stop
            # reading them until their output drains, so memory stays bounded.
            self._pause("output")

    def eof_received(self) -> bool:
        self._eof = True
        if self.input is not None:
            self.input.eof()
        return True  # keep our side open until the session ends

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        # procServ has no way to pass a window size on to the IOC's pty; a fleet
        # gateway's bridge passes it on to the next hop.
        self.term_size = (width, height, pixwidth, pixheight)
        resized = getattr(self.input, "resized", None)
        if resized is not None:
            resized(width, height, pixwidth, pixheight)

    def break_received(self, msec: int) -> bool:
        forward = getattr(self.input, "break_received", None)  # a fleet gateway's bridge
        if forward is None:
            return False
        forward(msec)
        return True

    def resume_writing(self) -> None:
        self._resume("output")
        if self.input is not None:
            self.input.drained()

    @property
    def closed(self) -> bool:
        return self._closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel.cancel()
        self.front.sessions.discard(self)

    def recheck(self, config: Config) -> None:
        """After a reload: end this session if its key no longer is this user's,
        or send it away from its console if its role there changed."""
        login = self.login
        if self.directory_login is not None:  # the directory decides (dirauth.watch)
            still = True
        elif self.certified:  # the user is still there, and the CA that signed still trusted
            ca = signing_ca(self.credential)
            trusted = {asyncssh.import_public_key(split_ca_line(line)[1]).public_data
                       for line in config.ssh.trusted_user_ca_keys}  # fmt: skip
            still = login.user in config.users and ca in trusted
        else:
            still = config.user_for_key(self.key) == login.user
        revoked = revoked_blob(config.ssh.revoked, self.credential)
        if revoked or not still:
            logger.info("reload: %s's key is gone: ending their session", login.user)
            if revoked:
                text = "your key was revoked"
            elif self.certified and login.user in config.users:
                text = "the CA that signed your certificate is no longer trusted"
            else:
                text = "your key was removed from consrv's config"
            self.end(text)
            return
        self.regroup(self.unix_groups, config)

    def end(self, why: str) -> None:
        """The user lost access: tell them why, end the session (audited as a detach)."""
        self.write_notice(notice_bytes(why, pty=self.pty))
        self._cancel.cancel()

    def regroup(self, unix_groups: frozenset[str], config: Config | None = None) -> None:
        """The user's groups now (YAML and Unix): send them away from a console whose
        role for them changed."""
        self.unix_groups, config = unix_groups, config or self.front.config
        login = self.login
        groups = config.groups_of(login.user) | unix_groups
        self.login = dataclasses.replace(login, groups=groups, unix_groups=unix_groups)
        session = self.input
        if isinstance(session, Session):
            name = session.console.name
            role = self.front.host.role(self.login, name)
            if role is not session.role:
                now = role.value if role is not None else "none"
                session.console.evict(
                    session.viewer,
                    f"your access to {name} changed ({session.role.value} -> {now}): attach again",
                )

    def say_goodbye(self, text: str = "shutting down") -> None:
        """consrv is stopping: tell the user, end the channel with a non-zero status."""
        self.write_notice(notice_bytes(text, pty=self.pty))
        if not self._closed and self.chan is not None:
            self.chan.exit(255)
            self._closed = True

    # -- the session task ----------------------------------------------------
    async def run(self, commands: Commands, login: Login) -> None:
        status = 1
        with self._cancel:
            try:
                status = await commands.handle(
                    login, self.command, self, pty=self.pty, on_input=self._set_input
                )
            except Exception:
                logger.exception("session of %s failed", login.user)
        if not self._closed and self.chan is not None:
            self.chan.exit(status)

    def _set_input(self, reader: Input) -> None:
        """From now on `reader` gets the user's input (first what came before)."""
        self.input = reader
        if self._pending:
            pending = bytes(self._pending)
            self._pending.clear()
            reader.feed(pending)
        self._resume("pending")
        if self._eof:
            reader.eof()

    # -- contracts.Channel ---------------------------------------------------
    def write(self, data: bytes) -> None:
        self._write(data, None)

    def write_notice(self, data: bytes) -> None:
        self._write(data, asyncssh.EXTENDED_DATA_STDERR)

    def _write(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self._closed or self.chan is None:
            return
        try:
            self.chan.write(data, datatype)
        except BrokenPipeError:  # the channel is closing; connection_lost follows
            self._closed = True

    def buffered(self) -> int:
        return self.chan.get_write_buffer_size() if self.chan is not None else 0

    def pause_reading(self) -> None:
        self._pause("input")

    def resume_reading(self) -> None:
        self._resume("input")

    def _pause(self, reason: str) -> None:
        """Stop reading the user for `reason` (input queue full, output backed up)."""
        if not self._paused and self.chan is not None:
            self.chan.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        if reason not in self._paused:
            return
        self._paused.discard(reason)
        if not self._paused and not self._closed and self.chan is not None:
            self.chan.resume_reading()
