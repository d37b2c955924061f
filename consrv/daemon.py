"""The running server: the task tree, signals, sd_notify, and logging to stderr.

Owns start-up order (consoles, IOC units, then SSH listeners; READY=1 only once
they are bound), reporting the bound addresses, and a clean stop on SIGTERM /
SIGINT (STOPPING=1, users told, logs flushed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import trio
import trio_asyncio
from prometheus_client.registry import Collector

from consrv import exposure, successor
from consrv.audit import AuditLog
from consrv.commands import Shell
from consrv.config import Config, ConfigError, load_config, restart_only
from consrv.fleet import Gateway, GatewayKeyError, build_gateway, prepare_reload
from consrv.fleet.metrics import FleetCollector
from consrv.handover import Handover
from consrv.host import Host
from consrv.ioc import IocManager, Systemctl, SystemctlError
from consrv.logins import LoginTokens
from consrv.metrics import (
    ConsoleCollector,
    IocCollector,
    MetricsApp,
    ReloadStats,
    metrics_registry,
)
from consrv.registry import Registry
from consrv.sdnotify import Notifier, watchdog_forever
from consrv.ssh import compat
from consrv.ssh.limits import raise_descriptor_limit
from consrv.ssh.server import SSHFront
from consrv.ssh.stats import SshStats
from consrv.successor import Successor
from consrv.web.metrics import serve_metrics

if TYPE_CHECKING:
    from consrv.pva import PvaFront
    from consrv.web.stats import WebStats

logger = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0


async def serve(
    config: Config,
    *,
    notifier: Notifier | None = None,
    reloads: trio.MemoryReceiveChannel[Path] | None = None,
    handover: Handover | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run consrv until cancelled; ``task_status`` gets the bound SSH addresses.

    Each path received on `reloads` is a request to re-read the config from it.
    `handover`: connections the previous process left in systemd's store are taken
    over, and at a restart this one's are left there (consrv/handover.py).
    """
    notifier = notifier or Notifier(None)
    audit = AuditLog(config.audit_log, max_size=config.log.max_size, keep=config.log.keep)
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        registry = Registry(config, audit)
        if handover is not None:
            registry.on_add = handover.adopt
        await nursery.start(registry.run)
        if handover is not None:
            handover.finish_adopting()
            handover.registry = registry
        iocs = _ioc_manager(config)
        if iocs is not None:
            nursery.start_soon(_run_iocs, registry, iocs)
        ssh_stats = SshStats((config.ssh.login, config.ssh.observer_login))
        logins = LoginTokens(ttl=config.web.login_ttl) if config.web is not None else None
        host = Host(registry, iocs, logins)
        shell = Shell(host)  # the command line on this host
        # fleet.peers: one namespace (docs/fleet.md); its connections to peers get the SSH
        # front's per-connection performance hooks
        gateway = build_gateway(config, host, shell, tune=compat.tune_client)
        if gateway is not None:
            await nursery.start(gateway.run)
        front = SSHFront(config, host, gateway or shell, ssh_stats, audit, tunnels=gateway)
        ssh_stats.sessions = front.session_roles
        front.handover = handover
        if handover is not None:
            handover.before_release = front.restart_goodbye
        reload_stats = ReloadStats()
        pva = await _start_pva(nursery, config, registry, iocs)
        if reloads is not None:
            reloader = _Reloader(registry, front, reload_stats, notifier, audit, gateway)
            reloader.pva = pva
            nursery.start_soon(reloader.serve, reloads)
        collectors: list[Collector] = [ConsoleCollector(registry), ssh_stats, reload_stats]
        if pva is not None:
            collectors.append(pva)
        if front.directory is not None:  # identity: the keys command, NSS, the cache
            collectors.append(front.directory)
        if config.web is not None and logins is not None:
            collectors.append(await _start_web(nursery, config, host, logins, audit, gateway))
        if config.metrics_listen is not None:
            if iocs is not None:
                collectors.append(IocCollector(iocs))
            if gateway is not None:
                collectors.append(FleetCollector(gateway))
            # serve_metrics logs "metrics on http://HOST:PORT/metrics" (IPv6 in brackets)
            app = MetricsApp(metrics_registry(*collectors))
            await nursery.start(serve_metrics, config.metrics_listen, app)
        addresses = await nursery.start(front.serve)
        if handover is not None:
            handover.close_unclaimed_listeners()
        for host, port in addresses:
            logger.info("ssh listening on %s:%d", host, port)
        logger.info("serving %d console(s)", len(registry.consoles))
        notifier.ready(_status(registry, front))
        nursery.start_soon(watchdog_forever, notifier)
        nursery.start_soon(_report_status, notifier, registry, front)
        task_status.started(addresses)


