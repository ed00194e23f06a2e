"""Prometheus metrics of the REST target, per app (no global registry).

With several uvicorn workers, ``PROMETHEUS_MULTIPROC_DIR`` is set by the launcher before the
workers start; each worker then writes its samples to files there, and ``/metrics`` aggregates
every worker's (prometheus_client multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RestMetrics:
    """Requests and latency by route and status; label children cached for the hot path."""

    def __init__(self) -> None:
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        # In multiprocess mode values live in files, so metrics are not registered anywhere;
        # a fresh registry with a MultiProcessCollector reads them at scrape time.
        self.registry: CollectorRegistry | None = (
            None if self.multiprocess_dir else CollectorRegistry(auto_describe=True)
        )
        self._requests = Counter(
            "servelab_requests_total",
            "Requests answered, by route and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "servelab_request_latency_seconds",
            "Time from request received to response sent, by route and HTTP status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, status: int, latency_s: float) -> None:
        key = (route, status)
        children = self._children.get(key)
        if children is None:
            label = str(status)
            children = (
                self._requests.labels(route, label),
                self._latency.labels(route, label),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(latency_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every worker's metrics."""
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
