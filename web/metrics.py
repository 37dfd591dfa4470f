"""Prometheus metrics, one registry per app (tests build many apps in one process)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from qa.ask.service import QAService

#: Latency buckets in seconds: a question takes milliseconds, a reindex can take minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The app's metrics and the registry they live in."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "seedqa_http_requests",
            "HTTP requests handled, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "seedqa_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.documents = Gauge(
            "seedqa_index_documents", "Articles in the live index.", registry=self.registry
        )
        self.passages = Gauge(
            "seedqa_index_passages", "Passages in the live index.", registry=self.registry
        )
        self.last_build = Gauge(
            "seedqa_index_last_build_timestamp_seconds",
            "When this process last finished an index build (Unix time).",
            registry=self.registry,
        )
        self.last_build_duration = Gauge(
            "seedqa_index_last_build_duration_seconds",
            "How long this process's last index build took.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "seedqa_index_ready", "1 when an index generation is loaded.", registry=self.registry
        )

    def render(self, service: QAService | None) -> bytes:
        """The metrics in Prometheus text format, with the index gauges read now."""
        if service is not None and service.ready:
            gen = service.generation
            self.documents.set(len(gen.documents))
            self.passages.set(len(gen.passages))
            self.ready.set(1)
        else:
            self.ready.set(0)
        if service is not None and service.last_build is not None:
            self.last_build.set(service.last_build_at or 0.0)
            self.last_build_duration.set(service.last_build.took_ms / 1000)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template (not raw path).

    Raw paths would give every document URL its own time series; the template keeps the
    number of series bounded.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and record its status once it is answered."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            # The router stores the matched route in the (shared) scope dict.
            route = scope.get("route")
            label = route.path if isinstance(route, BaseRoute) and hasattr(route, "path") else ""
            label = label or "<unmatched>"
            method = scope.get("method", "")
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label, method).observe(time.perf_counter() - started)
