"""What a logged-in user can ask for: a command line in, a reply or a session out.

Owns the meaning of the SSH command line (``ssh console@host NAME``, the menu,
``list``, ``who``, ``status``, ``tail``, ``follow``, ``start|stop|restart``,
``help``, ``version``), who may see, write and operate which console, and the
exit statuses. Knows nothing of asyncssh: it writes to a ``session.Channel``,
hands the channel's input to whoever reads it (``on_input``) and returns an
exit status.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import logging
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from consrv import __version__, feed, playback, views
from consrv.access import Role, role_for
from consrv.console import Console, Viewer, text_bytes
from consrv.ioc import IocManager, SystemctlError
from consrv.logfiles import BadTime, Limits, Query, log_files, parse_time, search
from consrv.logins import LoginTokens
from consrv.menu import LineReader, pick
from consrv.names import InvalidName, validate_console_name
from consrv.ratelimit import MessageBudgets
from consrv.registry import Registry
from consrv.session import IOC_VERBS, ActionDenied, ActionFailed, Channel, Session

logger = logging.getLogger(__name__)

# Exit statuses (docs/usage.md).
OK, NOT_FOUND, USAGE, DENIED, FAILED = 0, 1, 2, 3, 4

DEFAULT_TAIL = 20
MAX_TAIL = 10000
# A `tail -f` / `follow` with no output looks at the config this often (a reload
# that took the user's access away ends it; output is checked as it comes).
WATCH_RECHECK = 1.0
# `log`: what one search may cost, and how many run at once (SSH and web together).
LOG_LIMITS = Limits(results=MAX_TAIL, output=16 << 20)
LOG_SEARCHES = 4

HELP = """\
usage: ssh -t LOGIN@HOST                     choose a console from a menu
       ssh -t LOGIN@HOST NAME                attach to console NAME
       ssh -t LOGIN@HOST attach NAME [--ro | --force]
       ssh LOGIN@HOST list [--json]          the consoles you may see
       ssh LOGIN@HOST who [NAME] [--json]    who is attached, and who writes
       ssh LOGIN@HOST status [NAME] [--json] console and IOC state
       ssh LOGIN@HOST tail NAME [-n N] [-f]  the last N lines (-f: and follow)
       ssh LOGIN@HOST log NAME [--since T] [--until T] [--grep TEXT]
                                             search the log files (T: ISO-8601 or 10m, 2h)
       ssh -t LOGIN@HOST play NAME [--since T] [--until T] [--speed N]  replay the recording
       ssh LOGIN@HOST cast NAME [--since T] [--until T] > FILE.cast    the recording, asciicast v2
       ssh LOGIN@HOST web                    a one-time link to the read-only web view
       ssh LOGIN@HOST follow PATTERN         follow consoles matching PATTERN (a glob)
       ssh LOGIN@HOST start|stop|restart NAME  the IOC's unit (if you may operate it)
       ssh LOGIN@HOST help | version
