"""conserver.cf → consrv: consoles of type uds and host, their users and groups, logs.

conserver's meaning, as its readcfg.c gives it:
- a console starts from `default *` and applies its statements in order;
  `include NAME` applies a default block there (its values win over earlier
  ones, its rw/ro entries are added); a later `console` block of the same name
  (case-insensitively) replaces the earlier one.
- rw/ro: `[!]name,...` adds entries; `""` empties the list; a name defined by a
  `group` block stands for its members (`!group` reverses them); `@name` is a
  system group; `*` is anyone. A user is looked up by name (or system group) in
  list order, newest entry first, then `*`. rw wins over ro.
consrv's lists have no `!`: a list without exclusions is carried over entry by
entry (conserver groups become `groups:`, system groups their current members);
a list with exclusions becomes the users it grants, by name, and says so.
Everything else that has no consrv equivalent is a notice naming file and line.
Must not know: the file syntax (cfsyntax.py), YAML.
"""

from __future__ import annotations

import re
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from consrv.config import MAX_UNIX_SOCKET_PATH, parse_endpoint
from consrv.migrate.cfsyntax import Block, Statement, parse_cf
from consrv.migrate.draft import ConsoleDraft, Draft, Origin
from consrv.names import (
    InvalidName,
    validate_console_name,
    validate_group_name,
    validate_user_name,
)

__all__ = ["Options", "import_conserver"]

_LIST_SEPARATORS = re.compile(r"[,\s]+")
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "127.0.0.1", "::1"})
_MARK_RE = re.compile(r"([0-9]+)\s*([a-z]?)", re.IGNORECASE)
_PORT_RE = re.compile(r"-?[0-9]+")

# Keys that only one console type uses: conserver ignores them for the other types.
_TYPE_KEYS = {
    "uds": {"uds", "udssubst"},
    "host": {"host", "port", "portbase", "portinc"},
    "device": {"device", "baud", "parity", "devicesubst"},
    "exec": {"exec", "execrunas", "execsubst"},
    "ipmi": {
        "ipmiciphersuite",
        "ipmikg",
        "ipmiprivlevel",
        "ipmiworkaround",
        "username",
        "password",
    },
}
_MAPPED = {"type", "master", "include", "rw", "ro", "logfile", "logfilemax", "timestamp"}
_UNMAPPED = {
    "aliases": "consrv has no aliases: users give the console's name",
    "break": "consrv sends no break sequences (no ^Ecl)",
    "breaklist": "consrv sends no break sequences (no ^Ecl)",
    "idlestring": "consrv sends nothing to an idle console",
    "idletimeout": "consrv does not time out idle consoles",
    "initcmd": "consrv runs no command when a console comes up",
    "initrunas": "consrv runs no command when a console comes up",
    "initsubst": "consrv runs no command when a console comes up",
    "initspinmax": "consrv reconnects with its own backoff (at most 5 s)",
    "initspintimer": "consrv reconnects with its own backoff (at most 5 s)",
    "motd": "consrv shows no message of the day",
    "options": "consrv has no console options (it reconnects by itself)",
    "replstring": "consrv does no substitutions",
    "tasklist": "consrv has no tasks (its IOC actions are ^Ec!restart, !start, !stop)",
    "udssubst": "consrv does no substitutions",
}
_BLOCK_REASONS = {
    "access": "host-based access: consrv knows users by their SSH keys "
    "(limit hosts with a firewall or ssh.listen)",
    "break": "break sequences: consrv sends none (no ^Ecl)",
    "task": "tasks: consrv has none (its IOC actions are ^Ec!restart, !start, !stop)",
}
_CONFIG_REASONS = {
    "primaryport": "users connect with ssh now (ssh.listen)",
    "secondaryport": "users connect with ssh now (ssh.listen)",
    "logfile": "consrv logs to stderr (the journal)",
    "unifiedlog": "consrv logs to stderr (the journal) and per console to log_dir",
    "defaultaccess": "consrv knows users by their SSH keys",
    "passwdfile": "consrv knows users by their SSH keys",
}


@dataclass(frozen=True)
class Options:
    hostname: str = ""  # this host: consoles mastered elsewhere are not imported
    # A system group's members (for `@group` entries), None if there is no such group.
    system_group: Callable[[str], Sequence[str] | None] = lambda name: None


def import_conserver(path: str, read: Callable[[str], str], options: Options) -> Draft:
    """A draft config from conserver.cf at `path`; `read` raises OSError for the main file."""
    draft = Draft("conserver", sources=[path])
    blocks = parse_cf(path, read, draft.notices)
    model = _Model(draft)
    for block in blocks:
        model.add(block)
    _Converter(model, options, draft).run()
    return draft


