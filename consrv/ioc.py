"""IOC units through systemctl: start, stop, restart, health, discovery of ``ioc@`` instances.

`Systemctl` runs ``systemctl [--user] --no-ask-password --no-pager VERB ...`` with
an argv list (never a shell) and turns a failure into a `SystemctlError` whose text
is one line fit for a user. `IocManager` maps IOC (console) names to units through
a template such as ``ioc@{name}.service``: every name passes
`consrv.names.validate_console_name` before it reaches a unit name, so a name that
breaks the rule never reaches systemctl. Deciding whether a name is a *known* IOC,
and whether a user may operate it, is the caller's job.

Health comes from one batched ``systemctl show -p ... UNIT...`` per poll.
Facts (systemd 252): ``show`` prints one block of ``KEY=VALUE`` lines per unit,
blocks separated by a blank line, properties in systemd's order (not the order
asked for); ``--timestamp=unix`` prints ``@SECONDS``; an instance of a template is
"loaded" whatever its name; a stopped instance is soon unloaded, so
``list-units --all`` shows only running, failed or otherwise referenced instances;
``NRestarts`` counts automatic restarts (Restart=) and a manual start or restart
resets it to 0; ``MemoryCurrent``/``CPUUsageNSec`` are ``[not set]`` without
accounting (a user manager on cgroup v1).

Must not know: SSH, consoles, procServ, the config file.
"""

from __future__ import annotations

import logging
import math
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import trio

from consrv.names import InvalidName, validate_console_name

__all__ = [
    "SHOW_PROPERTIES",
    "IocManager",
    "Systemctl",
    "SystemctlError",
    "UnitHealth",
    "check_template",
    "parse_show",
    "parse_timestamp",
    "unit_name",
]

logger = logging.getLogger(__name__)

Scope = Literal["system", "user"]

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "NRestarts",
    "MainPID",
    "ExecMainStartTimestamp",
    "ExecMainStatus",
    "MemoryCurrent",
    "CPUUsageNSec",
)

# Active states in which a unit is running or on its way there: no start needed.
_UP_STATES = frozenset({"active", "activating", "reloading"})
_UINT64_UNSET = 2**64 - 1  # systemd's "infinity" / not set, printed as a number
_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+@[A-Za-z0-9:_.\\-]*\.service")
_MESSAGE_LIMIT = 300


class SystemctlError(Exception):
    """systemctl failed; ``str()`` is one line for a user (what, why, exit status)."""

    def __init__(self, command: str, reason: str, status: int | None = None) -> None:
        self.command = command
        self.reason = reason
        self.status = status
        suffix = f" (exit {status})" if status is not None else ""
        super().__init__(f"{command} failed: {reason}{suffix}")


# ---------------------------------------------------------------- parsing (pure)


def parse_show(text: str) -> list[dict[str, str]]:
    """``systemctl show`` output of one or more units: one dict per blank-line-separated block."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def parse_timestamp(text: str) -> float | None:
    """A systemd timestamp as epoch seconds: ``@1795254048`` (``--timestamp=unix``) or
    ``Sat 2026-11-21 08:42:13[.123456] UTC``; None for empty, ``n/a``, 0 or another zone."""
    text = text.strip()
    if text.startswith("@"):
        return _positive_float(text[1:])
    parts = text.split()
    if len(parts) != 4 or parts[3] != "UTC":
        return None
    stamp = f"{parts[1]} {parts[2]}"
    for form in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(stamp, form).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    return None


def _positive_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value > 0 and math.isfinite(value) else None


def _uint(text: str) -> int | None:
    """A systemd unsigned number; None for ``[not set]``, empty or 2**64-1 ("infinity")."""
    if not text.isdigit():
        return None
    value = int(text)
    return None if value == _UINT64_UNSET else value


def _pid(text: str) -> int | None:
    value = _uint(text)
    return value if value else None


@dataclass(frozen=True)
class UnitHealth:
    """One unit's state, from ``systemctl show`` (None: systemd does not know / not set)."""

    unit: str
    load_state: str
    active_state: str
    sub_state: str
    n_restarts: int | None
    main_pid: int | None
    started_at: float | None  # epoch seconds, ExecMainStartTimestamp
    exit_status: int | None  # ExecMainStatus of the last main process
    memory_bytes: int | None
    cpu_seconds: float | None

    @property
    def running(self) -> bool:
        return self.active_state == "active" and self.sub_state == "running"

    @classmethod
    def from_properties(cls, props: Mapping[str, str]) -> UnitHealth:
        cpu = _uint(props.get("CPUUsageNSec", ""))
        return cls(
            unit=props.get("Id", ""),
            load_state=props.get("LoadState", ""),
            active_state=props.get("ActiveState", ""),
            sub_state=props.get("SubState", ""),
            n_restarts=_uint(props.get("NRestarts", "")),
            main_pid=_pid(props.get("MainPID", "")),
            started_at=parse_timestamp(props.get("ExecMainStartTimestamp", "")),
            exit_status=_uint(props.get("ExecMainStatus", "")),
            memory_bytes=_uint(props.get("MemoryCurrent", "")),
            cpu_seconds=cpu / 1e9 if cpu is not None else None,
        )