class _Reloader:
    """SIGHUP: re-read the config; apply it, or keep the running one and say why."""

    def __init__(
        self,
        registry: Registry,
        front: SSHFront,
        stats: ReloadStats,
        notifier: Notifier,
        audit: AuditLog,
        gateway: Gateway | None = None,
    ) -> None:
        self.registry, self.front, self.stats, self.notifier = registry, front, stats, notifier
        self.audit, self.gateway = audit, gateway
        self.pva: PvaFront | None = None

    async def serve(self, requests: trio.MemoryReceiveChannel[Path]) -> None:
        async for path in requests:
            self.notifier.reloading()
            self.reload(path)
            self.notifier.ready(_status(self.registry, self.front))

    def reload(self, path: Path) -> None:
        try:
            config = load_config(path)
            refused = exposure.fleet_refusals(config) if self.gateway else []
            if refused:
                raise GatewayKeyError("; ".join(refused))
            apply_fleet = prepare_reload(self.gateway, config)  # fleet.peers, keys
        except ConfigError as exc:
            self._failed(path, "; ".join(str(problem) for problem in exc.problems))
            return
        except GatewayKeyError as exc:
            self._failed(path, str(exc))
            return
        unsafe = exposure.identity_refusals(config)  # the running keys command stays
        if unsafe:
            self._failed(path, "; ".join(unsafe))
            return
        _warn_restart_only(self.registry.config, config)
        changes = self.registry.reload(config)
        self.front.reconfigure(config)
        apply_fleet()
        if self.pva is not None and config.pva is not None:
            self.pva.reconfigure(config.pva)
        self.stats.reload(ok=True)
        self.audit.record("reload", result="done", path=str(path), changes=str(changes))
        logger.info("reloaded %s: %s", path, changes)

    def _failed(self, path: Path, problems: str) -> None:
        logger.error("reload failed, the running config stays: %s: %s", path, problems)
        self.stats.reload(ok=False)
        self.audit.record("reload", result="failed", path=str(path), problems=problems)


def _warn_restart_only(old: Config, new: Config) -> None:
    """Settings a reload cannot change (listeners, the IOC units): say so."""
    for what, before, after in (
        ("ssh.listen", old.ssh.listen, new.ssh.listen),
        ("ssh.login_timeout", old.ssh.login_timeout, new.ssh.login_timeout),
        ("ssh.ciphers", old.ssh.ciphers, new.ssh.ciphers),
        ("metrics.listen", old.metrics_listen, new.metrics_listen),
        ("ioc", old.ioc, new.ioc),
        ("log_dir", old.log_dir, new.log_dir),
        ("web", old.web is None, new.web is None),
        ("pva", old.pva is None, new.pva is None),
        ("pva interfaces or ports", _pva_conf(old), _pva_conf(new)),
        ("pva.own_process", old.pva and old.pva.own_process, new.pva and new.pva.own_process),
    ):
        if before != after:
            logger.warning("reload: %s changed: it takes effect when consrv restarts", what)
    old_web, new_web = restart_only(old.web), restart_only(new.web)
    for key in old_web.keys() & new_web.keys():
        if old_web[key] != new_web[key]:
            logger.warning("reload: web.%s changed: it takes effect when consrv restarts", key)


async def _start_pva(
    nursery: trio.Nursery, config: Config, registry: Registry, iocs: IocManager | None
) -> PvaFront | None:
    """The PV server (docs/pva.md), when the config has a ``pva:`` section."""
    if config.pva is None:
        return None
    from consrv.pva import PvaFront

    pva = PvaFront(config.pva, registry, iocs, process=config.pva.own_process)
    await nursery.start(pva.serve)
    return pva


async def _start_web(
    nursery: trio.Nursery, config: Config, host: Host, logins: LoginTokens,
    audit: AuditLog, gateway: Gateway | None,
) -> WebStats:  # fmt: skip
    """The browser view (docs/web.md). Its stack (Starlette, Jinja2, the pages: about
    3 MB) is imported only here, so a host without ``web:`` does not carry it."""
    from consrv.web.server import WebFront, make_web

    assert config.web is not None
    web = make_web(host, logins, config.web, audit, fleet=gateway)
    await nursery.start(WebFront(web).serve)
    return web.stats


def _pva_conf(config: Config) -> dict[str, str] | None:
    return config.pva.server_conf() if config.pva is not None else None