# ---------------------------------------------------------------- access lists


@dataclass(frozen=True)
class _Item:
    """One rw/ro/users entry: a user, `*`, `@systemgroup`, or a whole conserver group."""

    name: str
    negated: bool
    origin: Origin
    members: tuple[_Item, ...] | None = None  # a conserver group kept whole

    def flat(self) -> Iterator[_Item]:
        if self.members is None:
            yield self
        else:
            for member in self.members:
                yield from member.flat()


def _flatten(items: Iterable[_Item]) -> list[_Item]:
    return [flat for item in items for flat in item.flat()]


@dataclass
class _Group:
    name: str
    origin: Origin
    items: list[_Item] = field(default_factory=list)

    def simple(self) -> bool:
        """Only plain users: it can stay a consrv group."""
        flat = _flatten(self.items)
        return _valid(validate_group_name, self.name) and all(
            not i.negated and i.name != "*" and not i.name.startswith("@") for i in flat
        )

    def reference(self, negated: bool, origin: Origin) -> list[_Item]:
        if self.simple() and not negated:
            return [_Item(self.name, False, origin, tuple(self.items))]
        return [
            replace(i, negated=i.negated != negated, origin=origin) for i in _flatten(self.items)
        ]


def _add_entries(items: list[_Item], statement: Statement, groups: dict[str, _Group]) -> None:
    """conserver's ProcessRoRw: newest entries first; `""` empties the list."""
    if statement.value == "":
        items.clear()
        return
    for token in _LIST_SEPARATORS.split(statement.value):
        negated = token.startswith("!")
        name = token[1:] if negated else token
        if not name:
            continue
        group = groups.get(name)
        if group is None:
            items.insert(0, _Item(name, negated, statement.origin))
        else:
            items[:0] = group.reference(negated, statement.origin)


def _grants(flat: Sequence[_Item], user: str, in_group: Callable[[str, str], bool]) -> bool:
    """conserver's ConsentUserOk: the first entry naming the user (or a group of theirs), then *."""
    for item in flat:
        if item.name == user or (
            len(item.name) > 1 and item.name[0] == "@" and in_group(item.name[1:], user)
        ):
            return not item.negated
    for item in flat:
        if item.name == "*":
            return not item.negated
    return False


# ---------------------------------------------------------------- blocks → consoles


@dataclass
class _Entity:
    """A default or console block, as far as it has been applied."""

    name: str
    origin: Origin
    values: dict[str, Statement] = field(default_factory=dict)
    rw: list[_Item] = field(default_factory=list)
    ro: list[_Item] = field(default_factory=list)

    def apply(self, default: _Entity) -> None:
        """conserver's ApplyDefault: the default's values win, its entries are added."""
        self.values.update(default.values)
        self.rw[:0] = default.rw
        self.ro[:0] = default.ro

    def copy(self, name: str, origin: Origin) -> _Entity:
        return _Entity(name, origin, dict(self.values), list(self.rw), list(self.ro))


