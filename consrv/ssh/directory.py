"""Directory users over SSH: a login name the directory knows, its keys, its Unix groups.

Owns what one connection asks the directory (consrv.identity.Directory) while it
authenticates, and the periodic check that ends the sessions of users the
directory no longer lists (revocation, within the cache's ttl). The login paths:

- ``ssh alice@iochost`` (a login name that is neither the service nor the observer
  login): alice, with her best role, if NSS knows her (``identity.nss``) or the keys
  command gives her keys; her key is one of the command's lines (or her YAML keys),
  or her certificate is signed by a trusted CA (``ssh.trusted_user_ca_keys``, or a
  ``cert-authority`` line of the command) and names her;
- ``ssh console@iochost`` with a certificate from a trusted CA whose principal is a
  Unix user NSS knows (and no YAML user): that user;
- ``ssh observer@iochost`` (or ``console@``) with a plain key no YAML user has, with
  ``identity.key_owner_command``: the user it names whose keys (from the keys
  command) include that key.

asyncssh calls these from its own (asyncio) tasks; they run here as trio code
(``trio_asyncio.trio_as_aio``), so a slow directory delays only that connection.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import typing
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncssh
import asyncssh.public_key
import trio
import trio_asyncio
from asyncssh.packet import PacketDecodeError

from consrv.config import Config, split_ca_line
from consrv.identity import Directory, Person, Unavailable
from consrv.names import InvalidName, validate_user_name

logger = logging.getLogger(__name__)

T = typing.TypeVar("T")
MAX_PRINCIPALS = 8  # principals of one certificate looked up in NSS


@dataclasses.dataclass(frozen=True)
class DirectoryLogin:
    """How a directory user logged in: what to ask again to see that they still may."""

    user: str
    nss: bool  # NSS said the user exists (ask again: are they still there?)
    key: asyncssh.SSHKey | None = None  # a plain key from the keys command
    ca: asyncssh.SSHKey | None = None  # a CA line of the keys command signed their certificate
    principals: tuple[str, ...] = ()
    blob: bytes = b""  # that certificate, for the command's %k
    host: str = ""
    addr: str = ""


class Refused(Exception):
    """Authentication refused; ``reason`` is an AUTH_FAILURE_REASONS word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_directory_login(config: Config, username: str) -> bool:
    """A login name that names a user (not the service or observer login), with a directory."""
    if config.identity is None or username in (config.ssh.login, config.ssh.observer_login):
        return False
    try:
        validate_user_name(username)
    except InvalidName:
        return False
    return True


def certificate_principals(blob: bytes) -> tuple[str, ...] | None:
    """The principals of a certificate blob (None: a plain key)."""
    try:
        cert = asyncssh.public_key.decode_ssh_certificate(blob)
    except (asyncssh.KeyImportError, PacketDecodeError):
        return None
    return tuple(typing.cast(Any, cert).principals)


def ca_entries_for(config: Config, user: str | None) -> str:
    """authorized_keys lines for the trusted CAs: for ``user`` (their certificates must
    name them), or with ``user`` None for any principal (checked against NSS after)."""
    lines = []
    for line in config.ssh.trusted_user_ca_keys:
        sources, key = split_ca_line(line)
        options = ["cert-authority"] + ([f'from="{sources}"'] if sources is not None else [])
        if user is None:
            options.append('principals="*"')
        lines.append(f"{','.join(options)} {key}")
    return "\n".join(lines) + "\n" if lines else ""


