"""The host's access policy: who may see, write and operate which console.

Owns the answers every front asks of this host (the SSH command line, the web
view, a fleet gateway's feed): the login as the config in force sees it, a
user's role on a console (no role: the console does not exist for them, so names
do not leak), who may operate an IOC unit, the consoles a user may see and a
console's report. Also the users' message budgets, shared by all their sessions.
Also who a user is on this host, for every front alike: their groups (the YAML's
and, with ``identity.nss``, their Unix groups from the directory). Knows no front
and no command line.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable

from consrv import views
from consrv.access import Role, role_for
from consrv.contracts import Login
from consrv.identity import Directory, Unavailable
from consrv.ioc import IocManager
from consrv.logins import LoginTokens
from consrv.ratelimit import MessageBudgets
from consrv.registry import Registry

# Console names an unknown name's error lists when none is near it.
SUGGESTED = 8
# Where a login may find consoles, as (NAME, HOST) pairs: a fleet gateway's answer
# (this host's and every peer's, by their own rules), so an unknown name's answer
# covers the fleet. ``NAME@HOST`` is the fleet's way to name a console on a host.
Places = Callable[[Login], Iterable[tuple[str, str]]]


class Host:
    """This host's consoles, as each login may see and act on them."""

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
        # Users from the facility's directory (docs/identity.md): set by the SSH front,
        # which asks it while users authenticate; None: YAML users only.
        self.directory: Directory | None = None
        # None: an unknown name is answered from this host's consoles; a gateway sets
        # the fleet's (fleet/gateway.py).
        self.places: Places | None = None

    @property
    def messages(self) -> MessageBudgets:
        """Users' message budgets, with the limits of the config in force."""
        limits, budgets = self.registry.config.messages, self._budgets
        budgets.burst, budgets.per_minute = limits.burst, limits.per_minute
        budgets.max_length = limits.max_length
        return budgets

    def current(self, login: Login) -> Login:
        """`login` as the config in force now sees it (its groups may have changed)."""
        return dataclasses.replace(login, groups=self.groups(login.user, login.unix_groups))

    def groups(self, user: str, unix_groups: frozenset[str] = frozenset()) -> frozenset[str]:
        """The user's groups by the config in force: the YAML's and their Unix groups."""
        return self.registry.config.groups_of(user) | unix_groups

    async def unix_groups(self, user: str) -> frozenset[str] | None:
        """Who `user` is on this host, asked by name alone (the web view, a proxy's header):
        their Unix groups if NSS knows them (``identity.nss``, through the directory's
        cache), else empty for a YAML user; None for anyone else, and for a user only
        NSS knows while it does not answer and nothing cached may serve (fail closed)."""
        directory = self.directory
        if directory is not None and directory.config.nss:
            try:
                person = await directory.person(user)
            except Unavailable:
                person = None
            if person is not None:
                return person.groups
        return frozenset() if user in self.registry.config.users else None

    async def login_as(self, user: str, *, peer: str, login: str) -> Login | None:
        """`user`, known by name alone, as a read-only login with their groups now
        (None: not a user of this host, see ``unix_groups``)."""
        unix_groups = await self.unix_groups(user)
        if unix_groups is None:
            return None
        groups = self.groups(user, unix_groups)
        return Login(user, groups, True, peer=peer, login=login, unix_groups=unix_groups)

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

    def suggest(self, login: Login, name: str, *, qualified: bool = False) -> str:
        """The end of an unknown name's error: a near name ("did you mean"), else the
        names there are (a few, then: list); only names the user may see, on this host
        or, on a gateway, in the fleet (`places`). `qualified`: ``name`` was typed as
        ``NAME@HOST`` (``name`` is then that whole text), so every name is shown so."""
        if self.places is None:
            return suggestion(name, ((n, "") for n in self.visible(login)), qualified=qualified)
        return suggestion(name, self.places(login), qualified=qualified)


def suggestion(text: str, places: Iterable[tuple[str, str]], *, qualified: bool = False) -> str:
    """The end of an unknown name's error: "; did you mean 'NEAR'?", else "; consoles: ..."
    (at most `SUGGESTED`, then: list).

    ``places``: the (NAME, HOST) pairs the user may see. A name on one host is shown
    bare (a bare name finds it), one on several hosts as ``NAME@HOST`` for each; so is
    every name when `qualified`, and a near name that is the very name typed (it is
    not where it was asked for)."""
    hosts: dict[str, list[str]] = {}
    for name, host in places:
        hosts.setdefault(name, []).append(host)
    name = text.partition("@")[0] if qualified else text

    def shown(console: str, always: bool = False) -> list[str]:
        where = sorted(h for h in hosts[console] if h)
        if (always or qualified or len(where) > 1) and where:
            return [f"{console}@{host}" for host in where]
        return [console]

    names = sorted(hosts)
    near = _nearest(name, names)
    if near is not None:
        return "; did you mean " + " or ".join(map(repr, shown(near, near == name))) + "?"
    if not names:
        return "; there are no consoles you may see"
    every = [entry for console in names for entry in shown(console)]
    more = f" and {len(every) - SUGGESTED} more (list)" if len(every) > SUGGESTED else ""
    return f"; consoles: {', '.join(every[:SUGGESTED])}{more}"


def _nearest(name: str, names: list[str]) -> str | None:
    """The name most like ``name`` (difflib's cut-off); of equals, the first by name
    (demo-ioc: demo-ioc1)."""
    close = difflib.get_close_matches(name, names, n=len(names) or 1)
    if not close:
        return None
    best = difflib.SequenceMatcher(None, close[0], name).ratio()
    return min(c for c in close if difflib.SequenceMatcher(None, c, name).ratio() >= best)


class LiveMessages:
    """A session's message budget, judged by the config in force when a message is sent."""

    def __init__(self, host: Host) -> None:
        self.host = host

    @property
    def max_length(self) -> int:
        return self.host.messages.max_length

    def take(self, user: str, now: float, kind: str = "message") -> float:
        return self.host.messages.take(user, now, kind)