# ---------------------------------------------------------------- names and units (pure)


def check_template(template: str) -> str:
    """Return ``template`` if it makes a service unit of a name (``ioc@{name}.service``)."""
    probe = template.replace("{name}", "x")
    if template.count("{name}") != 1 or _UNIT_RE.fullmatch(probe) is None:
        raise ValueError(
            f"unit template {template!r}: use one {{name}} in a service instance name,"
            " e.g. ioc@{name}.service"
        )
    return template


def unit_name(template: str, name: str) -> str:
    """The unit of IOC ``name``; InvalidName (before anything else) if the name breaks the rule."""
    validate_console_name(name)
    return check_template(template).replace("{name}", name)


def _name_of(template: str, unit: str) -> str | None:
    """The IOC name of ``unit`` under ``template``, or None if it is not a valid one."""
    prefix, _, suffix = template.partition("{name}")
    if not (unit.startswith(prefix) and unit.endswith(suffix)):
        return None
    name = unit[len(prefix) : len(unit) - len(suffix)]
    try:
        return validate_console_name(name)
    except InvalidName:
        return None


# ---------------------------------------------------------------- systemctl (I/O)


def _printable(text: str) -> str:
    """``text`` with anything but printable ASCII escaped (safe for a terminal or a log)."""
    return "".join(c if c.isascii() and c.isprintable() else ascii(c)[1:-1] for c in text)


def _first_line(stderr: bytes) -> str:
    """The line of systemctl's stderr that says what went wrong (its first)."""
    for line in stderr.decode(errors="replace").splitlines():
        if line.strip():
            return _printable(line.strip())[:_MESSAGE_LIMIT]
    return "no message"


