"""procServ host configs → consrv: procServUtils' INI files and epics-ioc-runner's env files.

Both live in `/etc/procServ.d/*.conf` (procServUtils also reads `/etc/procServ.conf`),
side by side; a file with a `[section]` line is procServUtils' INI, any other is an
epics-ioc-runner file named after its IOC (`NAME.conf`, `KEY="VALUE"` lines).

INI files are read together into one `configparser` with procServUtils' own
defaults, as `manage-procs` does: `[DEFAULT]` reaches every section of every file,
`%%` is a literal `%`, a later file may add to a section. Each IOC becomes
- by default: an IOC console (`ioc: true`, the `ioc@NAME.service` unit) and the
  environment file that unit reads (`IOC_CHDIR`, `IOC_CMD`, the IOC's variables);
- with `keep_units`: a console on the socket or port the IOC's current unit serves,
  leaving the IOC where it runs.
What the ioc@ template cannot express (user, group, env_file, a TCP port, ...) is a
notice naming the file and line. Must not know: YAML, consrv's config schema.
"""

from __future__ import annotations

import configparser
import re
import shlex
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from consrv.config import MAX_UNIX_SOCKET_PATH
from consrv.migrate.draft import ConsoleDraft, Draft, EnvFileDraft, Origin
from consrv.migrate.envfile import (
    KEY_RE,
    EnvSyntaxError,
    parse_env_file,
    quote_exec_words,
    split_exec_words,
)
from consrv.names import InvalidName, validate_console_name

__all__ = [
    "DEFAULT_PATHS",
    "Options",
    "SourceFile",
    "import_procserv",
    "read_paths",
]

DEFAULT_PATHS = {
    "system": ("/etc/procServ.conf", "/etc/procServ.d"),
    "user": ("~/.config/procServ.conf", "~/.config/procServ.d"),
}
# procServUtils' conf.py: what every section has unless it says otherwise.
PROCSERVUTILS_DEFAULTS = {
    "user": "nobody",
    "group": "nogroup",
    "chdir": "/",
    "port": "0",
    "instance": "1",
}
INI_KEYS = frozenset(
    {"command", "chdir", "user", "group", "port", "instance", "host", "env_file", "environment"}
)
RUNNER_KEYS = frozenset({"IOC_NAME", "IOC_USER", "IOC_GROUP", "IOC_CHDIR", "IOC_PORT", "IOC_CMD"})
RESERVED_ENV = frozenset({"IOC_CHDIR", "IOC_CMD"})
_SECTION_LINE_RE = re.compile(r"\s*\[[^\]]+\]\s*(?:[#;].*)?")
_SECTION_RE = re.compile(r"\[(?P<header>.+)\]")
_OPTION_RE = re.compile(r"(?P<option>.*?)\s*[=:]\s*(?P<value>.*)")
_PORT_RE = re.compile(r"[0-9]{1,5}")

Scope = Literal["system", "user"]


@dataclass(frozen=True)
class SourceFile:
    path: str
    text: str


@dataclass(frozen=True)
class Options:
    scope: Scope = "system"
    keep_units: bool = False
    hostname: str = ""  # this host, for procServUtils' `host`; "" accepts any
    runtime_dir: str = "/run"  # procServ's sockets for a user manager: $XDG_RUNTIME_DIR


@dataclass(frozen=True)
class Setting:
    """A value from a file and where it was set."""

    value: str
    origin: Origin


@dataclass
class IocSpec:
    """One IOC as a procServ tool describes it."""

    name: str
    origin: Origin
    tool: Literal["procServUtils", "epics-ioc-runner"]
    chdir: str
    argv: list[str]
    port: Setting | None = None
    user: Setting | None = None
    group: Setting | None = None
    host: Setting | None = None
    env_file: Setting | None = None
    environment: list[tuple[str, str, Origin]] = field(default_factory=list)


# ---------------------------------------------------------------- reading the paths (I/O)


def read_paths(paths: Sequence[str], draft: Draft, *, explicit: bool) -> list[SourceFile]:
    """The files to import from `paths` (files, or directories of `*.conf`).

    A path that does not exist is skipped when it is one of the defaults, and
    raises FileNotFoundError when the user named it. Other files in a directory
    and unreadable files are notices.
    """
    files: list[SourceFile] = []
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            files += _read_directory(path, draft)
        elif path.exists() or explicit:
            files += _read_file(path, draft, explicit=explicit)
    return files