def _ioc_manager(config: Config) -> IocManager | None:
    if config.ioc is None:
        return None
    systemctl = Systemctl(config.ioc.scope)
    return IocManager(systemctl, config.ioc.unit, poll_interval=config.ioc.poll_interval)


async def _run_iocs(registry: Registry, iocs: IocManager) -> None:
    """Autostart, then poll the units' health (and find new instances) forever."""
    ioc = registry.config.ioc
    assert ioc is not None
    if ioc.discover:
        await _add_instances(registry, iocs)
    wanted = [name for name, cfg in registry.settings.items() if cfg.ioc and cfg.autostart]
    if wanted:
        try:
            started = await iocs.autostart(wanted)
        except SystemctlError as exc:
            logger.error("autostart: %s", exc)
        else:
            logger.info("autostart: started %s", ", ".join(started) or "none (all running)")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(iocs.poll_forever, registry.ioc_names)
        while ioc.discover:
            await trio.sleep(ioc.poll_interval)
            await _add_instances(registry, iocs)


async def _add_instances(registry: Registry, iocs: IocManager) -> None:
    try:
        names = await iocs.instances()
    except SystemctlError as exc:
        logger.warning("cannot list IOC units: %s", exc)
        return
    for name in sorted(names):
        registry.add_ioc(name)


def _status(registry: Registry, front: SSHFront) -> str:
    consoles = registry.consoles.values()
    up = sum(console.up for console in consoles)
    return f"{up}/{len(consoles)} console(s) up, {len(front.sessions)} session(s)"


async def _report_status(notifier: Notifier, registry: Registry, front: SSHFront) -> None:
    if not notifier.enabled:
        return
    while True:
        await trio.sleep(STATUS_INTERVAL)
        notifier.status(_status(registry, front))


async def _serve_until_signal(config: Config, path: Path | None, fd_store: bool) -> None:
    notifier = Notifier.from_environ()
    handover = Handover.from_environ(
        notifier, fd_store=fd_store, from_predecessor=successor.from_predecessor()
    )
    heir: Successor | None = None  # SIGUSR2: the process the consoles go to
    send, receive = trio.open_memory_channel[Path](1)
    wanted = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR2)
    with trio.open_signal_receiver(*wanted) as signals:
        async with trio.open_nursery() as nursery:
            serving = functools.partial(
                serve, config, notifier=notifier, reloads=receive, handover=handover
            )
            await nursery.start(serving)
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if path is None:
                        logger.warning("SIGHUP: no config file to reload")
                        continue
                    logger.info("SIGHUP: reloading %s", path)
                    with contextlib.suppress(trio.WouldBlock):  # one already waiting is enough
                        send.send_nowait(path)
                    continue
                if signum == signal.SIGUSR2:
                    heir = await handover.to_successor()
                    if heir is None:
                        continue
                    nursery.cancel_scope.cancel()
                    break
                logger.info("%s: stopping", signal.Signals(signum).name)
                notifier.stopping()
                if signum == signal.SIGTERM and await handover.is_restart():
                    await handover.hand_over()  # into systemd's fd store
                nursery.cancel_scope.cancel()
                break
    if handover.restarting:
        handover.store(heir)
    notifier.close()


def _leaves(group: BaseExceptionGroup[OSError]) -> list[OSError]:
    """The OSErrors in a (nested) exception group: open_loop and nurseries nest them."""
    found: list[OSError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def setup_logging(verbose: bool = False) -> None:
    """One line per event on stderr, no timestamps (journald adds them)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def run(config: Config, path: Path | None = None, *, fd_store: bool = False) -> int:
    """Serve in the foreground until SIGTERM or SIGINT (SIGHUP re-reads `path`).

    `fd_store`: take over what systemd's file descriptor store holds, and at a
    restart leave the consoles and listeners there (consrv/handover.py).
    """
    for warning in exposure.warnings(config):
        logger.warning("%s", warning)
    # The host key is refused by the SSH front.
    refused = exposure.fleet_refusals(config) + exposure.identity_refusals(config)
    for problem in refused:
        logger.error("cannot serve: %s", problem)
    if refused:
        return 1
    try:
        compat.require()  # each hook into asyncssh / trio-asyncio, against what is installed
    except compat.CompatError as refused:
        logger.error("cannot serve: %s", refused)
        return 1
    raise_descriptor_limit()
    failures: list[OSError] = []
    try:
        trio.run(_serve_until_signal, config, path, fd_store)
    except* OSError as group:  # e.g. the SSH port is taken: a clear line, not a traceback
        failures.extend(_leaves(group))
    for exc in failures:
        logger.error("cannot serve: %s", exc)
    if failures:
        return 1
    logger.info("stopped")
    return 0
