"""The running server: the task tree, signals, and logging to stderr.

Owns start-up order (consoles, then SSH listeners), reporting the bound
addresses, and a clean stop on SIGTERM / SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys

import trio
import trio_asyncio

from consrv.config import Config
from consrv.registry import Registry
from consrv.service import Service
from consrv.ssh.server import SSHFront

logger = logging.getLogger(__name__)


async def serve(
    config: Config,
    *,
    task_status: trio.TaskStatus[list[tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run consrv until cancelled; ``task_status`` gets the bound SSH addresses."""
    async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
        registry = Registry(config)
        await nursery.start(registry.run)
        front = SSHFront(config, Service(registry))
        addresses = await nursery.start(front.serve)
        for host, port in addresses:
            logger.info("ssh listening on %s:%d", host, port)
        logger.info("serving %d console(s)", len(registry.consoles))
        if config.metrics_listen is not None:
            logger.warning("metrics.listen is set, but this version serves no metrics yet")
        task_status.started(addresses)


async def _serve_until_signal(config: Config) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, config)
            async for signum in signals:
                logger.info("%s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


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
        failures.extend(exc for exc in group.exceptions if isinstance(exc, OSError))
    for exc in failures:
        logger.error("cannot serve: %s", exc)
    if failures:
        return 1
    logger.info("stopped")
    return 0
