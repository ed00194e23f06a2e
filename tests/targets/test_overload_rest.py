"""REST overload: past ``--max-in-flight`` + ``--max-queue`` predict answers 503 + Retry-After.

In-process (ASGI transport, a model held open on demand) for the exact bound logic, then a real
server in a subprocess with ``synthetic:fixed:300ms`` for the CLI wiring and the socket path.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any
from urllib.parse import urlsplit

import httpx

from targets.admission import AdmissionGate
from targets.rest.app import create_app
from targets.rest.metrics import RestMetrics
from targets.service import PredictionService
from targets.spec import load_model
from tests.conftest import RunningTarget
from tests.targets.test_grpc_support import GateModel
from tests.targets.test_overload_gate import STEP_TIMEOUT_S, wait_until

ROW = {"instances": [1, 2, 3]}


def _sample(text: str, labels: str) -> float:
    for line in text.splitlines():
        if line.startswith("servelab_requests_total{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_past_the_bound_predict_is_503_with_retry_after_and_health_stays_up() -> None:
    model = GateModel()
    gate = AdmissionGate(2, 1)
    app = create_app(
        PredictionService(model, transport="rest"), metrics=RestMetrics(), admission=gate
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        held = [asyncio.create_task(client.post("/v1/predict", json=ROW)) for _ in range(3)]
        await wait_until(lambda: (gate.in_flight, gate.waiting) == (2, 1))
        shed = await asyncio.gather(
            *(client.post(path, json=ROW) for path in ["/v1/predict"] * 6 + ["/v2/predict"])
        )
        for response in shed:
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["error"]["code"] == "overloaded"
        # probes are never shed: a shedding server is alive and ready
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200
        model.release.set()
        answered = await asyncio.wait_for(asyncio.gather(*held), STEP_TIMEOUT_S)
        assert [response.status_code for response in answered] == [200, 200, 200]
        assert (gate.in_flight, gate.waiting, gate.shed) == (0, 0, 7)
        assert (await client.post("/v1/predict", json=ROW)).status_code == 200
        text = (await client.get("/metrics")).text
    assert _sample(text, 'route="/v1/predict",status="503"') == 6
    assert _sample(text, 'route="/v2/predict",status="503"') == 1
    assert _sample(text, 'route="/v1/predict",status="200"') == 4


async def test_a_model_that_raises_is_still_500_and_frees_its_slot() -> None:
    gate = AdmissionGate(1)
    service = PredictionService(
        load_model("tests.targets.sample_models:ExplodingModel"), transport="rest"
    )
    transport = httpx.ASGITransport(app=create_app(service, admission=gate))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):  # were the slot leaked, the second call would be shed
            response = await client.post("/v1/predict", json=ROW)
            assert response.status_code == 500
            assert response.json()["error"]["code"] == "model_error"
    assert (gate.in_flight, gate.shed) == (0, 0)


async def test_openapi_documents_the_503() -> None:
    service = PredictionService(load_model("reference"), transport="rest")
    transport = httpx.ASGITransport(app=create_app(service, admission=AdmissionGate(1)))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        spec = (await client.get("/openapi.json")).json()
    assert "503" in spec["paths"]["/v1/predict"]["post"]["responses"]


def _call(
    target: RunningTarget, method: str, path: str, body: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    parts = urlsplit(target.url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=STEP_TIMEOUT_S)
    try:
        connection.request(method, path, body, {"content-type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        if headers.get("content-type", "").startswith("application/json"):
            return response.status, headers, json.loads(raw)
        return response.status, headers, raw.decode()
    finally:
        connection.close()


def test_real_server_sheds_exactly_the_requests_over_the_bound(spawn_target: Any) -> None:
    target = spawn_target(
        "rest",
        "--model",
        "synthetic:fixed:300ms",
        "--max-in-flight",
        "2",
        "--max-queue",
        "1",
        "--log-level",
        "warning",
    )
    requests = 10
    start = threading.Barrier(requests, timeout=STEP_TIMEOUT_S)
    body = json.dumps(ROW).encode()

    def predict() -> tuple[int, dict[str, str], Any]:
        start.wait()  # all ten go out together, well inside the first 300 ms
        return _call(target, "POST", "/v1/predict", body)

    with ThreadPoolExecutor(requests) as pool:
        futures = [pool.submit(predict) for _ in range(requests)]
        shed = 0
        for done in as_completed(futures, timeout=STEP_TIMEOUT_S):
            shed += done.result()[0] == 503
            if shed == 7:  # the admitted three are most likely still in the model
                assert _call(target, "GET", "/healthz")[0] == 200
        answers = [future.result() for future in futures]
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200] * 3 + [503] * 7  # 2 in flight + 1 queued, the rest shed
    for status, headers, answer in answers:
        if status == 503:
            assert headers["retry-after"] == "1"
            assert answer["error"]["code"] == "overloaded"
        else:
            assert answer["predictions"] == [1.7]
    assert _call(target, "GET", "/healthz")[0] == 200
    assert _call(target, "POST", "/v1/predict", body)[0] == 200  # still serving
    metrics = _call(target, "GET", "/metrics")[2]
    assert _sample(metrics, 'route="/v1/predict",status="503"') == 7
    assert _sample(metrics, 'route="/v1/predict",status="200"') == 4
    assert target.process.poll() is None
