"""The set of consoles: from the config and from discovery globs.

Owns which consoles exist and runs one task per console. Knows nothing of SSH.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import trio

from consrv.audit import NO_AUDIT, AuditLog
from consrv.config import Config, ConsoleConfig, Pattern
from consrv.console import PATH_CHECK_INTERVAL, Console, Observer
from consrv.consolelog import ConsoleLog
from consrv.names import InvalidName, validate_console_name
from consrv.pathwatch import PathWatcher, Subscription
from consrv.patterns import LineMatcher
from consrv.recordings import recording_for
from consrv.upstream import Target, TcpTarget, UnixTarget

logger = logging.getLogger(__name__)

# Without inotify: how often discovery globs and connected sockets' paths are looked at.
DISCOVER_INTERVAL = 0.5
# With inotify the kernel says when they change; these slow rounds are a safety net.
WATCHED_DISCOVER_INTERVAL = 30.0
WATCHED_PATH_CHECK_INTERVAL = 30.0


def target_of(cfg: ConsoleConfig) -> Target:
    if cfg.socket is not None:
        return UnixTarget(cfg.socket)
    assert cfg.tcp is not None  # config guarantees exactly one of socket / tcp
    return TcpTarget(cfg.tcp.host, cfg.tcp.port)


def ioc_names_on_disk(socket_template: str) -> set[str]:
    """IOC names whose procServ directory (or socket) exists, from ``ioc.socket``.

    With the ESS layout (``/run/procServ/{name}/control``) the directory stays
    while the unit is stopped (RuntimeDirectoryPreserve=yes), so a stopped IOC
    is still found; otherwise the socket itself must exist.
    """
    parts = PurePosixPath(socket_template).parts
    index = next(i for i, part in enumerate(parts) if "{name}" in part)
    component = parts[index]
    before, after = component.split("{name}")
    names = set()
    for match in glob.glob(str(PurePosixPath(*parts[:index], before + "*" + after))):
        base = Path(match).name
        name = base[len(before) : len(base) - len(after)]
        try:
            names.add(validate_console_name(name))
        except InvalidName:
            continue
    return names


def glob_directories(pattern: str) -> set[Path]:
    """The directories whose contents decide what ``pattern`` matches.

    For ``/run/procServ/*/control``: ``/run/procServ`` (a new IOC directory) and
    every ``/run/procServ/NAME`` (its socket appearing). A directory that does not
    exist yet is watched from its nearest ancestor by the watcher.
    """
    parts = PurePosixPath(pattern).parts
    found: set[Path] = set()
    prefixes = [PurePosixPath(parts[0])]
    for index in range(1, len(parts)):
        last = index == len(parts) - 1
        if last or glob.has_magic(parts[index]):
            found.update(Path(prefix) for prefix in prefixes)
        if last:
            break
        step = [prefix / parts[index] for prefix in prefixes]
        if glob.has_magic(parts[index]):
            step = [PurePosixPath(m) for p in step for m in glob.glob(str(p)) if Path(m).is_dir()]
        prefixes = step
    return found


def discover(patterns: tuple[str, ...]) -> dict[str, Path]:
    """Console name → socket path for every path matching a pattern.

    The directory holding the socket names the console (ESS layout:
    ``/run/procServ/NAME/control``). Invalid names are skipped and logged.
    """
    found: dict[str, Path] = {}
    for pattern in patterns:
        for match in sorted(glob.glob(pattern)):
            path = Path(match)
            try:
                name = validate_console_name(path.parent.name)
            except InvalidName as exc:
                logger.warning("discover: skipping %s: %s", pattern, exc)
                continue
            found.setdefault(name, path)
    return found


@dataclass
class Changes:
    """What a reload did, by console name."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # new upstream or log: sessions dropped
    changed: list[str] = field(default_factory=list)  # in place: sessions kept

    def __str__(self) -> str:
        parts = [
            f"{label} {', '.join(names)}"
            for label, names in (
                ("added", self.added),
                ("removed", self.removed),
                ("replaced", self.replaced),
                ("changed", self.changed),
            )
            if names
        ]
        return "; ".join(parts) or "no console changed"


async def _run_console(console: Console, scope: trio.CancelScope) -> None:
    with scope:
        await console.run()


def _matcher(
    patterns: tuple[Pattern, ...], old_patterns: tuple[Pattern, ...], counts: Mapping[str, int]
) -> LineMatcher | None:
    """A matcher for ``patterns``; one kept unchanged keeps its count (no counter reset)."""
    if not patterns:
        return None
    matcher = LineMatcher(patterns)
    for pattern in set(patterns) & set(old_patterns):
        matcher.counts[pattern.name] = counts.get(pattern.name, 0)
    return matcher


class Registry:
    """Name → Console, each console running in the registry's nursery."""

    def __init__(self, config: Config, audit: AuditLog = NO_AUDIT) -> None:
        self.config, self.audit = config, audit
        self.consoles: dict[str, Console] = {}
        self.settings: dict[str, ConsoleConfig] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None
        # inotify: each UNIX console's socket path, and the discovery globs' directories.
        self.watcher: PathWatcher | None = None
        self._path_subs: dict[str, Subscription] = {}
        self._glob_subs: dict[Path, Subscription] = {}
        self._rediscover = trio.Event()
        # Called with each new console before its task starts (handover.py takes over
        # the connection the previous consrv process held).
        self.on_add: Callable[[Console], None] | None = None
        # Told when a console is added, removed or changes (every console shares this list).
        self.observers: list[Observer] = []

    def get(self, name: str) -> Console | None:
        return self.consoles.get(name)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.watcher = PathWatcher.open()
                if self.watcher is not None:
                    await nursery.start(self.watcher.run)
                for cfg in self.config.consoles.values():
                    self.add(cfg)
                self._discover_once()
                nursery.start_soon(self._check_paths_forever)
                task_status.started()
                await self._discover_forever()
        finally:
            self._close_logs()

    def add(self, cfg: ConsoleConfig) -> Console:
        assert self._nursery is not None, "add() before run()"
        console = Console(
            cfg.name,
            target_of(cfg),
            scrollback=cfg.scrollback,
            log=self._log_for(cfg),
            write=cfg.write,
        )
        console.matcher = LineMatcher(cfg.patterns) if cfg.patterns else None
        console.recording = recording_for(self.config, cfg.name)
        console.audit = self.audit
        console.watcher = self.watcher
        console.observers = self.observers
        if self.watcher is not None and isinstance(console.target, UnixTarget):
            # A new procServ on the path: move to it (a no-op while not connected).
            sub = self.watcher.subscribe(console.target.path, console.check_path)
            self._path_subs[cfg.name] = sub
        self.consoles[cfg.name] = console
        self.settings[cfg.name] = cfg
        if self.on_add is not None:
            self.on_add(console)
        self._scopes[cfg.name] = scope = trio.CancelScope()
        self._nursery.start_soon(_run_console, console, scope, name=f"console:{cfg.name}")
        for observer in self.observers:
            observer.console_added(console)
        return console

    def remove(self, name: str, reason: str) -> None:
        """Stop a console: its users are told `reason` and sent away, its log closed."""
        console = self.consoles.pop(name)
        del self.settings[name]
        self._scopes.pop(name).cancel()
        sub = self._path_subs.pop(name, None)
        if sub is not None:
            sub.close()
        console.evict_all(reason)
        if console.log is not None:
            console.log.close()
        for observer in self.observers:
            observer.console_removed(console)
        if console.recording is not None:
            console.recording.close()

    def reload(self, config: Config) -> Changes:
        """Apply a new config: add, remove, replace or update consoles in place.

        A console whose upstream and log are unchanged keeps its connection and its
        sessions; its other settings apply at once (write mode, patterns) or to new
        sessions (escape, procserv_keys, replay). Access is checked again by the
        SSH front, which sends away users who lost it.
        """
        old, self.config = self.config, config
        changes = Changes()
        for name in list(self.consoles):
            cfg = self._wanted(name, old, config)
            if cfg is None:
                self.remove(name, f"{name} was removed from consrv's config")
                changes.removed.append(name)
            elif cfg != self.settings[name]:
                self._change(name, cfg, changes)
        for name, cfg in config.consoles.items():
            if name not in self.consoles:
                self.add(cfg)
                changes.added.append(name)
        self._discover_once()
        for console in self.consoles.values():
            console.recording = recording_for(config, console.name, console.recording)
        self._rediscover.set()  # the patterns may have changed: watch them anew
        return changes

    def _wanted(self, name: str, old: Config, new: Config) -> ConsoleConfig | None:
        """The new settings of an existing console, or None if it must go."""
        if name in new.consoles:
            return new.consoles[name]
        if name in old.consoles:
            return None  # configured before, not any more
        current = self.settings[name]  # discovered: still discovered, with the new defaults
        ioc = new.ioc
        if current.ioc and ioc is not None and ioc.discover:
            return new.discovered_console(name)
        if not current.ioc and current.socket in discover(new.discover).values():
            return new.discovered_console(name, current.socket)
        return None

    def _change(self, name: str, cfg: ConsoleConfig, changes: Changes) -> None:
        old = self.settings[name]
        keeps = (cfg.socket, cfg.tcp, cfg.timestamps) == (old.socket, old.tcp, old.timestamps)
        if not keeps:
            self.remove(name, f"{name} was reconfigured (new upstream or log): attach again")
            self.add(cfg)
            changes.replaced.append(name)
            return
        console = self.consoles[name]
        self.settings[name] = cfg
        console.lock.mode = cfg.write
        console.scrollback.resize(cfg.scrollback)
        if cfg.patterns != old.patterns:
            counts = console.matcher.counts if console.matcher is not None else {}
            console.matcher = _matcher(cfg.patterns, old.patterns, counts)
            console.changed("patterns")
        changes.changed.append(name)

    def _log_for(self, cfg: ConsoleConfig) -> ConsoleLog | None:
        log_dir = self.config.log_dir
        if log_dir is None:
            return None
        log = self.config.log
        return ConsoleLog(
            log_dir / f"{cfg.name}.log",
            timestamps=cfg.timestamps,
            max_size=log.max_size,
            keep=log.keep,
        )

    async def _check_paths_forever(self) -> None:
        """Every console's socket path, in one task (a task per console would wake
        1,000 times per interval on a host with 1,000 consoles). With inotify each
        path's change calls `Console.check_path` at once; this round is a safety net."""
        while True:
            watched = self.watcher is not None
            await trio.sleep(WATCHED_PATH_CHECK_INTERVAL if watched else PATH_CHECK_INTERVAL)
            for console in list(self.consoles.values()):
                console.check_path()

    def _patterns(self) -> list[str]:
        """Every glob discovery looks at: ``discover`` and the ``ioc.socket`` template."""
        patterns = list(self.config.discover)
        ioc = self.config.ioc
        if ioc is not None and ioc.discover:
            patterns.append(ioc.socket.replace("{name}", "*"))
        return patterns

    async def _discover_forever(self) -> None:
        while not self._patterns():
            await self._wait_rediscover()  # a reload may add patterns
        while True:
            interval = DISCOVER_INTERVAL if self.watcher is None else WATCHED_DISCOVER_INTERVAL
            with trio.move_on_after(interval):
                await self._wait_rediscover()
            self._discover_once()

    async def _wait_rediscover(self) -> None:
        """Until a directory the globs look at changes, or a reload."""
        self._watch_globs()
        try:
            await self._rediscover.wait()
        finally:
            self._rediscover = trio.Event()

    def _watch_globs(self) -> None:
        """Watch exactly the directories the discovery globs look at now."""
        if self.watcher is None:
            return
        wanted = {d for pattern in self._patterns() for d in glob_directories(pattern)}
        for directory in set(self._glob_subs) - wanted:
            self._glob_subs.pop(directory).close()
        for directory in wanted - set(self._glob_subs):
            self._glob_subs[directory] = self.watcher.subscribe_inside(directory, self._changed)

    def _changed(self) -> None:
        self._rediscover.set()

    def _discover_once(self) -> None:
        for name, path in discover(self.config.discover).items():
            if name not in self.consoles:
                logger.info("discovered console %s at %s", name, path)
                self.add(self.config.discovered_console(name, path))
        ioc = self.config.ioc
        if ioc is not None and ioc.discover:
            for name in sorted(ioc_names_on_disk(ioc.socket)):
                self.add_ioc(name)

    def add_ioc(self, name: str) -> None:
        """An `ioc@` instance found on disk or through systemd becomes a console."""
        if name in self.consoles:
            return
        try:
            cfg = self.config.discovered_console(name)
        except InvalidName as exc:
            logger.warning("discover: skipping IOC: %s", exc)
            return
        logger.info("discovered IOC %s (socket %s)", name, cfg.socket)
        self.add(cfg)

    def ioc_names(self) -> list[str]:
        return [name for name, cfg in self.settings.items() if cfg.ioc]

    def _close_logs(self) -> None:
        for console in self.consoles.values():
            if console.log is not None:
                console.log.close()
            if console.recording is not None:
                console.recording.close()
