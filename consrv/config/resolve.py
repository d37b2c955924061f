"""Step 2: the raw models → `Config`: paths joined, key files read, ACLs checked."""

import difflib
import os
import types
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path

from consrv.access import ANY_USER, GROUP_PREFIX
from consrv.config.errors import ConfigError, Problem
from consrv.config.model import (
    MAX_UNIX_SOCKET_PATH,
    Config,
    ConsoleConfig,
    ConsoleDefaults,
    IocConfig,
    LogConfig,
    MessageLimits,
    Pattern,
    SshConfig,
    User,
)
from consrv.config.resolve_optional import resolve_fleet, resolve_identity, resolve_pva, resolve_web
from consrv.config.schema import RawConfig, RawConsole, RawUser
from consrv.config.values import parse_public_key
from consrv.names import (
    safe_repr,
)
from consrv.revocation import Revoked, is_binary_krl, parse_revoked

_T = typing.TypeVar("_T")
_NEEDS_IOC_SECTION = "needs the top-level 'ioc' section (how to reach the ioc@ units)"
_NEEDS_UPSTREAM = (
    "needs 'socket' (a UNIX socket path) or 'tcp' (HOST:PORT), or ioc: true with an 'ioc' section"
)


def _user_runtime_dir() -> str:
    return os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"