class Systemctl:
    """``systemctl`` for one manager: the system's, or the user's (``--user``)."""

    def __init__(
        self,
        scope: Scope,
        program: str = "systemctl",
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        if scope not in ("system", "user"):
            raise ValueError(f"systemd scope must be 'system' or 'user', not {scope!r}")
        self.scope = scope
        self.program = program
        self.env = dict(env) if env is not None else None  # None: consrv's environment
        self.timeout = timeout  # seconds one systemctl call may take

    def argv(self, *args: str) -> list[str]:
        """The argv of ``systemctl ARGS``: never for a shell; no prompts, no pager."""
        scope = ["--user"] if self.scope == "user" else []
        return [self.program, *scope, "--no-ask-password", "--no-pager", *args]

    async def run(self, *args: str) -> str:
        """Run ``systemctl ARGS``: its stdout, or SystemctlError.

        SystemctlError when it exits non-zero, takes longer than ``timeout`` (it is
        killed) or cannot be run.
        """
        argv = self.argv(*args)
        what = " ".join(["systemctl", *(arg for arg in args if arg != "--")])
        with trio.move_on_after(self.timeout):
            result = await self._run(argv, what)
            if result.returncode != 0:
                raise SystemctlError(what, _first_line(result.stderr), result.returncode)
            return bytes(result.stdout).decode(errors="replace")
        raise SystemctlError(what, f"no answer within {self.timeout:g} s")

    async def _run(self, argv: Sequence[str], what: str) -> subprocess.CompletedProcess[bytes]:
        try:
            return await trio.run_process(
                argv,
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=self.env,
            )
        except OSError as exc:
            raise SystemctlError(what, f"cannot run {self.program}: {exc.strerror}") from exc


# ---------------------------------------------------------------- IOCs (the manager)


class IocManager:
    """IOC lifecycle through a `Systemctl`: actions, batched health, discovery, autostart."""

    def __init__(
        self, systemctl: Systemctl, unit_template: str, *, poll_interval: float = 5.0
    ) -> None:
        self.systemctl = systemctl
        self.template = check_template(unit_template)
        self.poll_interval = poll_interval
        self.health: dict[str, UnitHealth] = {}
        # Called (in the trio thread) with the health after each poll or refresh.
        self.observers: list[Callable[[Mapping[str, UnitHealth]], None]] = []

    def _set_health(self, health: dict[str, UnitHealth]) -> None:
        self.health = health
        for observer in self.observers:
            observer(health)

    def unit(self, name: str) -> str:
        """The unit of IOC ``name`` (InvalidName if the name breaks the rule)."""
        return unit_name(self.template, name)

    async def start(self, name: str) -> None:
        await self._action("start", name)

    async def stop(self, name: str) -> None:
        await self._action("stop", name)

    async def restart(self, name: str) -> None:
        await self._action("restart", name)

    async def _action(self, verb: str, name: str) -> None:
        unit = self.unit(name)  # validated before any process runs
        logger.info("%s %s", verb, unit)
        await self.systemctl.run(verb, "--", unit)

    async def show(self, names: Iterable[str]) -> dict[str, UnitHealth]:
        """Health of IOCs ``names``, by name, from one ``systemctl show`` (none: no call)."""
        units = {self.unit(name): name for name in names}
        if not units:
            return {}
        properties = ",".join(SHOW_PROPERTIES)
        text = await self.systemctl.run("show", "--timestamp=unix", "-p", properties, "--", *units)
        found = {}
        for block in parse_show(text):
            health = UnitHealth.from_properties(block)
            if health.unit in units:
                found[units[health.unit]] = health
        return found

    async def refresh(self, names: Iterable[str]) -> None:
        """Read the health of ``names`` now (after an action) and keep it with the rest.

        So ``status`` tells the truth right after ``stop``, not a poll later. A failure
        keeps what was known (logged); the next poll tries again.
        """
        try:
            fresh = await self.show(names)
        except SystemctlError as exc:
            logger.warning("IOC health refresh failed: %s", exc)
            return
        self._set_health({**self.health, **fresh})

    async def instances(self) -> set[str]:
        """Names of the template's loaded instances (running, failed, ...); invalid ones skipped."""
        pattern = self.template.replace("{name}", "*")
        text = await self.systemctl.run(
            "list-units", "--all", "--plain", "--no-legend", "--", pattern
        )
        names = set()
        for line in text.splitlines():
            fields = line.split()
            name = _name_of(self.template, fields[0]) if fields else None
            if name is not None:
                names.add(name)
            elif fields:
                logger.debug("not an IOC unit, skipped: %s", ascii(fields[0]))
        return names

    async def autostart(self, names: Iterable[str]) -> list[str]:
        """Start the IOCs of ``names`` that are not up; the names started.

        A failure is logged and the others are still started.
        """
        health = await self.show(names)
        started = []
        for name, unit_health in health.items():
            if unit_health.active_state in _UP_STATES:
                continue
            try:
                await self.start(name)
            except SystemctlError as exc:
                logger.error("autostart of %s: %s", name, exc)
                continue
            started.append(name)
        return started

    async def poll_forever(
        self,
        names: Callable[[], Iterable[str]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every ``poll_interval``: ``health = show(names())``. Started after the first poll.

        A failing poll keeps the last health; it is logged once per run of failures.
        """
        failing = False
        while True:
            try:
                self._set_health(await self.show(names()))
            except (SystemctlError, InvalidName) as exc:
                if not failing:
                    logger.warning("IOC health poll failed (until it works again): %s", exc)
                failing = True
            else:
                if failing:
                    logger.info("IOC health poll works again")
                failing = False
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            await trio.sleep(self.poll_interval)
