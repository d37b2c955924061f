"""What the parts of a session know of each other: small Protocols, so `InputPump`,
`EscapeInterpreter` and `SessionActions` each stand on this module alone (no import
circle through the `Session` that holds them), and what a session is given from
outside (`IocActions`, `MessagePolicy`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from consrv import views
from consrv.access import Role
from consrv.config import ConsoleConfig
from consrv.console import Console, Viewer
from consrv.contracts import Channel
from consrv.protocol.escape import EscapeParser


class IocActions(Protocol):
    """An IOC's unit, as a session may act on it (``host.IocControl``; a test's fake)."""

    @property
    def may_operate(self) -> bool:
        """Whether the user may operate the unit, by the config in force now."""

    async def act(self, verb: str) -> str:
        """Start/stop/restart; returns a message, raises ActionFailed.

        The request and its outcome are announced to every viewer of the console
        (this session's too) and written to its log.
        """

    def describe(self) -> views.ConsoleView:
        """The console with its unit's health, for ``^Eci``."""


class MessagePolicy(Protocol):
    """How many broadcasts and notes a user may send, and how long (``ratelimit``)."""

    @property
    def max_length(self) -> int: ...

    def take(self, user: str, now: float, kind: str = "message") -> float:
        """0.0 if `user` may send one now (counted), else the seconds to wait;
        ``kind="lock"`` for write-lock changes, which have a budget of their own."""


class Pump(Protocol):
    def queue(self, data: bytes) -> None: ...


class Escapes(Protocol):
    def confirm(
        self,
        question: str,
        on_yes: Callable[[], None],
        no_text: str,
        stale: Callable[[], str | None] | None = None,
    ) -> None: ...


class Actions(Protocol):
    def may_change_lock(self) -> bool: ...

    def ioc_action(self, verb: str) -> None: ...

    def send_message(self, key: str, text: str) -> None: ...

    async def run_pending(self) -> None: ...


class SessionCore(Protocol):
    """The session as its parts see it."""

    console: Console
    channel: Channel
    user: str
    role: Role
    pty: bool
    ioc: IocActions | None
    messages: MessagePolicy
    viewer: Viewer
    parser: EscapeParser
    prefix: str
    told: set[str]
    detached: bool

    @property
    def live(self) -> ConsoleConfig: ...
    @property
    def ended(self) -> bool: ...
    @property
    def pump(self) -> Pump: ...
    @property
    def escapes(self) -> Escapes: ...
    @property
    def actions(self) -> Actions: ...

    def notice(self, text: str) -> None: ...

    def text(self, text: str) -> None: ...

    def line_start(self) -> bytes: ...

    def tell_once(self, what: str, text: str) -> None: ...

    def wake(self) -> None: ...

    def detach(self) -> None: ...

    async def wait_for_input(self) -> None: ...
