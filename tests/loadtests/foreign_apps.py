"""Small FastAPI services with contracts that are not servelab's — the kind of app a user runs —
served on 127.0.0.1 (port 0) in a thread for the protocol tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

READY_TIMEOUT_S = 10.0


def _score(row: list[float]) -> float:
    return round(sum(row) / len(row), 6) if row else 0.0


class ScoreRequest(BaseModel):
    features: list[list[float]]
    request_id: str


class Instances(BaseModel):
    instances: list[list[float]]


def scoring_app() -> FastAPI:
    """A user's own contract: ``POST /score {"features": rows, "request_id"}`` →
    ``{"results": [{"score": ...}, ...], "id": ...}``; ``/healthz``."""
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/score")
    def score(request: ScoreRequest) -> dict[str, object]:
        results = [{"score": _score(row)} for row in request.features]
        return {"results": results, "id": request.request_id}

    return app


def kserve_v1_app(model: str = "digits", width: int | None = None) -> FastAPI:
    """KServe's V1 contract as a FastAPI app: ``/v1/models/{name}`` and ``…:predict``;
    ``width``: rows of another width fail inside the model (500), as a real server's do."""
    app = FastAPI()

    @app.get(f"/v1/models/{model}")
    def ready() -> dict[str, object]:
        return {"name": model, "ready": True}

    @app.post(f"/v1/models/{model}:predict")
    def predict(request: Instances) -> JSONResponse:
        if width is not None and any(len(row) != width for row in request.instances):
            return JSONResponse({"error": "X has the wrong number of features"}, status_code=500)
        return JSONResponse({"predictions": [_score(row) for row in request.instances]})

    return app


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port, in a thread; yields its base URL, readiness polled."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test app did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=READY_TIMEOUT_S)
        sock.close()
