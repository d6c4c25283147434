"""Prometheus metrics: ``GET /metrics``, and the counters the middleware, the error handlers,
the pools and the batchers move.

Under ``make run`` the process has ``PROMETHEUS_MULTIPROC_DIR`` set (prometheus-client's
multiprocess mode): every worker writes its values to files there and ``/metrics``, whichever
worker answers it, sums them, so the numbers cover all workers. Without it the values live in
this process only. Each app has a registry of its own (tests build many apps in one process).
"""

import os
from collections.abc import Callable

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Anything else (httptools accepts a few dozen methods) is counted as "other": bounded labels.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_LABELS = ("method", "route", "status")


def multiprocess_mode() -> bool:
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "heroes_http_requests", "HTTP requests answered", REQUEST_LABELS, registry=registry
        )
        self.latency = Histogram(
            "heroes_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer",
            REQUEST_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "heroes_http_requests_in_flight",
            "HTTP requests being served now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_in_use = Gauge(
            "heroes_db_connections_in_use",
            "Database connections checked out of the pool now",
            ("pool",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.db_errors = Counter(
            "heroes_db_errors",
            "Database failures answered to clients, by exception class and status",
            ("error", "status"),
            registry=registry,
        )
        self.auth_failures = Counter(
            "heroes_auth_failures",
            "Requests refused for a missing, malformed or invalid API key",
            ("reason",),
            registry=registry,
        )
        self.batch_size = Histogram(
            "heroes_batch_size",
            "Requests served by one database round trip (reads, pages) or transaction (writes)",
            ("batcher",),
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.replica_lag = Gauge(
            "heroes_replica_lag_seconds",
            "How far the read replica's replay trails the primary, as last measured",
            registry=registry,
            multiprocess_mode="max",
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in METHODS:
            method = "other"
        key = (method, route, status)
        if (children := self._request_children.get(key)) is None:
            labels = (method, route, str(status))
            children = (self.requests.labels(*labels), self.latency.labels(*labels))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def count_db_error(self, error: str, status: int) -> None:
        """One more database failure answered ``status``; ``error``: the driver's class name."""
        self.db_errors.labels(error, str(status)).inc()

    def count_auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(reason).inc()

    def batch_observer(self, batcher: str) -> Callable[[int], None]:
        return self.batch_size.labels(batcher).observe

    def watch_pool(self, engine: AsyncEngine, pool: str) -> None:
        """Keep ``heroes_db_connections_in_use{pool=...}`` equal to the engine's checked-out
        connections (set, not inc/dec: a checkout that fails its ping and is retried cannot skew
        it). The checkin event runs before the connection is back in the pool."""
        gauge = self.pool_in_use.labels(pool)
        sync_pool = engine.sync_engine.pool
        gauge.set(0)

        @event.listens_for(sync_pool, "checkout")
        def _checked_out(*_args: object) -> None:
            gauge.set(sync_pool.checkedout())  # type: ignore[attr-defined]

        @event.listens_for(sync_pool, "checkin")
        def _checked_in(*_args: object) -> None:
            gauge.set(sync_pool.checkedout() - 1)  # type: ignore[attr-defined]

    def expose(self) -> bytes:
        if multiprocess_mode():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def process_exited(self) -> None:
        """Drop this worker's live gauges (in flight, pool) from the sums (lifespan shutdown)."""
        if multiprocess_mode():
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def metrics_router(metrics: Metrics) -> APIRouter:
    """``GET /metrics``, answering from ``metrics``."""
    router = APIRouter(tags=["operations"])

    @router.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(metrics.expose(), media_type=CONTENT_TYPE_LATEST)

    return router