def _read_directory(directory: Path, draft: Draft) -> Iterator[SourceFile]:
    for path in sorted(directory.iterdir()):
        if path.suffix == ".conf" and path.is_file():
            yield from _read_file(path, draft, explicit=False)
        elif path.name == "site.env":
            draft.warn(
                Origin(str(path)),
                "epics-ioc-runner's site-wide variables: ioc@.service does not read this "
                "file; add `EnvironmentFile=" + str(path) + "` in a drop-in for ioc@.service",
            )
        else:
            draft.warn(Origin(str(path)), "not a .conf file: not read (the tools read *.conf)")


def _read_file(path: Path, draft: Draft, *, explicit: bool) -> Iterator[SourceFile]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        if explicit and isinstance(exc, FileNotFoundError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        draft.warn(Origin(str(path)), f"cannot read: {reason}")
        return
    yield SourceFile(str(path), text)


# ---------------------------------------------------------------- the import (no I/O)


def import_procserv(files: Sequence[SourceFile], options: Options) -> Draft:
    """A draft config (and env files) from the files' IOCs."""
    draft = Draft("procserv", sources=[f.path for f in files])
    ini = [f for f in files if is_ini(f.text)]
    specs = list(_IniReader(draft).specs(ini))
    for source in files:
        if source not in ini:
            spec = _runner_spec(source, draft)
            if spec is not None:
                specs.append(spec)
    for spec in specs:
        _add_ioc(spec, options, draft)
    if not options.keep_units and draft.consoles:
        draft.ioc_scope = options.scope
    draft.defaults_rw, draft.defaults_ro = (), ("*",)
    return draft


def is_ini(text: str) -> bool:
    """A `[section]` line means procServUtils' INI format."""
    return any(_SECTION_LINE_RE.fullmatch(line) for line in text.splitlines())


# ---------------------------------------------------------------- procServUtils (INI)


class _IniIndex:
    """Where each section and key is set (configparser keeps no line numbers)."""

    def __init__(self) -> None:
        self.sections: dict[str, Origin] = {}
        self.keys: dict[tuple[str, str], Origin] = {}

    def scan(self, source: SourceFile) -> None:
        section, option, indent = "", "", 0
        for number, line in enumerate(source.text.splitlines(), start=1):
            value = line.strip()
            if not value or value[0] in "#;":
                continue
            level = len(line) - len(line.lstrip())
            if section and option and level > indent:
                continue  # continues the value above
            indent = level
            if match := _SECTION_RE.match(value):
                section, option = match["header"], ""
                self.sections.setdefault(section, Origin(source.path, number))
            elif (match := _OPTION_RE.match(value)) and section:
                option = match["option"].strip().lower()
                self.keys[(section, option)] = Origin(source.path, number)

    def key(self, section: str, key: str) -> Origin | None:
        """Where `key` was set for `section` (in it or in [DEFAULT]); None = built in."""
        return self.keys.get((section, key)) or self.keys.get(("DEFAULT", key))

    def own_keys(self, section: str) -> Iterator[tuple[str, Origin]]:
        """The keys set in the section itself ([DEFAULT] often holds %(name)s variables)."""
        for (sect, key), origin in self.keys.items():
            if sect == section:
                yield key, origin


class _Skip(Exception):
    """This IOC cannot be imported; the notice is already recorded."""


class _IniReader:
    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.parser = configparser.ConfigParser(defaults=PROCSERVUTILS_DEFAULTS)
        self.index = _IniIndex()

    def specs(self, files: Iterable[SourceFile]) -> Iterator[IocSpec]:
        for source in files:
            if self._readable(source):
                self.parser.read_string(source.text, source=source.path)
                self.index.scan(source)
        for section in self.parser.sections():
            try:
                spec = self._spec(section)
            except _Skip:
                continue
            if spec is not None:
                yield spec

    def _readable(self, source: SourceFile) -> bool:
        try:
            configparser.ConfigParser().read_string(source.text, source=source.path)
        except configparser.Error as exc:
            line, reason = _ini_error(exc)
            if _indented_lines(source.text):
                reason += " (an indented line continues the value above it)"
            self.draft.warn(Origin(source.path, line), f"not read (broken INI): {reason}")
            return False
        return True

    def _spec(self, section: str) -> IocSpec | None:
        origin = self.index.sections[section]
        self._unknown_keys(section)
        if not self._is_instance(section, origin):
            return None
        command = self._get(section, "command")
        if command is None:
            self.draft.warn(origin, f"[{section}] has no `command`: not imported")
            return None
        argv = self._argv(section, command)
        return IocSpec(
            name=section,
            origin=origin,
            tool="procServUtils",
            chdir=self._get(section, "chdir") or "/",
            argv=argv,
            port=self._setting(section, "port"),
            user=self._setting(section, "user"),
            group=self._setting(section, "group"),
            host=self._setting(section, "host"),
            env_file=self._setting(section, "env_file"),
            environment=self._environment(section),
        )

    def _unknown_keys(self, section: str) -> None:
        """Keys of the section procServUtils does not know (a typo, or a %(name)s variable)."""
        for key, origin in self.index.own_keys(section):
            if key not in INI_KEYS:
                self.draft.warn(
                    origin, f"[{section}] {key}: not a procServUtils key (only %({key})s uses it)"
                )

    def _is_instance(self, section: str, origin: Origin) -> bool:
        try:
            instance = self.parser.getboolean(section, "instance")
        except (ValueError, configparser.Error) as exc:
            where = self.index.key(section, "instance") or origin
            self.draft.warn(where, f"[{section}] instance: {exc}: not imported")
            return False
        if not instance:
            where = self.index.key(section, "instance") or origin
            self.draft.warn(where, f"[{section}] instance = 0: not an IOC, not imported")
        return instance

    def _get(self, section: str, key: str) -> str | None:
        if not self.parser.has_option(section, key):
            return None
        try:
            return self.parser.get(section, key)
        except configparser.InterpolationError as exc:
            where = self.index.key(section, key) or self.index.sections[section]
            message = str(exc).splitlines()[0]
            self.draft.warn(where, f"[{section}] {key}: {message} (write % as %%): not imported")
            raise _Skip from None

    def _setting(self, section: str, key: str) -> Setting | None:
        where = self.index.key(section, key)
        value = self._get(section, key)
        if where is None or value is None:
            return None
        return Setting(value, where)

    def _argv(self, section: str, command: str) -> list[str]:
        where = self.index.key(section, "command") or self.index.sections[section]
        if "\n" in command:
            self.draft.warn(
                where,
                f"[{section}] command spans several lines (an indented line continues "
                f"a value): read as {command!r}",
            )
        try:
            argv = shlex.split(command)  # as procServUtils' launcher splits it
        except ValueError as exc:
            self.draft.warn(where, f"[{section}] command: {exc}: not imported")
            raise _Skip from None
        if not argv:
            self.draft.warn(where, f"[{section}] command is empty: not imported")
            raise _Skip
        return argv

    def _environment(self, section: str) -> list[tuple[str, str, Origin]]:
        setting = self._setting(section, "environment")
        if setting is None:
            return []
        found = []
        for word in split_exec_words(setting.value):  # systemd's Environment= syntax
            key, sep, value = word.partition("=")
            if sep and KEY_RE.fullmatch(key):
                found.append((key, value, setting.origin))
            else:
                self.draft.warn(setting.origin, f"environment: {word!r} is not KEY=VALUE: dropped")
        return found


def _indented_lines(text: str) -> bool:
    return any(
        line[:1].isspace() and line.strip() and line.strip()[0] not in "#;"
        for line in text.splitlines()
    )


def _ini_error(exc: configparser.Error) -> tuple[int | None, str]:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return exc.lineno, "a line before the first [section]"
    if isinstance(exc, configparser.DuplicateSectionError):
        return exc.lineno, f"section [{exc.section}] appears twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        return exc.lineno, f"key {exc.option!r} appears twice in [{exc.section}]"
    if isinstance(exc, configparser.ParsingError) and exc.errors:
        line, text = exc.errors[0]
        return line, f"not `key = value`: {text.strip()!r}"
    return None, str(exc)


# ---------------------------------------------------------------- epics-ioc-runner


def _runner_spec(source: SourceFile, draft: Draft) -> IocSpec | None:
    """One IOC from an epics-ioc-runner file: NAME.conf with KEY="VALUE" lines."""
    try:
        env = parse_env_file(source.text)
    except EnvSyntaxError as exc:
        draft.warn(Origin(source.path), f"not read: {exc}")
        return None
    for number, line in env.ignored:
        draft.warn(Origin(source.path, number), f"not KEY=VALUE, ignored: {line.strip()!r}")
    if not env.assignments:
        draft.warn(Origin(source.path), "no [section] and no KEY=VALUE lines: nothing to import")
        return None
    found = {a.key: Setting(a.value, Origin(source.path, a.line)) for a in env.assignments}
    name = _runner_name(source.path)
    origin = Origin(source.path, env.assignments[0].line)
    ioc_name = found.get("IOC_NAME")
    if ioc_name is not None and ioc_name.value not in ("", name):
        draft.warn(
            ioc_name.origin,
            f"IOC_NAME={ioc_name.value!r} differs from the file name: the IOC is {name!r} "
            "(epics-ioc-runner names IOCs by their file)",
        )
    command = found.get("IOC_CMD")
    if command is None or not split_exec_words(command.value):
        draft.warn(origin, f"{name}: no IOC_CMD: not imported")
        return None
    chdir = found.get("IOC_CHDIR")
    if chdir is None or not chdir.value:
        draft.warn(origin, f"{name}: no IOC_CHDIR: the IOC will start in /")
    return IocSpec(
        name=name,
        origin=origin,
        tool="epics-ioc-runner",
        chdir=chdir.value if chdir and chdir.value else "/",
        argv=split_exec_words(command.value),
        port=found.get("IOC_PORT"),
        user=found.get("IOC_USER"),
        group=found.get("IOC_GROUP"),
        environment=_runner_environment(found, draft),
    )


def _runner_name(path: str) -> str:
    name = Path(path).name
    return name[: -len(".conf")] if name.endswith(".conf") else name


def _runner_environment(found: dict[str, Setting], draft: Draft) -> list[tuple[str, str, Origin]]:
    environment = []
    for key, setting in found.items():
        if key in RUNNER_KEYS:
            continue
        if key.startswith("IOC_"):
            draft.warn(setting.origin, f"{key}: an epics-ioc-runner setting consrv does not map")
        else:
            environment.append((key, setting.value, setting.origin))
    return environment


# ---------------------------------------------------------------- IOC → console


def _add_ioc(spec: IocSpec, options: Options, draft: Draft) -> None:
    try:
        validate_console_name(spec.name)
    except InvalidName as exc:
        draft.warn(spec.origin, f"{exc}: not imported (rename the IOC to import it)")
        return
    if spec.name in draft.consoles:
        first = draft.consoles[spec.name].origin
        draft.warn(spec.origin, f"IOC {spec.name!r} is already defined at {first}: not imported")
        return
    if not _runs_here(spec, options, draft):
        return
    console = (
        _unit_console(spec, options, draft) if options.keep_units else _ioc(spec, options, draft)
    )
    if console is not None:
        draft.consoles[spec.name] = console


def _runs_here(spec: IocSpec, options: Options, draft: Draft) -> bool:
    host = spec.host
    if host is None or not options.hostname or _same_host(host.value, options.hostname):
        return True
    draft.warn(
        host.origin,
        f"[{spec.name}] host = {host.value}: runs on another host (this is "
        f"{options.hostname}): not imported; import it there, or give --host {host.value}",
    )
    return False


def _same_host(a: str, b: str) -> bool:
    a, b = a.strip().lower(), b.strip().lower()
    return a == b or a.split(".")[0] == b.split(".")[0]


def _ioc(spec: IocSpec, options: Options, draft: Draft) -> ConsoleDraft:
    """An IOC console (ioc@NAME.service) and its environment file."""
    _warn_unmappable(spec, options, draft)
    assignments = {"IOC_CHDIR": spec.chdir, "IOC_CMD": quote_exec_words(spec.argv)}
    if spec.tool == "procServUtils":  # its launcher sets these for the IOC
        assignments |= {"IOCNAME": spec.name, "PROCSERV_NAME": spec.name}
    for key, value, origin in spec.environment:
        if key in RESERVED_ENV:
            draft.warn(origin, f"{key} is ioc@.service's own variable: dropped")
        else:
            assignments[key] = value
    draft.env_files[spec.name] = EnvFileDraft(spec.name, spec.origin, list(assignments.items()))
    return ConsoleDraft(spec.name, spec.origin, ioc=True)


def _warn_unmappable(spec: IocSpec, options: Options, draft: Draft) -> None:
    for setting, key in ((spec.user, "User"), (spec.group, "Group")):
        if setting is None or not setting.value:
            continue
        if options.scope == "user":
            how = "a user manager runs every IOC as the user it belongs to"
        else:
            how = f"ioc@.service takes {key}= from a drop-in (systemd/README.md): set it there"
        draft.warn(setting.origin, f"{key.lower()} {setting.value}: {how}")
    if spec.env_file is not None:
        draft.warn(
            spec.env_file.origin,
            f"{spec.name}: env_file {spec.env_file.value}: ioc@.service reads only "
            f"{spec.name}.env; add `EnvironmentFile={spec.env_file.value}` in a drop-in "
            f"(systemctl edit ioc@{spec.name})",
        )
    port = spec.port
    if port is not None and _PORT_RE.fullmatch(port.value) and int(port.value) != 0:
        draft.warn(
            port.origin,
            f"{spec.name}: TCP port {port.value}: ioc@.service serves the console on its "
            "UNIX socket only; telnet users connect with ssh now (or use --keep-units)",
        )


def _unit_console(spec: IocSpec, options: Options, draft: Draft) -> ConsoleDraft | None:
    """A console on the socket or port the IOC's current unit serves."""
    port = spec.port.value.strip() if spec.port else ""
    console = ConsoleDraft(spec.name, spec.origin)
    if port.startswith("unix:"):
        console.socket = _unix_socket_path(spec, port, draft)
        if console.socket is None:
            return None
    elif port in ("", "0"):
        console.socket = _default_socket(spec, options)
    elif _PORT_RE.fullmatch(port) and 1 <= int(port) <= 65535:
        console.tcp = f"127.0.0.1:{int(port)}"
    else:
        assert spec.port is not None
        draft.warn(spec.port.origin, f"{spec.name}: port {port!r} is not a TCP port or unix:PATH")
        return None
    if console.socket is not None and len(console.socket.encode()) > MAX_UNIX_SOCKET_PATH:
        draft.warn(
            spec.origin, f"{spec.name}: socket path longer than {MAX_UNIX_SOCKET_PATH} bytes"
        )
        return None
    return console


def _unix_socket_path(spec: IocSpec, port: str, draft: Draft) -> str | None:
    """The socket file of procServ's ``unix:[USER:GROUP:MODE:]PATH`` endpoint, or None.

    Owner and mode are procServ's business (it creates the socket); consrv needs the
    path only. ``unix:@NAME`` is an abstract socket, which consrv does not connect
    to (it follows socket files by path); a relative path is relative to procServ's
    working directory, which a console must not depend on: both are warned about.
    """
    assert spec.port is not None
    endpoint = port[len("unix:") :]
    if endpoint.startswith("@"):
        draft.warn(
            spec.port.origin,
            f"{spec.name}: {port!r} is an abstract UNIX socket, which consrv does not "
            f"support: give procServ a socket file (unix:/run/procserv/{spec.name}/control)",
        )
        return None
    fields = endpoint.split(":", 3)
    path = fields[3] if len(fields) == 4 else endpoint
    if not path.startswith("/"):
        draft.warn(
            spec.port.origin,
            f"{spec.name}: socket path {path!r} in {port!r} is relative: give an absolute path",
        )
        return None
    return path


def _default_socket(spec: IocSpec, options: Options) -> str:
    run = "/run" if options.scope == "system" else options.runtime_dir
    if spec.tool == "procServUtils":
        return f"{run}/procserv-{spec.name}/control"  # procServUtils' launcher
    return f"{run}/procserv/{spec.name}/control"  # epics-ioc-runner
