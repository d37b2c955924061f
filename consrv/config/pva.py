"""The ``pva:`` section: console and IOC health as EPICS PVs over pvAccess (docs/pva.md).

Its raw model (wired into `schema.RawConfig`), its frozen dataclasses (``Config.pva``)
and its resolution (the host name, the PV name templates, p4p installed). Absent
section: no PV server.
"""

import dataclasses
import importlib.util
import ipaddress
import re
import socket
import types
from collections.abc import Mapping
from typing import Annotated, Literal

import pydantic
from pydantic import Field, StrictBool, StrictInt

from consrv.config.errors import Problem
from consrv.config.fields import ConsoleName, Duration, NoneIsEmpty, checked, fail
from consrv.config.model import (
    PV_HOST_PREFIX,
    PV_PREFIX,
    PvaConfig,
    PvaConsole,
)
from consrv.names import InvalidName, validate_console_name

Severity = Literal["NO_ALARM", "MINOR", "MAJOR", "INVALID"]
SEVERITIES: Mapping[str, int] = types.MappingProxyType(
    {"NO_ALARM": 0, "MINOR": 1, "MAJOR": 2, "INVALID": 3}
)
# What a PV name may hold besides the console name (which follows consrv's own rule).
_PV_CHARS = re.compile(r"[A-Za-z0-9_:.\-{}]*")
INSTALL_HINT = "pip install 'consrv[pva]'"


def _interface(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected an IP address of this host (127.0.0.1, 0.0.0.0)")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"not an IP address: {value[:60]!r}") from None


def _template(value: object, fields: tuple[str, ...], needs: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not _PV_CHARS.fullmatch(value):
        raise ValueError("expected a PV name template of A-Z a-z 0-9 _ : . - and {fields}")
    try:
        value.format(**dict.fromkeys(fields, "x"))
    except (KeyError, IndexError, ValueError):
        raise ValueError(f"only {', '.join('{' + f + '}' for f in fields)} may be used") from None
    for field in needs:
        if "{" + field + "}" not in value:
            raise ValueError(f"needs {{{field}}}: every console needs its own names")
    return value


Interface = Annotated[str, checked(_interface)]
ConsoleTemplate = Annotated[str, checked(lambda v: _template(v, ("host", "console"), ("console",)))]
HostTemplate = Annotated[str, checked(lambda v: _template(v, ("host",), ()))]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]


class RawAlarms(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    down: Severity | None = None
    no_child: Severity | None = None
    unit_failed: Severity | None = None
    unit_inactive: Severity | None = None
    crash_loop: Severity | None = None
    silent: Severity | None = None


class RawPvaConsole(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    silent_after: Duration | None = None
    crash_loop: Annotated[StrictInt, Field(ge=1)] | None = None
    alarms: RawAlarms = Field(default_factory=RawAlarms)
    text: StrictBool | None = None


class RawPva(RawPvaConsole):
    host: ConsoleName | None = None
    prefix: ConsoleTemplate = PV_PREFIX
    host_prefix: HostTemplate = PV_HOST_PREFIX
    interfaces: tuple[Interface, ...] = ("127.0.0.1",)
    server_port: Port = 5075
    broadcast_port: Port = 5076
    own_process: StrictBool = True
    consoles: Annotated[dict[ConsoleName, RawPvaConsole], NoneIsEmpty] = Field(default_factory=dict)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_section(cls, data: object) -> object:
        return {} if data is None else data

    @pydantic.model_validator(mode="after")
    def _interfaces(self) -> "RawPva":
        if not self.interfaces:
            fail("interfaces: give at least one address (127.0.0.1 keeps PVs on this host)")
        return self


def _merge(raw: RawPvaConsole, base: PvaConsole) -> PvaConsole:
    alarms = {k: SEVERITIES[v] for k, v in raw.alarms.model_dump().items() if v is not None}
    return PvaConsole(
        silent_after=raw.silent_after if raw.silent_after is not None else base.silent_after,
        crash_loop=raw.crash_loop if raw.crash_loop is not None else base.crash_loop,
        alarms=dataclasses.replace(base.alarms, **alarms),
        text=raw.text if raw.text is not None else base.text,
    )


def p4p_installed() -> bool:
    try:
        return importlib.util.find_spec("p4p") is not None
    except ImportError:  # a finder that refuses it
        return False


def default_host() -> str:
    """This machine's short host name, as PVs carry it."""
    return socket.gethostname().split(".")[0]


def resolve_pva(raw: RawPva | None) -> tuple[PvaConfig | None, list[Problem]]:
    """The ``pva:`` section resolved; p4p missing or a bad host name are problems."""
    if raw is None:
        return None, []
    problems: list[Problem] = []
    if not p4p_installed():
        problems.append(Problem("pva", f"needs p4p, which is not installed: {INSTALL_HINT}"))
    host = raw.host if raw.host is not None else default_host()
    try:
        validate_console_name(host)
    except InvalidName as exc:
        problems.append(Problem("pva.host", f"{exc} (set pva.host to a valid name)"))
    defaults = _merge(raw, PvaConsole())
    consoles = {name: _merge(entry, defaults) for name, entry in raw.consoles.items()}
    pva = PvaConfig(
        host=host,
        prefix=raw.prefix,
        host_prefix=raw.host_prefix,
        interfaces=raw.interfaces,
        server_port=raw.server_port,
        broadcast_port=raw.broadcast_port,
        own_process=raw.own_process,
        defaults=defaults,
        consoles=types.MappingProxyType(consoles),
    )
    return pva, problems
