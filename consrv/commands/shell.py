"""This host's meaning of the SSH command line: a command line in, a reply or a session out.

Owns carrying out a command (``NAME``, the menu, ``attach``, ``list``, ``who``,
``status``, ``tail``, ``log``, ``web``, ``follow``, ``start|stop|restart``,
``help``, ``version``, ``watch``) for one login: `Shell` is this host's
``contracts.Commands``. Its words are `commands.grammar`'s; who may do what is
asked of the `host.Host`. Knows nothing of asyncssh: it writes to a
``contracts.Channel``, hands the channel's input to whoever reads it
(``on_input``) and returns an exit status.
"""

from __future__ import annotations

import fnmatch
import functools
import shlex
import time
from collections.abc import Awaitable, Callable

import trio

from consrv import __version__, plaintext, views
from consrv.access import Role
from consrv.commands import logread, playback
from consrv.commands.grammar import HELP
from consrv.commands.options import (
    MAX_TAIL,
    UsageError,
    count,
    log_query,
    no_args,
    split_words,
)
from consrv.commands.watch import EofWaiter, watch
from consrv.console import Console
from consrv.contracts import (
    DENIED,
    FAILED,
    NOT_FOUND,
    OK,
    USAGE,
    Channel,
    Input,
    Login,
    error_bytes,
    text_bytes,
)
from consrv.host import ActionFailed, Host, IocControl, LiveMessages, run_action
from consrv.host.feed import run_feed
from consrv.logfiles import Limits, LogFile, log_files, search
from consrv.menu import LineReader, pick
from consrv.names import InvalidName, validate_console_name
from consrv.protocol import ansi
from consrv.session import Session

DEFAULT_TAIL = 20
# `log`: what one search may cost, and how many run at once.
LOG_LIMITS = Limits(results=MAX_TAIL, output=16 << 20)
LOG_SEARCHES = 4


