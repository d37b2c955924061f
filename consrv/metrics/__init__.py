"""Prometheus metrics: what ``/metrics`` shows, read from the live objects at scrape time.

Owns metric names, labels and the counters that have no other home (config
reloads, the build), and the registry: ``consoles.py`` (console and IOC series),
``labels.py`` (the label values), ``app.py`` (answering a scrape, as an ASGI app
that web/metrics.py serves on the metrics listener); the SSH
front's counters are ``ssh/stats.py``'s, the web's ``web/stats.py``'s, the
fleet's ``fleet/metrics.py``'s. Must not
know consoles, sessions or systemd beyond the read-only Protocols below, and adds
nothing to the console's hot path: the collectors read the counters that the
console, its log and its matcher keep anyway.

Rules:
1. Names follow Prometheus conventions: ``consrv_`` prefix, base units (seconds,
   bytes), ``_total`` for counters, ``_info`` for constant label sets.
2. Label values come only from the config (console, pattern and login names,
   unit names made from the unit template) and from fixed enums in this module;
   anything else maps to ``other``. Never from user input or console output.
3. Collecting runs in the trio thread (``MetricsApp`` calls it there), so no
   object is read while a task changes it; dicts are still copied with ``list()``.
docs/metrics.md explains every series.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from consrv import __version__
from consrv.metrics.app import MetricsApp
from consrv.metrics.consoles import ConsoleCollector, IocCollector, RegistryView
from consrv.metrics.labels import UNIT_STATES

__all__ = [
    "UNIT_STATES",
    "BuildInfo",
    "ConsoleCollector",
    "IocCollector",
    "MetricsApp",
    "RegistryView",
    "ReloadStats",
    "metrics_registry",
]


class ReloadStats:
    """Config reloads (SIGHUP). The start-up load counts as the first success."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.results: Counter[str] = Counter(success=0, failure=0)
        self.last_ok = True
        self.last_success = clock()

    def reload(self, ok: bool) -> None:
        self.results["success" if ok else "failure"] += 1
        self.last_ok = ok
        if ok:
            self.last_success = self._clock()

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "consrv_config_reloads", "Config reloads by result.", labels=["result"]
        )
        for result, count in self.results.items():
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily(
            "consrv_config_last_reload_successful",
            "1 if the last config load or reload succeeded.",
            value=1 if self.last_ok else 0,
        )
        yield GaugeMetricFamily(
            "consrv_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (Unix time).",
            value=self.last_success,
        )


class BuildInfo:
    """``consrv_build_info{version, python} 1``."""

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("consrv_build", "consrv's version and the Python running it.")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info


def metrics_registry(*collectors: Collector, process: bool = True) -> CollectorRegistry:
    """A registry with build info, ``collectors`` and (``process``) the process_* metrics."""
    registry = CollectorRegistry()
    for collector in (BuildInfo(), *collectors):
        registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
    return registry
