"""The REST app in-process (ASGI transport, no socket): routes, errors, metrics, logs, OpenAPI."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from targets.logs import JsonLogger
from targets.rest.app import create_app
from targets.rest.metrics import RestMetrics
from targets.schema import Limits, response_problem
from targets.service import PredictionService
from targets.spec import load_model

JSON_HEADERS = {"content-type": "application/json"}


def _app(
    spec: str = "reference", *, enable_v2: bool = True, limits: Limits | None = None
) -> tuple[FastAPI, io.StringIO]:
    log = io.StringIO()
    service = PredictionService(
        load_model(spec), transport="rest", limits=limits, enable_v2=enable_v2
    )
    app = create_app(service, metrics=RestMetrics(), logger=JsonLogger(log, "info"))
    return app, log


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[FastAPI], httpx.AsyncClient]]:
    """Clients bound to apps in-process, with each app's lifespan running."""
    clients: list[httpx.AsyncClient] = []

    def make(app: FastAPI) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_v1_predict_answers_the_canonical_schema(client_for: Any) -> None:
    app, _ = _app()
    async with app.router.lifespan_context(app):
        client = client_for(app)
        response = await client.post("/v1/predict", json={"instances": [1, 2, 3]})
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == [1.7]
    assert response_problem(body, expected_predictions=1) is None
    assert body["metadata"]["transport"] == "rest"
    assert body["metadata"]["api"] == "v1"
    assert response.headers["x-request-id"] == body["metadata"]["request_id"]