On a console, ^Ec? lists the escapes (^Ec. detaches).
Exit status: 0 ok, 1 unknown console, 2 usage, 3 not allowed, 4 action failed.
"""


class Input(Protocol):
    """Whoever reads the channel's input: a session, the menu's line reader."""

    def feed(self, data: bytes) -> None: ...

    def eof(self) -> None: ...

    def drained(self) -> None: ...


class Commands(Protocol):
    """What the SSH front asks of whoever carries out a command line: this host's
    `Service`, or a fleet gateway in front of it (wired in daemon.py)."""

    async def handle(
        self,
        login: Login,
        command: str,
        channel: Channel,
        *,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> int: ...


@dataclass(frozen=True)
class Login:
    """An authenticated SSH user and how they logged in."""

    user: str
    groups: frozenset[str]
    read_only: bool  # the observer login: never more than read-only
    peer: str = ""
    login: str = ""  # the SSH login name (console / observer)


class UsageError(Exception):
    """A malformed command line; str() says what is wrong."""


class Service:
    """Runs one command line for one login."""

    def __init__(
        self,
        registry: Registry,
        ioc: IocManager | None = None,
        logins: LoginTokens | None = None,
    ) -> None:
        self.registry, self.ioc = registry, ioc
        self._budgets = MessageBudgets()  # every user's broadcasts and notes
        # The web view's one-time links (None: no web view); ``logins.base_url`` is set
        # once the web listener is bound.
        self.logins = logins
        self.searches = trio.CapacityLimiter(LOG_SEARCHES)

    @property
    def messages(self) -> MessageBudgets:
        """Users' message budgets, with the limits of the config in force."""
        limits, budgets = self.registry.config.messages, self._budgets
        budgets.burst, budgets.per_minute = limits.burst, limits.per_minute
        budgets.max_length = limits.max_length
        return budgets

    # -- who may do what -------------------------------------------------------
    def current(self, login: Login) -> Login:
        """`login` as the config in force now sees it (its groups may have changed)."""
        return dataclasses.replace(login, groups=self.registry.config.groups_of(login.user))

    def role(self, login: Login, name: str) -> Role | None:
        cfg = self.registry.settings.get(name)
        if cfg is None:
            return None
        role = role_for(login.user, login.groups, cfg.rw, cfg.ro)
        if role is not None and login.read_only:
            return Role.RO
        return role

    def may_operate(self, login: Login, name: str) -> bool:
        cfg = self.registry.settings.get(name)
        if cfg is None or not cfg.ioc or login.read_only or self.ioc is None:
            return False
        return role_for(login.user, login.groups, cfg.operate, ()) is Role.RW

    def visible(self, login: Login) -> list[str]:
        return sorted(n for n in self.registry.consoles if self.role(login, n) is not None)

    def view(self, name: str) -> views.ConsoleView:
        console = self.registry.consoles[name]
        cfg = self.registry.settings[name]
        ioc_config = self.registry.config.ioc
        if not cfg.ioc or ioc_config is None:
            return views.ConsoleView(console)
        health = self.ioc.health.get(name) if self.ioc is not None else None
        return views.ConsoleView(console, ioc_config.unit_for(name), health)

    # -- the command line --------------------------------------------------------
    async def handle(
        self,
        login: Login,
        command: str,
        channel: Channel,
        *,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> int:
        """Carry out ``command``; returns the exit status for the SSH channel."""
        run = _Run(self, login, channel, pty, on_input)
        try:
            return await run.dispatch(command)
        except UsageError as exc:
            return run.error(f"{exc}; try: help", USAGE)

    def suggest(self, login: Login, name: str) -> str:
        close = difflib.get_close_matches(name, self.visible(login), n=1)
        return f"; did you mean {close[0]!r}?" if close else "; try: list"


class _Run:
    """One command line being carried out for one login on one channel."""

    def __init__(
        self,
        service: Service,
        login: Login,
        channel: Channel,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> None:
        self.service, self._login, self.channel, self.pty = service, login, channel, pty
        self.on_input = on_input
        self.registry = service.registry

    @property
    def login(self) -> Login:
        """Who is asking, judged by the config in force now (a reload may change it)."""
        return self.service.current(self._login)

    async def dispatch(self, command: str) -> int:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise UsageError(f"cannot parse command: {exc}") from None
        if not words:
            if not self.pty:
                raise UsageError("no console named (use ssh -t for the menu)")
            return await self.menu()
        verb, args = words[0], words[1:]
        handler = self._verbs().get(verb)
        if handler is not None:
            return await handler(args)
        if len(words) > 1 and not words[1].startswith("-"):
            raise UsageError(f"unknown command {verb[:40]!r}")
        return await self.attach(words)

    def _verbs(self) -> dict[str, Callable[[list[str]], Awaitable[int]]]:
        return {
            "attach": self.attach,
            "list": self.list_,
            "who": self.who,
            "status": self.status,
            "tail": self.tail,
            "log": self.log,
            "play": functools.partial(playback.play, self),
            "cast": functools.partial(playback.cast, self),
            "web": self.web,
            "follow": self.follow,
            "start": functools.partial(self.action, "start"),
            "stop": functools.partial(self.action, "stop"),
            "restart": functools.partial(self.action, "restart"),
            "help": self.help,
            "version": self.version,
            "watch": self.watch,
        }

    # -- replies -----------------------------------------------------------------
    def text(self, text: str) -> None:
        self.channel.write(text_bytes(text, pty=self.pty))

    def error(self, text: str, status: int) -> int:
        self.channel.write_notice(text_bytes(f"consrv: {text}\n", pty=self.pty))
        return status

    # -- naming a console --------------------------------------------------------
    def console(self, name: str) -> tuple[Console | None, int]:
        """The console `name` if this login may see it, else an error already written."""
        try:
            validate_console_name(name)
        except InvalidName as exc:
            return None, self.error(str(exc), NOT_FOUND)
        console = self.registry.get(name)
        if console is None or self.service.role(self.login, name) is None:
            suggestion = self.service.suggest(self.login, name)
            return None, self.error(f"unknown console {name!r}{suggestion}", NOT_FOUND)
        return console, OK

    # -- commands ---------------------------------------------------------------
    async def help(self, args: list[str]) -> int:
        _no_args("help", args)
        self.text(HELP)
        return OK

    async def version(self, args: list[str]) -> int:
        _no_args("version", args)
        self.text(f"consrv {__version__}\n")
        return OK

    async def watch(self, args: list[str]) -> int:
        """The change feed for fleet gateways (consrv/feed.py): only `fleet.gateway_users`,
        judged again all along (a reload that takes the user out ends the feed)."""
        _, flags = _options("watch", args, {"--json"}, max_positional=0)
        if "--json" not in flags:
            raise UsageError("usage: watch --json (the change feed for fleet gateways)")
        if not self._may_read_feed():
            return self.error("watch is for fleet gateways (fleet.gateway_users)", DENIED)
        done = _EofWaiter()
        self.on_input(done)
        if not await feed.run_feed(
            self.service, self.channel, lambda: done.is_set() or not self._may_read_feed()
        ):
            return self.error("watch: the reader fell too far behind", FAILED)
        return OK if self._may_read_feed() else DENIED

    def _may_read_feed(self) -> bool:
        fleet = self.registry.config.fleet
        return fleet is not None and self.login.user in fleet.gateway_users

    async def list_(self, args: list[str]) -> int:
        _, flags = _options("list", args, {"--json"}, max_positional=0)
        shown = [self.service.view(n) for n in self.service.visible(self.login)]
        self.text(views.list_json(shown) if "--json" in flags else views.list_table(shown))
        return OK

    def _names(self, positional: list[str]) -> tuple[list[str], int]:
        """The console named (if it may be seen), or every visible one; else an error."""
        if not positional:
            return self.service.visible(self.login), OK
        console, status = self.console(positional[0])
        return ([console.name] if console is not None else []), status

    async def status(self, args: list[str]) -> int:
        positional, flags = _options("status", args, {"--json"}, max_positional=1)
        names, status = self._names(positional)
        if status != OK:
            return status
        shown = [self.service.view(n) for n in names]
        now = time.time()
        if "--json" in flags:
            self.text(views.list_json(shown))
        elif positional:
            self.text(views.status_text(shown[0], now=now))
        else:
            self.text(views.status_table(shown, now=now))
        return OK

    async def who(self, args: list[str]) -> int:
        positional, flags = _options("who", args, {"--json"}, max_positional=1)
        names, status = self._names(positional)
        if status != OK:
            return status
        now = time.time()
        rows = [(n, entry) for n in names for entry in self.registry.consoles[n].who(now=now)]
        if "--json" in flags:
            self.text(views.who_json(rows))
        else:
            self.text(views.who_table(rows, now=now, console_column=True))
        return OK

    async def tail(self, args: list[str]) -> int:
        positional, flags = _options("tail", args, {"-f"}, max_positional=1, valued={"-n"})
        if not positional:
            raise UsageError("usage: tail NAME [-n N] [-f]")
        lines = _count(flags.get("-n", str(DEFAULT_TAIL)))
        console, status = self.console(positional[0])
        if console is None:
            return status
        self.channel.write(console.scrollback.last_lines(lines))
        if "-f" in flags:
            await self._watch({console.name: console}, prefixed=False)
        return OK

    async def log(self, args: list[str]) -> int:
        usage = "usage: log NAME [--since T] [--until T] [--grep TEXT]"
        valued = {"--since", "--until", "--grep"}
        positional, flags = _options("log", args, set(), max_positional=1, valued=valued)
        if not positional:
            raise UsageError(usage)
        try:
            query = _log_query(flags)
        except BadTime as exc:
            raise UsageError(f"log: {exc}") from None
        console, status = self.console(positional[0])
        if console is None:
            return status
        log_dir = self.registry.config.log_dir
        files = log_files(log_dir, console.name) if log_dir is not None else []
        if not files:
            return self.error(f"{console.name} has no log files", NOT_FOUND)
        result = await trio.to_thread.run_sync(
            search, files, query, LOG_LIMITS, limiter=self.service.searches
        )
        end = b"\r\n" if self.pty else b"\n"
        self.channel.write(b"".join(match.data + end for match in result.matches))
        if result.stopped:
            self.error(f"stopped at a limit ({result.stopped}); narrow the search", OK)
        return OK

    async def web(self, args: list[str]) -> int:
        _no_args("web", args)
        logins = self.service.logins
        if logins is None or not logins.base_url:
            return self.error("the web view is not enabled on this host", NOT_FOUND)
        token = logins.mint(self.login.user)
        self.text(f"{logins.base_url}/login/{token}\n")
        self.error(f"the link works once, within {logins.ttl:g} s; read-only", OK)
        return OK

    async def follow(self, args: list[str]) -> int:
        positional, _ = _options("follow", args, set(), max_positional=1)
        if not positional:
            raise UsageError("usage: follow PATTERN (a glob over console names, e.g. 'llrf-*')")
        pattern = positional[0]
        names = [n for n in self.service.visible(self.login) if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            return self.error(f"no console matches {pattern[:64]!r}; try: list", NOT_FOUND)
        await self._watch({n: self.registry.consoles[n] for n in names}, prefixed=True)
        return OK

    async def _watch(self, consoles: dict[str, Console], *, prefixed: bool) -> None:
        """Read-only output of `consoles` until the user closes their input."""
        done = _EofWaiter()
        self.on_input(done)
        viewers = []
        for name, console in consoles.items():
            inner = _PrefixSink(self.channel, name) if prefixed else self.channel
            sink = _GatedSink(
                inner, functools.partial(self._may_watch, name), lambda: self.registry.config
            )
            limit = self.registry.settings[name].viewer_buffer
            viewer = Viewer(sink, user=self.login.user, role=Role.RO, limit=limit, pty=self.pty)
            viewer.login, viewer.peer = self.login.login, self.login.peer
            viewer.on_evict = done.eof
            sink.on_refused = functools.partial(self._stop_watching, console, viewer)
            console.attach(viewer)
            viewers.append((console, viewer, sink))
        try:
            while not done.is_set():
                with trio.move_on_after(WATCH_RECHECK):
                    await done.wait()
                for _, _, sink in viewers:
                    sink.check()
        finally:
            for console, viewer, _ in viewers:
                console.detach(viewer)

    def _may_watch(self, name: str) -> bool:
        return name in self.registry.consoles and self.service.role(self.login, name) is not None

    def _stop_watching(self, console: Console, viewer: Viewer) -> None:
        console.evict(viewer, f"your access to {console.name} changed: no longer shown")

    async def action(self, verb: str, args: list[str]) -> int:
        positional, _ = _options(verb, args, set(), max_positional=1)
        if not positional:
            raise UsageError(f"usage: {verb} NAME")
        console, status = self.console(positional[0])
        if console is None:
            return status
        name = console.name
        if not self.registry.settings[name].ioc or self.service.ioc is None:
            return self.error(f"{name} is not an IOC unit (ioc: true in the config)", NOT_FOUND)
        if not self.service.may_operate(self.login, name):
            why = (
                "the observer login is read-only"
                if self.login.read_only
                else "not in its operate list"
            )
            return self.error(f"you may not {verb} {name} ({why})", DENIED)
        try:
            self.text(await run_action(self.service, verb, name, self.login) + "\n")
        except ActionFailed as exc:
            return self.error(str(exc), FAILED)
        return OK

    async def attach(self, args: list[str]) -> int:
        positional, flags = _options("attach", args, {"--ro", "--force"}, max_positional=1)
        if not positional:
            raise UsageError("usage: attach NAME [--ro | --force]")
        if {"--ro", "--force"} <= flags.keys():
            raise UsageError("--ro and --force exclude each other")
        console, status = self.console(positional[0])
        if console is None:
            return status
        return await self.session(console, read_only="--ro" in flags, force="--force" in flags)

    async def session(self, console: Console, *, read_only: bool, force: bool) -> int:
        role = self.service.role(self.login, console.name)
        if role is None or self.registry.get(console.name) is not console:  # a reload took it
            return self.error(f"unknown console {console.name!r}; try: list", NOT_FOUND)
        if force and role is not Role.RW:
            return self.error(f"read-only on {console.name}: cannot force write", DENIED)
        session = Session(
            console,
            self.channel,
            user=self.login.user,
            role=role,
            settings=self.registry.settings[console.name],
            pty=self.pty,
            login=self.login.login,
            peer=self.login.peer,
            ioc=self._ioc_control(console.name),
            messages=_LiveMessages(self.service),
            current=lambda: self.registry.settings.get(console.name),
        )
        self.on_input(session)
        session.attach(write=not read_only, force=force)
        return await session.run()

    def _ioc_control(self, name: str) -> IocControl | None:
        cfg = self.registry.settings[name]
        if not cfg.ioc or self.service.ioc is None:
            return None
        return IocControl(self.service, name, self.login)

    async def menu(self) -> int:
        names = self.service.visible(self.login)
        if not names:
            return self.error("there are no consoles you may see", NOT_FOUND)
        shown = [self.service.view(n) for n in names]
        self.text(views.list_table(shown, numbered=True))
        reader = LineReader(self.channel)
        self.on_input(reader)
        while True:
            self.channel.write_notice(b"console (number or name, empty to quit): ")
            line = await reader.read_line()
            if not line:
                return OK
            names = self.service.visible(self.login)  # the config in force now
            choice = pick(line, names)
            if isinstance(choice, str):
                console = self.registry.get(choice)
                if console is not None:
                    return await self.session(console, read_only=False, force=False)
            self.text(_no_pick(line, choice))


class IocControl:
    """The IOC unit behind one console, as one session may act on it.

    Whether the user may operate it is asked of the config in force each time,
    and again at the moment an action runs (a reload may have taken it away).
    """

    def __init__(self, service: Service, name: str, login: Login) -> None:
        self.service, self.name, self.login = service, name, login

    @property
    def may_operate(self) -> bool:
        return self.service.may_operate(self.service.current(self.login), self.name)

    async def act(self, verb: str) -> str:
        if not self.may_operate:
            raise ActionDenied(f"you may not {verb} {self.name} (no longer in its operate list)")
        return await run_action(self.service, verb, self.name, self.login)

    def describe(self) -> views.ConsoleView:
        return self.service.view(self.name)


async def run_action(service: Service, verb: str, name: str, login: Login) -> str:
    """Start/stop/restart the IOC `name` for `login` (already checked); returns what was done.

    The request and its outcome go to the console's log and to everyone attached
    to it; the unit's health is read again at once, so ``status`` is right.
    """
    assert verb in IOC_VERBS
    ioc = service.ioc
    assert ioc is not None
    console, user = service.registry.consoles[name], login.user
    who = {"user": user, "from": login.peer, "login": login.login, "verb": verb}
    _event(console, f"{verb} requested by {user}")
    try:
        await getattr(ioc, verb)(name)
    except SystemctlError as exc:
        await ioc.refresh([name])
        _event(console, f"{verb} by {user} failed: {exc}")
        console.audit.record("ioc_action", console=name, result="failed", error=str(exc), **who)
        logger.warning("%s: %s by %s failed: %s", name, verb, user, exc)
        raise ActionFailed(str(exc)) from None
    await ioc.refresh([name])
    _event(console, f"{verb} by {user}: done")
    console.audit.record("ioc_action", console=name, result="done", **who)
    logger.info("%s: %s by %s", name, verb, user)
    past = {"restart": "restarted", "start": "started", "stop": "stopped"}[verb]
    return f"{past} {name}"


def _event(console: Console, text: str) -> None:
    """An IOC action's step: into the console's log and to everyone attached."""
    console.log_event(text)
    console.announce(text)


class _LiveMessages:
    """A session's message budget, judged by the config in force when a message is sent."""

    def __init__(self, service: Service) -> None:
        self.service = service

    @property
    def max_length(self) -> int:
        return self.service.messages.max_length

    def take(self, user: str, now: float, kind: str = "message") -> float:
        return self.service.messages.take(user, now, kind)


class _EofWaiter:
    """Input for read-only watching: ignores keystrokes, ends at EOF or ^C/^D."""

    def __init__(self) -> None:
        self._done = trio.Event()

    def feed(self, data: bytes) -> None:
        if b"\x03" in data or b"\x04" in data:
            self._done.set()

    def eof(self) -> None:
        self._done.set()

    def drained(self) -> None:
        pass

    async def wait(self) -> None:
        await self._done.wait()

    def is_set(self) -> bool:
        return self._done.is_set()


class _GatedSink:
    """A read-only watcher's sink that asks, at every write, whether the config in
    force still lets the user see the console (cheap until a reload: the check
    runs again only when the registry's config is a new one)."""

    def __init__(
        self,
        inner: Channel | _PrefixSink,
        allowed: Callable[[], bool],
        config: Callable[[], object],
    ) -> None:
        self.inner, self.allowed, self.config = inner, allowed, config
        self.on_refused: Callable[[], None] | None = None
        self._seen = config()
        self._ok = True

    def check(self) -> bool:
        """Still allowed by the config in force? Once refused, ``on_refused`` is called
        (once) and nothing more is shown."""
        config = self.config()
        if config is self._seen or not self._ok:
            return self._ok
        self._seen, self._ok = config, self.allowed()
        if not self._ok and self.on_refused is not None:
            self.on_refused()
        return self._ok

    def write(self, data: bytes) -> None:
        if self.check():
            self.inner.write(data)

    def write_notice(self, data: bytes) -> None:
        self.inner.write_notice(data)

    def buffered(self) -> int:
        return self.inner.buffered()


class _PrefixSink:
    """A sink that writes whole lines, each prefixed with its console's name."""

    MAX_PARTIAL = 4096

    def __init__(self, channel: Channel, name: str) -> None:
        self.channel, self.prefix = channel, name.encode() + b": "
        self._partial = b""

    def write(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            self.channel.write(b"".join(self.prefix + ln.rstrip(b"\r") + b"\n" for ln in lines))

    def write_notice(self, data: bytes) -> None:
        self.channel.write_notice(self.prefix + data.strip(b"\r\n") + b"\n")

    def buffered(self) -> int:
        return self.channel.buffered()


def _no_args(verb: str, args: Sequence[str]) -> None:
    if args:
        raise UsageError(f"{verb} takes no arguments")


def _options(
    verb: str,
    args: Sequence[str],
    flags: set[str],
    *,
    max_positional: int,
    valued: frozenset[str] | set[str] = frozenset(),
) -> tuple[list[str], dict[str, str]]:
    """Split `args` into positional words and options (``-n 5`` or ``-n5``)."""
    positional: list[str] = []
    options: dict[str, str] = {}
    words = list(args)
    while words:
        word = words.pop(0)
        if word in flags:
            options[word] = ""
        elif word in valued or word[:2] in valued:
            key = word if word in valued else word[:2]
            value = word[2:] if word != key else (words.pop(0) if words else None)
            if value is None:
                raise UsageError(f"{verb}: {key} needs a value")
            options[key] = value
        elif word.startswith("-") and word != "-":
            raise UsageError(f"{verb}: unknown option {word[:20]!r}")
        else:
            positional.append(word)
    if len(positional) > max_positional:
        raise UsageError(f"{verb}: too many arguments")
    return positional, options


def _log_query(flags: dict[str, str]) -> Query:
    """A log search from ``--grep``, ``--since`` and ``--until``; raises BadTime."""
    since, until = flags.get("--since"), flags.get("--until")
    return Query(
        text=flags.get("--grep", "").encode(),
        since=parse_time(since) if since is not None else None,
        until=parse_time(until) if until is not None else None,
    )


def _count(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_TAIL:
        raise UsageError(f"-n wants a number of lines from 1 to {MAX_TAIL}")
    return int(text)


def _no_pick(line: str, choice: str | list[str]) -> str:
    if not choice:
        return f"no console {line[:40]!r}\n"
    if isinstance(choice, list):
        return f"{line[:40]!r} could be: {', '.join(choice[:10])}\n"
    return f"no console {choice!r}\n"