class Authenticator:
    """One connection's questions to the directory, for a directory login or a certificate."""

    def __init__(self, directory: Directory, config: Config, host: str, addr: str) -> None:
        self.directory, self.config, self.host, self.addr = directory, config, host, addr
        self.person: Person | None = None
        self.user: str | None = None
        self.refused: str | None = None  # why every key of this login is refused
        self.login: DirectoryLogin | None = None

    def forget(self) -> None:
        """A new key or certificate is being asked about: until the directory's checks say
        otherwise, it is a YAML key or a trusted CA's certificate (nothing to ask again)."""
        if self.user is not None:
            self.login = DirectoryLogin(self.user, self.person is not None)

    @property
    def groups(self) -> frozenset[str]:
        return self.person.groups if self.person is not None else frozenset()

    async def begin(self, user: str) -> None:
        """``ssh USER@``: does the directory know USER? (Refuses later if not.)"""
        self.user = user
        try:
            self.person = await self.directory.person(user)
        except Unavailable:
            self.refused = "directory_unavailable"
            return
        if self.directory.config.nss and self.person is None:
            self.refused = "unknown_user"
            logger.info("refused login name %r: NSS knows no such user", user[:64])

    async def key(self, key: asyncssh.SSHKey) -> bool:
        """May this plain key log in as the user? (YAML keys first, then the command's.)"""
        user = self.user
        assert user is not None
        if self.refused is not None:
            raise Refused(self.refused)
        if self.config.user_for_key(key.public_data) == user:
            self.login = DirectoryLogin(user, self.person is not None)
            return True
        keys = await self._keys(user, key, bytes(key.public_data))
        if not keys.allows_key(key, self.host, self.addr, time.time()):
            raise Refused("unknown_key")
        self.login = DirectoryLogin(
            user, self.person is not None, key=key, host=self.host, addr=self.addr
        )
        return True

    async def ca(self, ca: asyncssh.SSHKey, blob: bytes) -> bool:
        """A certificate whose CA is no trusted one: is it a ``cert-authority`` line of
        the command? (asyncssh then checks that the certificate names the user.)"""
        user = self.user
        assert user is not None
        if self.refused is not None:
            raise Refused(self.refused)
        principals = certificate_principals(blob) or ()
        keys = await self._keys(user, ca, blob)
        if not keys.allows_ca(ca, self.host, self.addr, principals, time.time()):
            raise Refused("bad_certificate")
        self.login = DirectoryLogin(
            user, self.person is not None, ca=ca, principals=principals, blob=blob,
            host=self.host, addr=self.addr,
        )  # fmt: skip
        return True

    async def _keys(self, user: str, key: asyncssh.SSHKey, blob: bytes) -> Any:
        try:
            return await self.directory.authorized_keys(user, key, blob, self.person)
        except Unavailable:
            raise Refused("directory_unavailable") from None

    async def principal(self, blob: bytes) -> bool:
        """A certificate offered to the service or observer login: if none of its
        principals is a YAML user, the first that NSS knows is the user. False: none."""
        principals = certificate_principals(blob)
        if principals is None or not self.directory.config.nss:
            return True  # a plain key, or no NSS: the YAML rules alone
        if any(p in self.config.users for p in principals):
            return True  # a YAML user: the YAML's certificate entries decide
        for name in principals[:MAX_PRINCIPALS]:
            try:
                person = await self.directory.person(name)
            except Unavailable:
                raise Refused("directory_unavailable") from None
            if person is not None:
                self.user, self.person = name, person
                self.login = DirectoryLogin(name, True)
                return True
        raise Refused("unknown_user")

    async def owner(self, blob: bytes) -> bool:
        """A plain key no YAML user has, offered to the service or observer login: the
        key owner command suggests users; the first whose keys (the keys command's, as
        for ``ssh USER@``) include this key is the user. A name alone proves nothing."""
        try:
            key = asyncssh.public_key.decode_ssh_public_key(blob)
            owners = await self.directory.key_owners(key, blob)
        except Unavailable:
            raise Refused("directory_unavailable") from None
        except (asyncssh.KeyImportError, PacketDecodeError):
            raise Refused("unknown_key") from None
        for name in owners:
            self.refused = None
            await self.begin(name)
            if self.refused == "directory_unavailable":
                raise Refused("directory_unavailable")
            if self.refused is not None:  # NSS knows no such user
                continue
            try:
                return await self.key(key)
            except Refused as exc:
                if exc.reason == "directory_unavailable":
                    raise
        if owners:
            logger.info("key owner command named %s for a key none of them has", ",".join(owners))
        self.user = self.person = self.login = None
        raise Refused("unknown_key")


def trio_call(fn: Callable[..., Awaitable[T]], *args: object) -> Awaitable[T]:
    """Run trio code ``fn(*args)`` for asyncssh (an asyncio awaitable)."""
    return typing.cast(Awaitable[T], trio_asyncio.trio_as_aio(fn)(*args))


class Session(typing.Protocol):
    """What the revocation check needs of an SSH session (server._SSHSession)."""

    directory_login: DirectoryLogin | None

    def end(self, why: str) -> None: ...

    def regroup(self, unix_groups: frozenset[str]) -> None: ...


async def still_allowed(directory: Directory, login: DirectoryLogin) -> tuple[bool, frozenset[str]]:
    """Ask the directory again: (may the user still log in as they did, their groups).

    Raises Unavailable: no answer (the session stays; only new logins fail closed)."""
    person = await directory.person(login.user) if login.nss else None
    if login.nss and person is None:
        return False, frozenset()
    groups = person.groups if person is not None else frozenset()
    now = time.time()
    if login.key is not None:
        keys = await directory.authorized_keys(
            login.user, login.key, bytes(login.key.public_data), person
        )
        return keys.allows_key(login.key, login.host, login.addr, now), groups
    if login.ca is not None:
        keys = await directory.authorized_keys(login.user, login.ca, login.blob, person)
        return keys.allows_ca(login.ca, login.host, login.addr, login.principals, now), groups
    return True, groups


async def watch(directory: Directory, sessions: Callable[[], Iterable[Session]]) -> None:
    """Forever: every ``recheck_interval``, end the sessions of users who lost access
    and re-role those whose groups changed (as a reload does)."""
    while True:
        await trio.sleep(directory.config.recheck_interval)
        for session in list(sessions()):
            login = session.directory_login
            if login is None:
                continue
            try:
                allowed, groups = await still_allowed(directory, login)
            except Unavailable:
                continue  # the directory is down: sessions stay, new logins fail closed
            if not allowed:
                logger.info("directory: %s no longer may log in: ending their session", login.user)
                session.end("the directory no longer lists your key or account")
            else:
                session.regroup(groups)