async def test_v2_predicts_several_rows_with_caller_id_and_options(client_for: Any) -> None:
    app, _ = _app()
    client = client_for(app)
    response = await client.post(
        "/v2/predict",
        json={"rows": [[1, 2, 3], [], [10]], "request_id": "req-7", "options": {"precision": 0}},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == [2.0, 0.0, 8.0]
    assert body["metadata"]["request_id"] == "req-7"
    assert body["metadata"]["api"] == "v2"


async def test_v1_clients_work_against_the_v2_server(client_for: Any) -> None:
    app, _ = _app()
    client = client_for(app)
    for path in ("/v1/predict", "/v2/predict"):
        response = await client.post(path, json={"instances": [4, 6]})
        assert response.status_code == 200
        assert response.json()["predictions"] == [4.1]


BAD_INPUTS = [
    pytest.param("/v1/predict", b"{", JSON_HEADERS, 400, "malformed_request", id="malformed"),
    pytest.param("/v1/predict", b"", JSON_HEADERS, 400, "malformed_request", id="empty"),
    pytest.param("/v1/predict", b"   ", JSON_HEADERS, 400, "malformed_request", id="blank"),
    pytest.param(
        "/v1/predict", b'{"instances":[1]}', {"content-type": "text/plain"}, 415,
        "unsupported_media_type", id="text-plain",
    ),
    pytest.param(
        "/v1/predict", b'{"instances":[1]}', {}, 415, "unsupported_media_type", id="no-type"
    ),
    pytest.param("/v1/predict", b"{}", JSON_HEADERS, 422, "invalid_request", id="missing"),
    pytest.param(
        "/v1/predict", b'{"instances":["a"]}', JSON_HEADERS, 422, "invalid_request", id="string"
    ),
    pytest.param(
        "/v1/predict", b'{"instances":[NaN]}', JSON_HEADERS, 422, "invalid_request", id="nan"
    ),
    pytest.param(
        "/v1/predict", b'{"instances":[Infinity]}', JSON_HEADERS, 422, "invalid_request",
        id="infinity",
    ),
    pytest.param(
        "/v1/predict", b'{"instances":[1e999]}', JSON_HEADERS, 422, "invalid_request",
        id="overflow",
    ),
    pytest.param(
        "/v1/predict", b'{"instances":[[1,2]]}', JSON_HEADERS, 422, "invalid_request",
        id="nested-v1",
    ),
    pytest.param(
        "/v1/predict", b"[1,2]", JSON_HEADERS, 422, "invalid_request", id="not-an-object"
    ),
    pytest.param(
        "/v2/predict", b'{"rows":[[1]],"model_version":"9"}', JSON_HEADERS, 409,
        "model_version_mismatch", id="version",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "content", "headers", "status", "code"), BAD_INPUTS)
async def test_bad_input_gets_a_specific_error_and_the_app_keeps_serving(
    client_for: Any, path: str, content: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    app, _ = _app()
    client = client_for(app)
    response = await client.post(path, content=content, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    healthy = await client.post("/v1/predict", json={"instances": [1]})
    assert healthy.status_code == 200


async def test_too_many_instances_is_422(client_for: Any) -> None:
    app, _ = _app(limits=Limits(max_instances=5))
    client = client_for(app)
    response = await client.post("/v1/predict", json={"instances": [1] * 6})
    assert response.status_code == 422
    assert "too many instances: 6 > limit 5" in response.json()["error"]["message"]


async def test_declared_body_over_the_limit_is_413(client_for: Any) -> None:
    app, _ = _app(limits=Limits(max_body_bytes=1000))
    client = client_for(app)
    response = await client.post("/v1/predict", json={"instances": [1.5] * 400})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_chunked_body_over_the_limit_is_413(client_for: Any) -> None:
    app, _ = _app(limits=Limits(max_body_bytes=1000))
    client = client_for(app)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"instances": ['
        for _ in range(300):
            yield b"1.5, "
        yield b"1]}"

    response = await client.post("/v1/predict", content=chunks(), headers=JSON_HEADERS)
    assert response.status_code == 413


async def test_v2_disabled_answers_404_and_v1_still_works(client_for: Any) -> None:
    app, _ = _app(enable_v2=False)
    client = client_for(app)
    response = await client.post("/v2/predict", json={"rows": [[1]]})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "api_version_disabled"
    assert (await client.post("/v1/predict", json={"instances": [1]})).status_code == 200


async def test_a_model_that_raises_is_500_not_a_client_error(client_for: Any) -> None:
    app, _ = _app("tests.targets.sample_models:ExplodingModel")
    client = client_for(app)
    response = await client.post("/v1/predict", json={"instances": [1]})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "model_error"
    # a bad request to a broken model is still the client's mistake
    assert (await client.post("/v1/predict", json={})).status_code == 422


async def test_unknown_routes_and_methods_answer_the_error_body(client_for: Any) -> None:
    app, _ = _app()
    client = client_for(app)
    missing = await client.get("/v3/predict")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.get("/v1/predict")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "http_error"


async def test_health_and_readiness(client_for: Any) -> None:
    app, _ = _app()
    client = client_for(app)
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 503  # lifespan not started: not ready
    async with app.router.lifespan_context(app):
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["model_name"] == "reference"
    assert (await client.get("/readyz")).status_code == 503  # drained


def _sample(text: str, name: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_metrics_count_requests_and_latency_by_route_and_status(client_for: Any) -> None:
    app, _ = _app()
    client = client_for(app)
    for _ in range(3):
        await client.post("/v1/predict", json={"instances": [1]})
    await client.post("/v1/predict", json={})
    await client.post("/v2/predict", json={"rows": [[1]]})
    await client.get("/nowhere/1")
    text = (await client.get("/metrics")).text
    counter = "servelab_requests_total"
    assert _sample(text, counter, 'route="/v1/predict",status="200"') == 3
    assert _sample(text, counter, 'route="/v1/predict",status="422"') == 1
    assert _sample(text, counter, 'route="/v2/predict",status="200"') == 1
    assert _sample(text, counter, 'route="other",status="404"') == 1
    count = "servelab_request_latency_seconds_count"
    assert _sample(text, count, 'route="/v1/predict",status="200"') == 3
    assert "servelab_request_latency_seconds_bucket" in text


async def test_one_json_access_log_line_per_request(client_for: Any) -> None:
    app, log = _app()
    client = client_for(app)
    ok = await client.post("/v2/predict", json={"instances": [1], "request_id": "abc"})
    await client.post("/v1/predict", content=b"{", headers=JSON_HEADERS)
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert len(lines) == 2
    first, second = lines
    assert ok.status_code == 200
    assert {"ts", "transport", "route", "status", "latency_ms", "request_id"} <= first.keys()
    assert (first["route"], first["status"], first["request_id"]) == ("/v2/predict", 200, "abc")
    assert (second["status"], second["request_id"]) == (400, None)
    assert first["latency_ms"] >= 0


async def test_log_level_warning_silences_access_logs(client_for: Any) -> None:
    log = io.StringIO()
    service = PredictionService(load_model("reference"), transport="rest")
    app = create_app(service, logger=JsonLogger(log, "warning"))
    await client_for(app).post("/v1/predict", json={"instances": [1]})
    assert log.getvalue() == ""


async def test_openapi_documents_the_canonical_schema(client_for: Any) -> None:
    app, _ = _app()
    spec = (await client_for(app).get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    assert {"PredictRequestV1", "PredictRequestV2", "PredictResponse", "ErrorBody"} <= set(schemas)
    v1 = spec["paths"]["/v1/predict"]["post"]
    assert v1["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/PredictRequestV1"
    )
    assert {"200", "400", "413", "415", "422", "500"} <= set(v1["responses"])
    assert {"/healthz", "/readyz", "/metrics", "/v2/predict"} <= set(spec["paths"])