class _Model:
    """The blocks applied in order, as conserver reads them."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.defaults: dict[str, _Entity] = {}
        self.consoles: dict[str, _Entity] = {}
        self.groups: dict[str, _Group] = {}

    def add(self, block: Block) -> None:
        if block.kind == "group":
            self._group(block)
        elif block.kind in ("default", "console"):
            self._entity(block)
        else:
            self._not_mapped(block)

    def _group(self, block: Block) -> None:
        group = _Group(block.name, block.origin)
        for statement in block.statements:
            _add_entries(group.items, statement, self.groups)
        self.groups[block.name] = group

    def _entity(self, block: Block) -> None:
        start = self.defaults.get("*") if block.kind == "console" else None
        entity = (start or _Entity("", block.origin)).copy(block.name, block.origin)
        for statement in block.statements:
            self._statement(entity, statement)
        table = self.consoles if block.kind == "console" else self.defaults
        earlier = table.get(block.name.lower())
        if earlier is not None and block.kind == "console":
            self.draft.warn(
                block.origin,
                f"console {block.name!r} defined again (first at {earlier.origin}): "
                "this definition replaces it, as in conserver",
            )
        table[block.name.lower()] = entity

    def _statement(self, entity: _Entity, statement: Statement) -> None:
        key = statement.key
        if key in ("rw", "ro"):
            _add_entries(getattr(entity, key), statement, self.groups)
        elif key == "include":
            default = self.defaults.get(statement.value.lower())
            if default is None:
                self.draft.warn(
                    statement.origin,
                    f"include {statement.value}: no such default "
                    "block before this line: ignored (as conserver does)",
                )
            else:
                entity.apply(default)
        elif statement.value == "" and key != "timestamp":
            entity.values.pop(key, None)
        else:
            entity.values[key] = statement

    def _not_mapped(self, block: Block) -> None:
        for statement in block.statements:
            if block.kind == "config":
                reason = _CONFIG_REASONS.get(statement.key, "no consrv equivalent")
                self.draft.warn(statement.origin, f"config {statement.key}: {reason}")
            else:
                self.draft.warn(
                    statement.origin, f"{block.kind} {statement.key}: {_BLOCK_REASONS[block.kind]}"
                )
        if not block.statements:
            self.draft.warn(block.origin, f"{block.kind} {block.name!r}: ignored")


@dataclass
class _LogFile:
    directory: str
    filename: str
    statement: Statement


class _Converter:
    """The model → the draft: consoles, users, groups, log settings."""

    def __init__(self, model: _Model, options: Options, draft: Draft) -> None:
        self.model, self.options, self.draft = model, options, draft
        self.system_groups: dict[str, list[str] | None] = {}
        self.logfiles: dict[str, _LogFile | None] = {}
        self.log_sizes: dict[str, tuple[int, Statement]] = {}
        self.stamps: dict[str, bool] = {}
        self.users: list[str] = []

    def run(self) -> None:
        entities = list(self.model.consoles.values())
        self._collect_users(entities)
        self._groups()
        for entity in entities:
            console = self._console(entity)
            if console is not None:
                self.draft.consoles[console.name] = console
        self._logs()
        for user in sorted(self.users):
            self.draft.add_user(user)

    # ------------------------------------------------ users and groups

    def _collect_users(self, entities: Iterable[_Entity]) -> None:
        items = [i for e in entities for i in _flatten(e.rw + e.ro)]
        items += [i for g in self.model.groups.values() for i in _flatten(g.items)]
        for item in items:
            if item.name.startswith("@") and len(item.name) > 1:
                for member in self._system_group(item.name[1:]) or ():
                    self._user(member, item.origin)
            elif item.name != "*":
                self._user(item.name, item.origin)

    def _user(self, name: str, origin: Origin) -> bool:
        if not _valid(validate_user_name, name):
            self.draft.warn(
                origin,
                f"{name!r} is not a consrv user name "
                "(A-Z a-z 0-9 _ . -, not a digit first): left out",
            )
            return False
        if name not in self.users:
            self.users.append(name)
        return True

    def _system_group(self, name: str) -> list[str] | None:
        if name not in self.system_groups:
            members = self.options.system_group(name)
            self.system_groups[name] = None if members is None else sorted(set(members))
        return self.system_groups[name]

    def _in_system_group(self, group: str, user: str) -> bool:
        return user in (self._system_group(group) or ())

    def _groups(self) -> None:
        for group in self.model.groups.values():
            if not _valid(validate_group_name, group.name):
                self.draft.warn(
                    group.origin,
                    f"group {group.name!r}: not a consrv group name: "
                    "its members are listed where it is used",
                )
                continue
            members = self._plain_members(group.items)
            if not group.simple():
                self.draft.warn(
                    group.origin,
                    f"group {group.name}: consrv groups are plain lists "
                    f"of users (no !, * or @group): listed as {members}",
                )
            self.draft.groups[group.name] = members

    def _plain_members(self, items: Iterable[_Item]) -> list[str]:
        names = {i.name for i in _flatten(items) if not i.negated and i.name in self.users}
        return sorted(names)

    # ------------------------------------------------ one console

    def _console(self, entity: _Entity) -> ConsoleDraft | None:
        if not self._importable(entity):
            return None
        console = ConsoleDraft(entity.name, entity.origin)
        kind = entity.values["type"].value.lower()
        if not (self._uds(entity, console) if kind == "uds" else self._host(entity, console)):
            return None
        self._not_mapped(entity, kind)
        console.rw = self._acl(entity.rw)
        console.ro = self._acl(entity.ro)
        self._log_settings(entity)
        return console

    def _importable(self, entity: _Entity) -> bool:
        name, values, warn = entity.name, entity.values, self.draft.warn
        try:
            validate_console_name(name)
        except InvalidName as exc:
            warn(entity.origin, f"{exc}: not imported (rename it to import it)")
            return False
        master = values.get("master")
        if master is None:
            warn(
                entity.origin, f"console {name}: no master (conserver refuses it too): not imported"
            )
            return False
        if not self._local(master.value):
            warn(
                master.origin,
                f"console {name}: master {master.value} is another host "
                f"(this is {self.options.hostname}): not imported; import it there",
            )
            return False
        kind = values.get("type")
        if kind is None or kind.value.lower() not in ("uds", "host"):
            what = "no type" if kind is None else f"type {kind.value}"
            warn(
                kind.origin if kind else entity.origin,
                f"console {name}: {what}: consrv connects "
                "to UNIX sockets (type uds) and TCP ports (type host) only: not imported",
            )
            return False
        return True

    def _local(self, master: str) -> bool:
        host = self.options.hostname.lower()
        master = master.strip().lower()
        return (
            not host
            or master in _LOCAL_NAMES
            or master == host
            or master.split(".")[0] == host.split(".")[0]
        )

    def _uds(self, entity: _Entity, console: ConsoleDraft) -> bool:
        uds = entity.values.get("uds")
        if uds is None:
            self.draft.warn(
                entity.origin, f"console {entity.name}: type uds without uds: not imported"
            )
            return False
        if len(uds.value.encode()) > MAX_UNIX_SOCKET_PATH:
            self.draft.warn(
                uds.origin,
                f"console {entity.name}: uds path longer than "
                f"{MAX_UNIX_SOCKET_PATH} bytes: not imported",
            )
            return False
        if not PurePosixPath(uds.value).is_absolute():
            self.draft.warn(
                uds.origin,
                f"uds {uds.value}: a relative path; consrv reads it "
                "relative to its config file's directory",
            )
        console.socket = uds.value
        return True

    def _host(self, entity: _Entity, console: ConsoleDraft) -> bool:
        values = entity.values
        host, port = values.get("host"), values.get("port")
        if host is None or port is None:
            self.draft.warn(
                entity.origin, f"console {entity.name}: type host needs host and port: not imported"
            )
            return False
        number = _final_port(values)
        address = f"[{host.value}]" if ":" in host.value else host.value
        try:
            endpoint = parse_endpoint(f"{address}:{number}")
        except ValueError as exc:
            self.draft.warn(
                port.origin,
                f"console {entity.name}: {host.value} port {port.value}: {exc}: not imported",
            )
            return False
        console.tcp = str(endpoint)
        protocol = values.get("protocol")
        if protocol is not None and protocol.value.lower() == "raw":
            self.draft.warn(
                protocol.origin,
                "protocol raw: consrv always reads procServ's telnet "
                "framing (IAC sequences are removed)",
            )
        return True

    def _not_mapped(self, entity: _Entity, kind: str) -> None:
        ignored = set().union(*(keys for k, keys in _TYPE_KEYS.items() if k != kind))
        for key, statement in entity.values.items():
            if key in _MAPPED or key in ignored or key in _TYPE_KEYS[kind] - {"udssubst"}:
                continue
            if key == "protocol":
                continue
            reason = _UNMAPPED.get(key, "no consrv equivalent")
            self.draft.warn(statement.origin, f"{key} {statement.value}: {reason}")

    def _acl(self, items: list[_Item]) -> tuple[str, ...]:
        flat = _flatten(items)
        if any(item.negated for item in flat):
            return self._granted(flat)
        entries: list[str] = []
        for item in reversed(items):  # the order of the file
            entries += self._entries(item)
        return tuple(dict.fromkeys(entries))

    def _entries(self, item: _Item) -> list[str]:
        if item.name == "*":
            return ["*"]
        if item.members is not None:
            if self.draft.groups.get(item.name) == self._plain_members(item.members):
                return [f"@{item.name}"]
            return self._plain_members(item.members)  # the group was redefined later
        if item.name.startswith("@") and len(item.name) > 1:
            return self._system_group_entry(item)
        return [item.name] if item.name in self.users else []

    def _system_group_entry(self, item: _Item) -> list[str]:
        name = item.name[1:]
        members = self._system_group(name)
        valid = _valid(validate_group_name, name) and name not in self.model.groups
        if valid and name not in self.draft.groups:
            self.draft.groups[name] = [m for m in members or () if m in self.users]
        if members is None:
            self.draft.warn(
                item.origin,
                f"@{name}: no such system group on this host: "
                f"groups.{name} is empty, add its members there",
            )
        else:
            self.draft.warn(
                item.origin,
                f"@{name}: a system group; consrv reads no system "
                f"groups, so its members now are listed: {', '.join(members)}",
            )
        if valid:
            return [item.name]
        return [m for m in members or () if m in self.users]

    def _granted(self, flat: list[_Item]) -> tuple[str, ...]:
        for item in flat:
            if item.negated:
                self.draft.warn(
                    item.origin,
                    f"!{item.name}: consrv lists have no exclusions: "
                    "such a list is written as the users it grants, by name "
                    "(anyone it granted through * or a group, but not named "
                    "in this file, loses access)",
                )
        return tuple(u for u in sorted(self.users) if _grants(flat, u, self._in_system_group))

    # ------------------------------------------------ logs

    def _log_settings(self, entity: _Entity) -> None:
        name, values = entity.name, entity.values
        logfile = values.get("logfile")
        if logfile is not None:
            path = PurePosixPath(logfile.value.replace("&", name))
            self.logfiles[name] = _LogFile(str(path.parent), path.name, logfile)
        else:
            self.logfiles[name] = None
        size = values.get("logfilemax")
        if size is not None and (bytes_ := _size(size.value)) is not None:
            self.log_sizes[name] = (bytes_, size)
        elif size is not None:
            self.draft.warn(size.origin, f"logfilemax {size.value}: not a size: ignored")
        stamp = values.get("timestamp")
        self.stamps[name] = stamp is not None and stamp.value != ""
        if stamp is not None and _writes_marks(stamp.value):
            self.draft.warn(
                stamp.origin,
                f"timestamp {stamp.value}: consrv stamps every line of "
                "the log (ISO-8601) instead of writing MARK lines",
            )

    def _logs(self) -> None:
        imported = set(self.draft.consoles)
        logfiles = {n: f for n, f in self.logfiles.items() if n in imported}
        directories = Counter(f.directory for f in logfiles.values() if f is not None)
        if directories:
            self.draft.log_dir = directories.most_common(1)[0][0]
            self._log_notices(logfiles, self.draft.log_dir)
        sizes = {n: size for n, size in self.log_sizes.items() if n in imported}
        if sizes:
            common = Counter(size for size, _ in sizes.values()).most_common(1)[0][0]
            self.draft.log_max_size = common
            for size, statement in sizes.values():
                if size != common:
                    self.draft.warn(
                        statement.origin,
                        f"logfilemax {statement.value}: consrv has "
                        f"one log.max_size for all consoles ({common} bytes)",
                    )
        stamps = {n: s for n, s in self.stamps.items() if n in imported}
        if stamps:
            common = Counter(stamps.values()).most_common(1)[0][0]
            self.draft.log_timestamps = common
            for name, stamp in stamps.items():
                if stamp != common:
                    self.draft.consoles[name].timestamps = stamp

    def _log_notices(self, logfiles: dict[str, _LogFile | None], log_dir: str) -> None:
        for name, logfile in logfiles.items():
            if logfile is None:
                self.draft.warn(
                    self.draft.consoles[name].origin,
                    f"console {name}: no logfile; "
                    f"consrv logs every console, this one to {log_dir}/{name}.log",
                )
                continue
            statement = logfile.statement
            if logfile.directory != log_dir:
                self.draft.warn(
                    statement.origin,
                    f"logfile {statement.value}: consrv has one "
                    f"log_dir ({log_dir}): these consoles log there",
                )
            elif logfile.filename != f"{name}.log":
                self.draft.warn(
                    statement.origin,
                    f"logfile {statement.value}: consrv names its "
                    "logs NAME.log in log_dir (older logs stay where they are)",
                )


# ---------------------------------------------------------------- values


def _final_port(values: dict[str, Statement]) -> int | str:
    """conserver's port formula: portbase + portinc * port (defaults 0 and 1)."""
    port = values["port"].value
    if not _PORT_RE.fullmatch(port):
        try:
            port = str(socket.getservbyname(port, "tcp"))  # as conserver looks a name up
        except (OSError, ValueError):
            return port  # parse_endpoint says why it cannot be used
    base = values.get("portbase")
    inc = values.get("portinc")
    base_value = int(base.value) if base and _PORT_RE.fullmatch(base.value) else 0
    inc_value = int(inc.value) if inc and _PORT_RE.fullmatch(inc.value) else 1
    return base_value + inc_value * int(port)


def _writes_marks(spec: str) -> bool:
    """conserver's `timestamp N[m|h|d]` writes MARK lines; `Nl` stamps lines, as consrv does."""
    return any(unit.lower() in ("", "m", "h", "d") for _, unit in _MARK_RE.findall(spec))


def _size(value: str) -> int | None:
    match = re.fullmatch(r"([0-9]+)([kKmM]?)", value.strip())
    if match is None:
        return None
    factor = {"": 1, "k": 1024, "m": 1024 * 1024}[match[2].lower()]
    return int(match[1]) * factor or None


def _valid(check: Callable[[str], str], name: str) -> bool:
    try:
        check(name)
    except InvalidName:
        return False
    return True
