"""In-process drivers: no socket, no HTTP client — the service, or the ASGI app, called directly.

They measure what the model and the serving code cost without the network, and with a virtual
clock and a synthetic model they make runs exactly reproducible.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadtests.drivers.base import DriverBase, Reply, WireView, judge_answer
from loadtests.engine.workload import Payload
from targets.errors import ModelFailure, RequestError
from targets.models import Model
from targets.schema import Limits
from targets.service import PredictionService


class InProcessDriver(DriverBase):
    """Calls the prediction service (canonical validation + model) directly."""

    transport = "inprocess"
    in_process = True
    wire: WireView = "at_dispatch"  # no socket, no pool: nothing to wait for before the call

    def __init__(self, model: Model, *, limits: Limits | None = None) -> None:
        self.service = PredictionService(model, transport=self.transport, limits=limits)
        super().__init__()

    async def send(self, payload: Payload) -> Reply:
        service = self.service
        try:
            request = service.parse(payload.body, payload.api)
        except RequestError:
            return judge_answer(payload, False, None, True)
        try:
            answer = await service.predict_async(request)
        except ModelFailure:
            return Reply.failure("model_error")
        return judge_answer(payload, True, answer, False)


class AsgiDriver(DriverBase):
    """Calls the REST target's ASGI app directly: routing, middleware, JSON and all, no socket."""

    transport = "rest-inprocess"
    in_process = True
    wire: WireView = "at_dispatch"

    def __init__(self, app: Any) -> None:
        self.app = app
        super().__init__()

    async def send(self, payload: Payload) -> Reply:
        body = orjson.dumps(payload.body)
        path = "/v2/predict" if payload.api == "v2" else "/v1/predict"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"inprocess"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            "state": {},
        }
        received = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # the app itself blew up: a server fault
            return Reply.failure(f"app_{type(exc).__name__}")
        raw = b"".join(chunks)
        self.bytes_sent += len(body)
        self.bytes_received += len(raw)
        if status != 200:
            if 400 <= status < 500:
                return judge_answer(payload, False, None, True)
            return Reply.failure(f"http_{status}")
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = None
        return judge_answer(payload, True, answer, False)
