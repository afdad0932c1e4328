"""Prometheus metrics of one endpoint server, in a registry of its own.

A per-app :class:`~prometheus_client.CollectorRegistry` keeps several servers in one
process (tests, notebooks) from colliding in the global registry.

>>> m = EndpointMetrics()
>>> m.requests.labels(code="200", route="/v2/models/{name}/infer").inc()
>>> b"hybridnb_endpoint_requests_total" in m.render()
True
"""

from __future__ import annotations

from typing import Any

#: Seconds: from sub-millisecond CPU models to slow batches near the request timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                   1.0, 2.5, 5.0, 10.0, 30.0)
#: Rows per model call.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Help texts by family name as scraped (prometheus_client adds ``_total`` to counters):
#: the one copy, which monitoring's table of families (:mod:`hybridnb.monitor.names`) reads.
HELP = {
    "hybridnb_endpoint_requests_total": "HTTP requests answered, by status code and route.",
    "hybridnb_endpoint_request_duration_seconds": "Time from request to response, by route.",
    "hybridnb_endpoint_batch_size": "Rows in each model call.",
    "hybridnb_endpoint_queue_depth": "Admitted requests waiting for the model.",
    "hybridnb_endpoint_in_flight": "Requests in the model call now running.",
    "hybridnb_endpoint_rejected_total": "Requests refused by admission control (503).",
    "hybridnb_endpoint_cache_lookups_total": "Response cache lookups, by result.",
}


class EndpointMetrics:
    """The endpoint's counters, histograms and gauges.

    Labels are bounded: ``route`` is the route template (never the raw path) and
    ``code`` the HTTP status.
    """

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hybridnb_endpoint_requests", HELP["hybridnb_endpoint_requests_total"],
            ["code", "route"], registry=self.registry)
        self.duration = Histogram(
            "hybridnb_endpoint_request_duration_seconds",
            HELP["hybridnb_endpoint_request_duration_seconds"], ["route"],
            buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram(
            "hybridnb_endpoint_batch_size", HELP["hybridnb_endpoint_batch_size"],
            buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge(
            "hybridnb_endpoint_queue_depth", HELP["hybridnb_endpoint_queue_depth"],
            registry=self.registry)
        self.in_flight = Gauge(
            "hybridnb_endpoint_in_flight", HELP["hybridnb_endpoint_in_flight"],
            registry=self.registry)
        self.rejected = Counter(
            "hybridnb_endpoint_rejected", HELP["hybridnb_endpoint_rejected_total"],
            registry=self.registry)
        self.cache = Counter(
            "hybridnb_endpoint_cache_lookups", HELP["hybridnb_endpoint_cache_lookups_total"],
            ["result"], registry=self.registry)
        # labels() takes a lock and builds a key each time: resolve each child once.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    def observe(self, route: str, code: int, seconds: float) -> None:
        """Count one answered request."""
        pair = self._children.get((route, code))
        if pair is None:
            pair = (self.requests.labels(code=str(code), route=route),
                    self.duration.labels(route=route))
            self._children[(route, code)] = pair
        pair[0].inc()
        pair[1].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
