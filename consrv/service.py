"""What a logged-in user can ask for: a command line in, a reply or a session out.

Owns the meaning of the SSH command line (``ssh console@host NAME``,
``list``, ``help``, ``version``) and who may see which console. Knows nothing
of asyncssh: it writes to a ``session.Channel`` and returns an exit status.
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from consrv import __version__
from consrv.access import Role, role_for
from consrv.names import InvalidName, validate_console_name
from consrv.registry import Registry
from consrv.session import Channel, Session

# Exit statuses.
OK, NOT_FOUND, USAGE = 0, 1, 2

COMMANDS = ("attach", "help", "list", "version")

HELP = """\
usage: ssh [-t] LOGIN@HOST NAME          attach to console NAME
       ssh LOGIN@HOST attach NAME         the same
       ssh LOGIN@HOST list                the consoles you may see
       ssh LOGIN@HOST help | version
Use ssh -t for an interactive console; ~. (OpenSSH's escape) disconnects.
"""


@dataclass(frozen=True)
class Login:
    """An authenticated SSH user and how they logged in."""

    user: str
    groups: frozenset[str]
    read_only: bool  # the observer login: never more than read-only
    peer: str = ""


class Service:
    """Runs one command line for one login."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def role(self, login: Login, name: str) -> Role | None:
        cfg = self.registry.settings.get(name)
        if cfg is None:
            return None
        role = role_for(login.user, login.groups, cfg.rw, cfg.ro)
        if role is not None and login.read_only:
            return Role.RO
        return role

    def visible(self, login: Login) -> list[str]:
        return sorted(n for n in self.registry.consoles if self.role(login, n) is not None)

    async def handle(
        self,
        login: Login,
        command: str,
        channel: Channel,
        *,
        pty: bool,
        on_session: Callable[[Session], None],
    ) -> int:
        """Carry out ``command``; returns the exit status for the SSH channel."""
        out = _Writer(channel, pty)
        try:
            words = shlex.split(command)
        except ValueError as exc:
            return out.error(f"cannot parse command: {exc}", USAGE)
        if words and words[0] == "attach":
            words = words[1:]
        if not words:
            return out.error("no console named; try: list, or help", USAGE)
        if words[0] in COMMANDS:
            return self._simple(login, words, out)
        if len(words) != 1:
            return out.error(f"unknown command {words[0]!r}; try: help", USAGE)
        return await self._attach(login, words[0], channel, out, pty=pty, on_session=on_session)

    def _simple(self, login: Login, words: list[str], out: _Writer) -> int:
        verb, args = words[0], words[1:]
        if args or verb == "attach":
            return out.error(f"usage: {verb}" + (" NAME" if verb == "attach" else ""), USAGE)
        if verb == "list":
            out.text("".join(f"{name}\n" for name in self.visible(login)))
        elif verb == "version":
            out.text(f"consrv {__version__}\n")
        else:
            out.text(HELP)
        return OK

    async def _attach(
        self,
        login: Login,
        name: str,
        channel: Channel,
        out: _Writer,
        *,
        pty: bool,
        on_session: Callable[[Session], None],
    ) -> int:
        try:
            validate_console_name(name)
        except InvalidName as exc:
            return out.error(str(exc), NOT_FOUND)
        role = self.role(login, name)
        console = self.registry.get(name)
        if role is None or console is None:
            return out.error(f"unknown console {name!r}{self._suggest(login, name)}", NOT_FOUND)
        settings = self.registry.settings[name]
        session = Session(
            console,
            channel,
            user=login.user,
            role=role,
            viewer_buffer=settings.viewer_buffer,
            pty=pty,
        )
        session.attach()
        on_session(session)
        return await session.run()

    def _suggest(self, login: Login, name: str) -> str:
        close = difflib.get_close_matches(name, self.visible(login), n=1)
        return f"; did you mean {close[0]!r}?" if close else "; try: list"


class _Writer:
    """Text replies, with the line ends the client's terminal wants."""

    def __init__(self, channel: Channel, pty: bool) -> None:
        self.channel, self.pty = channel, pty

    def _bytes(self, text: str) -> bytes:
        data = text.encode()
        return data.replace(b"\n", b"\r\n") if self.pty else data

    def text(self, text: str) -> None:
        self.channel.write(self._bytes(text))

    def error(self, text: str, status: int) -> int:
        self.channel.write_notice(self._bytes(f"consrv: {text}\n"))
        return status
