"""Pure-ASGI middleware: admission control, and metrics with one access-log line per request.

Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every request in extra
tasks and streams and costs a large share of a small route's throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from targets.admission import AdmissionGate
from targets.errors import Overloaded
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


class AdmissionMiddleware:
    """Sheds requests to ``paths`` past the gate's bound, before routing or reading the body.

    Other paths (health, readiness, metrics) pass untouched: a probe must see a live server
    while it is shedding, or an orchestrator would restart the one process doing useful work.
    ``refuse`` renders the answer, so the error's mapping stays at the app's one boundary.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        gate: AdmissionGate,
        paths: Collection[str],
        refuse: Callable[[Overloaded], ASGIApp],
    ) -> None:
        self.app = app
        self.gate = gate
        self.paths = frozenset(paths)
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            await self.gate.acquire()
        except Overloaded as exc:
            await self.refuse(exc)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.release()
