"""The running server: the task tree, signals, sd_notify, and logging to stderr.

Owns start-up order (consoles, IOC units, then SSH listeners; READY=1 only once
they are bound), reporting the bound addresses, and a clean stop on SIGTERM /
SIGINT (STOPPING=1, users told, logs flushed).
"""

from __future__ import annotations

import functools
import logging
import signal
import sys

import trio
import trio_asyncio
from prometheus_client.registry import Collector

from consrv.config import Config
from consrv.ioc import IocManager, Systemctl, SystemctlError
from consrv.metrics import (
    ConsoleCollector,
    IocCollector,
    ReloadStats,
    SshStats,
    metrics_registry,
    serve_metrics,
)
from consrv.registry import Registry
from consrv.sdnotify import Notifier, watchdog_forever
from consrv.service import Service
from consrv.ssh.server import SSHFront

logger = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0


async def serve(
    config: Config,
    *,
    notifier: Notifier | None = None,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run consrv until cancelled; ``task_status`` gets the bound SSH addresses."""
    notifier = notifier or Notifier(None)
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        registry = Registry(config)
        await nursery.start(registry.run)
        iocs = _ioc_manager(config)
        if iocs is not None:
            nursery.start_soon(_run_iocs, registry, iocs)
        ssh_stats = SshStats((config.ssh.login, config.ssh.observer_login))
        front = SSHFront(config, Service(registry, iocs), ssh_stats)
        ssh_stats.sessions = front.session_roles
        if config.metrics_listen is not None:
            collectors: list[Collector] = [ConsoleCollector(registry), ssh_stats, ReloadStats()]
            if iocs is not None:
                collectors.append(IocCollector(iocs))
            bound = await nursery.start(
                serve_metrics, config.metrics_listen, metrics_registry(*collectors)
            )
            logger.info("metrics on http://%s:%d/metrics", *bound)
        addresses = await nursery.start(front.serve)
        for host, port in addresses:
            logger.info("ssh listening on %s:%d", host, port)
        logger.info("serving %d console(s)", len(registry.consoles))
        notifier.ready(_status(registry, front))
        nursery.start_soon(watchdog_forever, notifier)
        nursery.start_soon(_report_status, notifier, registry, front)
        task_status.started(addresses)


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


async def _serve_until_signal(config: Config) -> None:
    notifier = Notifier.from_environ()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(serve, config, notifier=notifier))
            async for signum in signals:
                if signum == signal.SIGHUP:
                    # Never die on `systemctl reload`: until reload is built, say so.
                    logger.warning("SIGHUP: config reload is not supported yet; restart to apply")
                    notifier.reloading()
                    notifier.ready()
                    continue
                logger.info("%s: stopping", signal.Signals(signum).name)
                notifier.stopping()
                nursery.cancel_scope.cancel()
                break
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


def run(config: Config) -> int:
    """Serve in the foreground until SIGTERM or SIGINT; the process exit status."""
    failures: list[OSError] = []
    try:
        trio.run(_serve_until_signal, config)
    except* OSError as group:  # e.g. the SSH port is taken: a clear line, not a traceback
        failures.extend(_leaves(group))
    for exc in failures:
        logger.error("cannot serve: %s", exc)
    if failures:
        return 1
    logger.info("stopped")
    return 0