class Resolver:
    """Step 2: raw models → Config, collecting cross-reference problems."""

    def __init__(self, raw: RawConfig, base_dir: Path) -> None:
        self.raw, self.base_dir = raw, base_dir
        self.problems: list[Problem] = []
        self.known_groups = set(raw.groups).union(*(u.groups for u in raw.users.values()))
        ssh = raw.ssh
        self.identity = resolve_identity(
            ssh.authorized_keys_command, ssh.authorized_keys_command_user, raw.identity
        )
        # Users (and with NSS, groups) from the directory: names the YAML lacks are no error.
        self.open_users, self.open_groups = self.identity[0].enabled, self.identity[0].nss

    def config(self) -> Config:
        raw = self.raw
        users = self._users()
        self._check_members()
        self._check_acl("defaults", raw.defaults.rw, raw.defaults.ro)
        self._check_acl("defaults", raw.defaults.operate, None, keys=("operate",))
        self.ioc = self._ioc()
        defaults = self._defaults()
        consoles = {
            name: self._console(name, console, defaults) for name, console in raw.consoles.items()
        }
        revoked_path = self.base_dir / raw.ssh.revoked_keys if raw.ssh.revoked_keys else None
        host_cert = self.base_dir / cert if (cert := raw.ssh.host_certificate) else None
        revoked = self._revoked(revoked_path)
        fleet, problems = resolve_fleet(raw.fleet, self.base_dir, set(raw.users))
        self.problems += problems
        web, web_problems = resolve_web(raw.web, self.base_dir)
        self.problems.extend(web_problems)
        identity, identity_problems = self.identity
        self.problems.extend(identity_problems)
        pva, pva_problems = resolve_pva(raw.pva)
        self.problems.extend(pva_problems)
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            ssh=SshConfig(
                listen=raw.ssh.listen,
                host_key=self.base_dir / raw.ssh.host_key,
                login=raw.ssh.login,
                observer_login=raw.ssh.observer_login,
                trusted_user_ca_keys=raw.ssh.trusted_user_ca_keys,
                login_timeout=raw.ssh.login_timeout,
                max_startups=raw.ssh.max_startups,
                max_startups_per_source=raw.ssh.max_startups_per_source,
                max_auth_tries=raw.ssh.max_auth_tries,
                max_sessions=raw.ssh.max_sessions,
                ciphers=raw.ssh.ciphers,
                revoked_keys=revoked_path,
                revoked=revoked,
                host_certificate=host_cert,
            ),
            metrics_listen=raw.metrics.listen if raw.metrics else None,
            log_dir=self.base_dir / raw.log_dir if raw.log_dir else None,
            log=LogConfig(raw.log.timestamps, raw.log.max_size, raw.log.keep, raw.log.record),
            users=types.MappingProxyType(users),
            groups=types.MappingProxyType(
                {group: frozenset(members) for group, members in raw.groups.items()}
            ),
            defaults=defaults,
            consoles=types.MappingProxyType(consoles),
            discover=raw.discover,
            ioc=self.ioc,
            audit_log=self.base_dir / raw.audit_log if raw.audit_log else None,
            messages=MessageLimits(
                raw.messages.burst, raw.messages.per_minute, raw.messages.max_length
            ),
            fleet=fleet,
            web=web,
            identity=identity if identity.enabled else None,
            pva=pva,
        )

    def _revoked(self, file: Path | None) -> Revoked:
        """``ssh.revoked_keys``, read now (and again on every reload)."""
        if file is None:
            return Revoked()
        path = "ssh.revoked_keys"
        try:
            data = file.read_bytes()
        except OSError as exc:
            self.problems.append(Problem(path, f"cannot read {file}: {exc.strerror}"))
            return Revoked()
        if is_binary_krl(data):
            self.problems.append(Problem(path, "binary KRLs are not read: list keys as text"))
            return Revoked()
        revoked, problems = parse_revoked(data.decode("utf-8", "replace"))
        self.problems.extend(Problem(path, f"line {n}: {text}") for n, text in problems)
        return revoked

    def _ioc(self) -> IocConfig | None:
        raw = self.raw.ioc
        if raw is None:
            return None
        socket = raw.socket
        if socket is None:
            run = "/run" if raw.scope == "system" else _user_runtime_dir()
            socket = f"{run}/procServ/{{name}}/control"
        return IocConfig(raw.scope, raw.unit, socket, raw.discover, raw.poll_interval)

    def _defaults(self) -> ConsoleDefaults:
        d = self.raw.defaults
        if d.ioc and self.ioc is None:
            self.problems.append(Problem("defaults.ioc", _NEEDS_IOC_SECTION))
        return ConsoleDefaults(
            rw=d.rw,
            ro=d.ro,
            scrollback=d.scrollback,
            viewer_buffer=d.viewer_buffer,
            operate=d.operate,
            write=d.write,
            writer_idle_timeout=d.writer_idle_timeout,
            procserv_keys=d.procserv_keys,
            replay=d.replay,
            escape=d.escape,
            ioc=self.ioc is not None if d.ioc is None else d.ioc,
            patterns=tuple(Pattern(name, regex) for name, regex in d.patterns.items()),
            audit_input=d.audit_input,
        )

    def _users(self) -> dict[str, User]:
        owners: dict[bytes, str] = {}
        users = {}
        for name, raw_user in self.raw.users.items():
            keys: dict[bytes, None] = {}
            for path, prefix, key in self._keys_of(name, raw_user):
                owner = owners.setdefault(key, name)
                if owner != name:
                    self.problems.append(Problem(path, f"{prefix}same key as user {owner!r}"))
                keys[key] = None
            users[name] = User(name, frozenset(raw_user.groups), tuple(keys))
        return users

    def _keys_of(self, name: str, raw_user: RawUser) -> Iterator[tuple[str, str, bytes]]:
        for index, key in enumerate(raw_user.keys):
            yield f"users.{name}.keys[{index}]", "", key
        if raw_user.keys_file is not None:
            path = f"users.{name}.keys_file"
            for number, line in self._read_keys_file(path, self.base_dir / raw_user.keys_file):
                try:
                    yield path, f"line {number}: ", parse_public_key(line)
                except ValueError as exc:
                    self.problems.append(Problem(path, f"line {number}: {exc}"))

    def _read_keys_file(self, path: str, file: Path) -> Iterator[tuple[int, str]]:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            self.problems.append(Problem(path, f"cannot read {file}: {exc.strerror}"))
            return
        except UnicodeDecodeError:
            self.problems.append(Problem(path, f"cannot read {file}: not UTF-8 text"))
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                yield number, line

    def _check_members(self) -> None:
        for group, members in self.raw.groups.items():
            for index, member in enumerate(members):
                if member not in self.raw.users:
                    self._unknown(f"groups.{group}[{index}]", "user", member, self.raw.users)

    def _check_acl(
        self,
        where: str,
        rw: Sequence[str] | None,
        ro: Sequence[str] | None,
        keys: tuple[str, str] | tuple[str] = ("rw", "ro"),
    ) -> None:
        for key, entries in zip(keys, (rw or (), ro or ()), strict=False):
            for index, entry in enumerate(entries):
                path = f"{where}.{key}[{index}]"
                if entry.startswith(GROUP_PREFIX):
                    if entry[1:] not in self.known_groups and not self.open_groups:
                        self._unknown(path, "group", entry, [f"@{g}" for g in self.known_groups])
                elif entry != ANY_USER and entry not in self.raw.users and not self.open_users:
                    self._unknown(path, "user", entry, self.raw.users)

    def _unknown(self, path: str, kind: str, name: str, known: typing.Iterable[str]) -> None:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f", did you mean {close[0]!r}?" if close else ""
        self.problems.append(Problem(path, f"unknown {kind} {safe_repr(name)}{hint}"))

    def _console(self, name: str, raw: RawConsole, defaults: ConsoleDefaults) -> ConsoleConfig:
        where = f"consoles.{name}"
        self._check_acl(where, raw.rw, raw.ro)
        self._check_acl(where, raw.operate, None, keys=("operate",))
        ioc = defaults.ioc if raw.ioc is None else raw.ioc
        if ioc and self.ioc is None:
            self.problems.append(Problem(f"{where}.ioc", _NEEDS_IOC_SECTION))
            ioc = False
        if raw.autostart and not ioc:
            self.problems.append(Problem(f"{where}.autostart", "only an IOC console (ioc: true)"))
        socket = raw.socket
        if socket is None and raw.tcp is None:
            if self.ioc is not None and ioc:
                socket = self.ioc.socket_for(name)
            else:
                self.problems.append(Problem(where, _NEEDS_UPSTREAM))
        if socket is not None and len(bytes(socket)) > MAX_UNIX_SOCKET_PATH:
            self.problems.append(
                Problem(
                    f"consoles.{name}.socket",
                    f"too long for a UNIX socket path ({len(bytes(socket))} bytes, "
                    f"at most {MAX_UNIX_SOCKET_PATH})",
                )
            )
        d = defaults

        def pick(value: _T | None, default: _T) -> _T:
            return default if value is None else value

        patterns = d.patterns
        if raw.patterns is not None:
            patterns = tuple(Pattern(key, regex) for key, regex in raw.patterns.items())
        return ConsoleConfig(
            name=name,
            socket=socket,
            tcp=raw.tcp,
            rw=pick(raw.rw, d.rw),
            ro=pick(raw.ro, d.ro),
            scrollback=pick(raw.scrollback, d.scrollback),
            viewer_buffer=pick(raw.viewer_buffer, d.viewer_buffer),
            timestamps=pick(raw.timestamps, self.raw.log.timestamps),
            operate=pick(raw.operate, d.operate),
            write=pick(raw.write, d.write),
            writer_idle_timeout=pick(raw.writer_idle_timeout, d.writer_idle_timeout),
            procserv_keys=pick(raw.procserv_keys, d.procserv_keys),
            replay=pick(raw.replay, d.replay),
            escape=pick(raw.escape, d.escape),
            ioc=ioc,
            autostart=raw.autostart,
            patterns=patterns,
            audit_input=pick(raw.audit_input, d.audit_input),
        )
