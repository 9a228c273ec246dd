"""The web room's own resources: the thumbnail worker and the Prometheus registry. (Its reads and writes
go through the daemon's one door, `web.port.Core`.)"""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily

from comparimg.workers import WorkerLimits, WorkerPool


class Metrics:
    """Prometheus metrics of this app, in a registry of its own (several apps may live in one process)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.started = time.monotonic()
        self.requests = Counter(
            "comparimg_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.actions = Counter(
            "comparimg_sorter_actions",
            "sorter actions by kind and final state",
            ["kind", "state"],
            registry=self.registry,
        )
        self._status = _StatusCollector()
        self.registry.register(self._status)

    def render(self, status: dict[str, Any]) -> bytes:
        """Given the status document of `GET /api/status`, return every metric in Prometheus text format,
        its gauges taken from that document."""
        self._status.status = status
        return generate_latest(self.registry)


class _StatusCollector:
    """Turns the status document (counts, queue depth, decisions queued, uptime) into gauges."""

    def __init__(self):
        self.status: dict[str, Any] = {}

    def collect(self):
        """Yield the gauges of the last status given (called by prometheus-client at scrape time)."""
        status = self.status
        counts = status.get("counts") or {}
        gauge = GaugeMetricFamily(
            "comparimg_index", "index counts (files, groups, matches…)", labels=["what"]
        )
        for key, value in counts.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                gauge.add_metric([key], value)
        yield gauge
        for name, doc in (
            ("queue_depth", "files waiting to be hashed"),
            ("decisions_queued", "decisions waiting to be applied"),
            ("uptime_seconds", "seconds since the daemon started"),
        ):
            value = status.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                yield GaugeMetricFamily(f"comparimg_{name}", doc, value=value)


class LazyWorkerPool:
    """One worker process for decoding (thumbnails), started on first use and closed with the app."""

    def __init__(self, limits: WorkerLimits):
        self.limits = limits
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()

    def get(self) -> WorkerPool:
        """Return the pool, starting it if needed."""
        with self._lock:
            if self._pool is None:
                self._pool = WorkerPool(1, self.limits)
            return self._pool

    def close(self) -> None:
        """Stop the worker if it was started."""
        if self._pool is not None:
            self._pool.close()