class Shell:
    """This host's ``contracts.Commands``: runs one command line for one login."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.searches = trio.CapacityLimiter(LOG_SEARCHES)

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
        run = CommandRun(self, login, channel, pty, on_input)
        try:
            return await run.dispatch(command)
        except UsageError as exc:
            return run.error(f"{exc}; try: help", USAGE)


class CommandRun:
    """One command line being carried out for one login on one channel."""

    def __init__(
        self,
        shell: Shell,
        login: Login,
        channel: Channel,
        pty: bool,
        on_input: Callable[[Input], None],
    ) -> None:
        self.shell, self.host = shell, shell.host
        self._login, self.channel, self.pty = login, channel, pty
        self.on_input = on_input
        self.registry = self.host.registry

    @property
    def login(self) -> Login:
        """Who is asking, judged by the config in force now (a reload may change it)."""
        return self.host.current(self._login)

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
        handler = self.handlers().get(verb)
        if handler is not None:
            return await handler(args)
        if len(words) > 1 and not words[1].startswith("-"):
            raise UsageError(f"unknown command {verb[:40]!r}")
        return await self.attach(words)

    def handlers(self) -> dict[str, Callable[[list[str]], Awaitable[int]]]:
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
        self.channel.write_notice(error_bytes(text, pty=self.pty))
        return status

    # -- naming a console --------------------------------------------------------
    def console(self, name: str) -> tuple[Console | None, int]:
        """The console `name` if this login may see it, else an error already written."""
        try:
            validate_console_name(name)
        except InvalidName as exc:
            return None, self.error(str(exc), NOT_FOUND)
        console = self.registry.get(name)
        if console is None or self.host.role(self.login, name) is None:
            suggestion = self.host.suggest(self.login, name)
            return None, self.error(f"unknown console {name!r}{suggestion}", NOT_FOUND)
        return console, OK

    # -- commands ---------------------------------------------------------------
    async def help(self, args: list[str]) -> int:
        no_args("help", args)
        self.text(HELP)
        return OK

    async def version(self, args: list[str]) -> int:
        no_args("version", args)
        self.text(f"consrv {__version__}\n")
        return OK

    async def watch(self, args: list[str]) -> int:
        """The change feed for fleet gateways (consrv/host/feed.py): only `fleet.gateway_users`,
        judged again all along (a reload that takes the user out ends the feed)."""
        _, flags = split_words("watch", args)
        if "--json" not in flags:
            raise UsageError("usage: watch --json (the change feed for fleet gateways)")
        if not self._may_read_feed():
            return self.error("watch is for fleet gateways (fleet.gateway_users)", DENIED)
        done = EofWaiter()
        self.on_input(done)
        if not await run_feed(
            self.host, self.channel, lambda: done.is_set() or not self._may_read_feed()
        ):
            return self.error("watch: the reader fell too far behind", FAILED)
        return OK if self._may_read_feed() else DENIED

    def _may_read_feed(self) -> bool:
        fleet = self.registry.config.fleet
        return fleet is not None and self.login.user in fleet.gateway_users

    async def list_(self, args: list[str]) -> int:
        _, flags = split_words("list", args)
        shown = [self.host.view(n) for n in self.host.visible(self.login)]
        self.text(views.list_json(shown) if "--json" in flags else views.list_table(shown))
        return OK

    def _names(self, positional: list[str]) -> tuple[list[str], int]:
        """The console named (if it may be seen), or every visible one; else an error."""
        if not positional:
            return self.host.visible(self.login), OK
        console, status = self.console(positional[0])
        return ([console.name] if console is not None else []), status

    async def status(self, args: list[str]) -> int:
        positional, flags = split_words("status", args)
        names, status = self._names(positional)
        if status != OK:
            return status
        shown = [self.host.view(n) for n in names]
        now = time.time()
        if "--json" in flags:
            self.text(views.list_json(shown))
        elif positional:
            self.text(views.status_text(shown[0], now=now))
        else:
            self.text(views.status_table(shown, now=now))
        return OK

    async def who(self, args: list[str]) -> int:
        positional, flags = split_words("who", args)
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
        positional, flags = split_words("tail", args)
        if not positional:
            raise UsageError("usage: tail NAME [-n N] [-f] [--raw]")
        lines = count(flags.get("-n", str(DEFAULT_TAIL)))
        console, status = self.console(positional[0])
        if console is None:
            return status
        plain = plaintext.plain_wanted(pty=self.pty, raw=plaintext.RAW in flags)
        data = console.scrollback.last_lines(lines)
        if "-f" not in flags:
            self.channel.write(plaintext.finished(data, pty=self.pty, plain=plain))
            return OK
        self.channel.write(ansi.strip(data) if plain else data)
        await self._watch({console.name: console}, prefixed=False, plain=plain)
        return OK

    async def log(self, args: list[str]) -> int:
        usage = (
            "usage: log NAME [--since T] [--until T] [--grep TEXT] [--raw]"
            " [--file FILE [--last N]] [--files] [--json]"
        )
        positional, flags = split_words("log", args)
        if not positional:
            raise UsageError(usage)
        try:
            query = log_query(flags)
            last = logread.last_count(flags) if logread.LAST in flags else None
        except ValueError as exc:  # BadTime, or --last's
            raise UsageError(f"log: {exc}") from None
        console, status = self.console(positional[0])
        if console is None:
            return status
        log_dir = self.registry.config.log_dir
        files = log_files(log_dir, console.name) if log_dir is not None else []
        if not files:
            return self.error(f"{console.name} has no log files", NOT_FOUND)
        if logread.FILES in flags:
            self.text(logread.files_text(files, logread.JSON in flags))
            return OK
        if logread.FILE in flags:
            files = [f for f in files if f.name == flags[logread.FILE]]
            if not files:
                return self.error(f"{console.name} has no log file {flags[logread.FILE][:80]!r}",
                                  NOT_FOUND)  # fmt: skip
            if last is not None:
                return await self._last_lines(files[0], last, flags)
            if not logread.searching(flags):
                return await logread.copy_file(self.channel, files[0])
        result = await trio.to_thread.run_sync(
            search, files, query, LOG_LIMITS, limiter=self.shell.searches
        )
        if logread.JSON in flags:
            self.channel.write(logread.matches_json(result))
            return OK
        end = b"\r\n" if self.pty else b"\n"
        found = b"".join(match.data + end for match in result.matches)
        plain = plaintext.plain_wanted(pty=self.pty, raw=plaintext.RAW in flags)
        self.channel.write(plaintext.finished(found, pty=self.pty, plain=plain))
        if result.stopped:
            self.error(f"stopped at a limit ({result.stopped}); narrow the search", OK)
        return OK

    async def _last_lines(self, file: LogFile, count: int, flags: dict[str, str]) -> int:
        """``log NAME --file FILE --last N [--json]``."""
        first, lines = await logread.last_lines(file, count, self.shell.searches)
        if logread.JSON in flags:
            self.channel.write(logread.lines_json(first, lines))
            return OK
        end = b"\r\n" if self.pty else b"\n"
        data = b"".join(line + end for line in lines)
        plain = plaintext.plain_wanted(pty=self.pty, raw=plaintext.RAW in flags)
        self.channel.write(plaintext.finished(data, pty=self.pty, plain=plain))
        return OK

    async def web(self, args: list[str]) -> int:
        no_args("web", args)
        logins = self.host.logins
        if logins is None or not logins.base_url:
            return self.error("the web view is not enabled on this host", NOT_FOUND)
        if await self.host.unix_groups(self.login.user) is None:  # what the web asks
            return self.error(
                "the web view knows users of consrv's config and, with identity.nss,"
                " Unix users; ask the admin", DENIED,
            )  # fmt: skip
        token = logins.mint(self.login.user)
        self.text(f"{logins.base_url}/login/{token}\n")
        self.error(f"the link works once, within {logins.ttl:g} s; read-only", OK)
        return OK

    async def follow(self, args: list[str]) -> int:
        positional, flags = split_words("follow", args)
        if not positional:
            raise UsageError(
                "usage: follow PATTERN [--raw] (a glob over console names, e.g. 'llrf-*')"
            )
        pattern = positional[0]
        names = [n for n in self.host.visible(self.login) if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            return self.error(f"no console matches {pattern[:64]!r}; try: list", NOT_FOUND)
        plain = plaintext.plain_wanted(pty=self.pty, raw=plaintext.RAW in flags)
        consoles = {n: self.registry.consoles[n] for n in names}
        await self._watch(consoles, prefixed=True, plain=plain)
        return OK

    async def _watch(
        self, consoles: dict[str, Console], *, prefixed: bool, plain: bool = False
    ) -> None:
        await watch(self.host, lambda: self.login, self.channel, consoles, prefixed=prefixed,
                    pty=self.pty, on_input=self.on_input, plain=plain)  # fmt: skip

    async def action(self, verb: str, args: list[str]) -> int:
        positional, _ = split_words(verb, args)
        if not positional:
            raise UsageError(f"usage: {verb} NAME")
        console, status = self.console(positional[0])
        if console is None:
            return status
        name = console.name
        if not self.registry.settings[name].ioc or self.host.ioc is None:
            return self.error(f"{name} is not an IOC unit (ioc: true in the config)", NOT_FOUND)
        if not self.host.may_operate(self.login, name):
            why = (
                "the observer login is read-only"
                if self.login.read_only
                else "not in its operate list"
            )
            return self.error(f"you may not {verb} {name} ({why})", DENIED)
        try:
            self.text(await run_action(self.host, verb, name, self.login) + "\n")
        except ActionFailed as exc:
            return self.error(str(exc), FAILED)
        return OK

    async def attach(self, args: list[str]) -> int:
        positional, flags = split_words("attach", args)
        if not positional:
            raise UsageError("usage: attach NAME [--ro | --force]")
        if {"--ro", "--force"} <= flags.keys():
            raise UsageError("--ro and --force exclude each other")
        console, status = self.console(positional[0])
        if console is None:
            return status
        return await self.session(console, read_only="--ro" in flags, force="--force" in flags)

    async def session(self, console: Console, *, read_only: bool, force: bool) -> int:
        role = self.host.role(self.login, console.name)
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
            messages=LiveMessages(self.host),
            current=lambda: self.registry.settings.get(console.name),
        )
        self.on_input(session)
        session.attach(write=not read_only, force=force)
        return await session.run()

    def _ioc_control(self, name: str) -> IocControl | None:
        cfg = self.registry.settings[name]
        if not cfg.ioc or self.host.ioc is None:
            return None
        return IocControl(self.host, name, self.login)

    async def menu(self) -> int:
        names = self.host.visible(self.login)
        if not names:
            return self.error("there are no consoles you may see", NOT_FOUND)
        shown = [self.host.view(n) for n in names]
        self.text(views.list_table(shown, numbered=True))
        reader = LineReader(self.channel)
        self.on_input(reader)
        while True:
            self.channel.write_notice(b"console (number or name, empty to quit): ")
            line = await reader.read_line()
            if not line:
                return OK
            names = self.host.visible(self.login)  # the config in force now
            choice = pick(line, names)
            if isinstance(choice, str):
                console = self.registry.get(choice)
                if console is not None:
                    return await self.session(console, read_only=False, force=False)
            self.text(_no_pick(line, choice))


def _no_pick(line: str, choice: str | list[str]) -> str:
    if not choice:
        return f"no console {line[:40]!r}\n"
    if isinstance(choice, list):
        return f"{line[:40]!r} could be: {', '.join(choice[:10])}\n"
    return f"no console {choice!r}\n"
