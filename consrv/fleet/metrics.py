"""The gateway's Prometheus series: peers up, directory size and age, proxied sessions.

Read from the live gateway at scrape time (in the trio thread); owns only names and help.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from consrv.fleet.gateway import Gateway


class FleetCollector:
    """``consrv_fleet_*``: one ``peer`` label per configured peer (bounded by the config)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Metric]:
        gateway, now = self.gateway, self.gateway.clock()
        peers = gateway.directory.peers.values()
        up = GaugeMetricFamily(
            "consrv_fleet_peer_up",
            "1 if the gateway reads the peer's change feed now.",
            labels=["peer"],
        )
        age = GaugeMetricFamily(
            "consrv_fleet_peer_directory_age_seconds",
            "Seconds since the peer's feed last said anything (its entry's age).",
            labels=["peer"],
        )
        consoles = GaugeMetricFamily(
            "consrv_fleet_peer_consoles", "Consoles the peer reported last.", labels=["peer"]
        )
        reconnects = CounterMetricFamily(
            "consrv_fleet_peer_reconnects",
            "Times the gateway connected to the peer again.",
            labels=["peer"],
        )
        received = CounterMetricFamily(
            "consrv_fleet_peer_received_bytes",
            "Bytes the peer sent to users through the gateway (sessions and web pages).",
            labels=["peer"],
        )
        for peer in peers:
            up.add_metric([peer.name], 1 if peer.up else 0)
            age.add_metric([peer.name], now - peer.changed if peer.changed else float("nan"))
            consoles.add_metric([peer.name], len(peer.consoles))
            reconnects.add_metric([peer.name], gateway.links[peer.name].reconnects)
            received.add_metric([peer.name], gateway.received[peer.name])
        yield from (up, age, consoles, reconnects, received)
        yield GaugeMetricFamily(
            "consrv_fleet_directory_consoles",
            "Consoles in the gateway's directory, all peers.",
            value=gateway.directory.size(),
        )
        yield CounterMetricFamily(
            "consrv_fleet_proxied_sessions",
            "User sessions carried to a peer.",
            value=gateway.proxied,
        )
        yield GaugeMetricFamily(
            "consrv_fleet_proxied_sessions_active",
            "User sessions being carried to a peer now.",
            value=gateway.active,
        )
