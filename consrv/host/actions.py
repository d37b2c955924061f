"""IOC actions: start, stop and restart of a console's unit, for a user.

Owns carrying out an action that was allowed (the request and its outcome into
the console's log, the audit trail and to everyone attached; the unit's health
read again at once) and `IocControl`, the unit behind one console as one
session may act on it. Knows no front: ``ssh ... restart NAME`` (commands) and
``^Ec!restart`` (session) both end here.
"""

from __future__ import annotations

import logging

from consrv import views
from consrv.console import Console
from consrv.contracts import Login
from consrv.host.policy import Host
from consrv.ioc import SystemctlError

# The journal's name for these lines since before the host layer (operators grep it;
# tests/integration/test_lifecycle.py reads it).
logger = logging.getLogger("consrv.service")

IOC_VERBS = ("restart", "start", "stop")


class ActionFailed(Exception):
    """An IOC action that did not happen; str() is the message for the user."""


class ActionDenied(ActionFailed):
    """An IOC action refused before it was requested (the user may not operate any more)."""


class IocControl:
    """The IOC unit behind one console, as one session may act on it.

    Whether the user may operate it is asked of the config in force each time,
    and again at the moment an action runs (a reload may have taken it away).
    """

    def __init__(self, host: Host, name: str, login: Login) -> None:
        self.host, self.name, self.login = host, name, login

    @property
    def may_operate(self) -> bool:
        return self.host.may_operate(self.host.current(self.login), self.name)

    async def act(self, verb: str) -> str:
        if not self.may_operate:
            raise ActionDenied(f"you may not {verb} {self.name} (no longer in its operate list)")
        return await run_action(self.host, verb, self.name, self.login)

    def describe(self) -> views.ConsoleView:
        return self.host.view(self.name)


async def run_action(host: Host, verb: str, name: str, login: Login) -> str:
    """Start/stop/restart the IOC `name` for `login` (already checked); returns what was done.

    The request and its outcome go to the console's log and to everyone attached
    to it; the unit's health is read again at once, so ``status`` is right.
    """
    assert verb in IOC_VERBS
    ioc = host.ioc
    assert ioc is not None
    console, user = host.registry.consoles[name], login.user
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
