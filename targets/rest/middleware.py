"""Pure-ASGI observability middleware: metrics and one access-log line per request.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every request in extra
tasks and streams and costs a large share of a small route's throughput.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from targets.logs import JsonLogger
from targets.rest.metrics import RestMetrics

OTHER_ROUTE = "other"  # unknown paths share one label, so scanners cannot explode cardinality


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Collection[str],
        metrics: RestMetrics | None,
        logger: JsonLogger | None,
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.metrics = metrics
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state: dict[str, object] = scope.setdefault("state", {})
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            latency_s = time.perf_counter() - started
            path = scope["path"]
            route = path if path in self.routes else OTHER_ROUTE
            if self.metrics is not None:
                self.metrics.observe(route, status, latency_s)
            if self.logger is not None:
                request_id = state.get("request_id")
                self.logger.access(
                    transport="rest",
                    route=route,
                    status=status,
                    latency_ms=latency_s * 1e3,
                    request_id=request_id if isinstance(request_id, str) else None,
                )
