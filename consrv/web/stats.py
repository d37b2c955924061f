"""The web front's counters for Prometheus, read at scrape time (metrics.py's style)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric


class WebStats:
    """Sign-ins (by result), bytes sent to browsers, slow streams dropped; sessions and
    streams (read)."""

    def __init__(self) -> None:
        self.logins = {"ok": 0, "refused": 0}
        self.bytes_sent = 0
        self.dropped = {"behind": 0, "not_reading": 0}  # streams dropped, by why
        self.sessions: Callable[[], int] = lambda: 0
        self.streams: Callable[[], int] = lambda: 0

    def login(self, *, ok: bool) -> None:
        self.logins["ok" if ok else "refused"] += 1

    def sent(self, n: int) -> None:
        self.bytes_sent += n

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def collect(self) -> Iterator[Metric]:
        logins = CounterMetricFamily(
            "consrv_web_logins",
            "Sign-ins with a one-time link, by result (ok, refused: unknown, used or expired).",
            labels=["result"],
        )
        for result, count in self.logins.items():
            logins.add_metric([result], count)
        yield logins
        yield CounterMetricFamily(
            "consrv_web_sent_bytes",
            "Bytes sent to browsers: console streams and log downloads.",
            value=self.bytes_sent,
        )
        dropped = CounterMetricFamily(
            "consrv_web_streams_dropped",
            "Console streams dropped for a slow browser: behind (its queue overflowed), "
            "not_reading (one frame took longer than web.limits.send_timeout).",
            labels=["reason"],
        )
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            "consrv_web_sessions", "Signed-in browser sessions.", value=self.sessions()
        )
        yield GaugeMetricFamily(
            "consrv_web_streams", "Live console streams open in browsers.", value=self.streams()
        )
