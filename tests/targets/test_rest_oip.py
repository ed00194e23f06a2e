"""The REST target's Open Inference Protocol routes, in-process (ASGI transport, no socket)."""

from __future__ import annotations

import io
import json
import math
from array import array
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.admission import AdmissionGate
from targets.errors import RequestError
from targets.logs import JsonLogger
from targets.models import Model, ReferenceModel
from targets.oip import DATATYPES, parse_infer_body
from targets.rest.app import create_app
from targets.rest.metrics import RestMetrics
from targets.schema import Limits
from targets.service import PredictionService
from targets.spec import load_model

INFER = "/v2/models/reference/infer"
ROWS = [[1.0, 2.0, 3.0], [0.5, -4.0, 10.0]]


class ThreeFeatures(ReferenceModel):
    """The reference model, declaring that it takes three features."""

    name = "three"
    version = "7"
    features = 3


def tensor(data: Any, shape: list[int], datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "input-0", "datatype": datatype, "shape": shape, "data": data}]
    } | extra


def flat(rows: Sequence[Sequence[float]]) -> list[float]:
    return [value for row in rows for value in row]


def output(body: dict[str, Any]) -> tuple[list[int], list[float]]:
    (out,) = body["outputs"]
    assert (out["name"], out["datatype"]) == ("output-0", "FP64")
    return out["shape"], out["data"]


class Served:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, log: io.StringIO) -> None:
        self.app = app
        self.client = client
        self.log = log


async def _serve(
    model: Model, *, limits: Limits | None = None, admission: AdmissionGate | None = None
) -> AsyncIterator[Served]:
    log = io.StringIO()
    service = PredictionService(model, transport="rest", limits=limits)
    app = create_app(
        service, metrics=RestMetrics(), logger=JsonLogger(log, "info"), admission=admission
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Served(app, client, log)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for running in _serve(load_model("reference")):
        yield running


async def test_server_metadata_names_servelab_and_no_extensions(served: Served) -> None:
    response = await served.client.get("/v2")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["extensions"]) == ("servelab", [])
    assert isinstance(body["version"], str)
    assert body["version"]


@pytest.mark.parametrize("path", ["/v2/models/reference", "/v2/models/reference/versions/1.0"])
async def test_model_metadata_lists_one_input_and_one_output(served: Served, path: str) -> None:
    response = await served.client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "name": "reference",
        "versions": ["1.0"],
        "platform": "servelab",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, -1]}],
        "outputs": [{"name": "output-0", "datatype": "FP64", "shape": [-1, 1]}],
    }


async def test_a_declared_feature_count_is_published_and_enforced() -> None:
    async for running in _serve(ThreeFeatures()):
        meta = (await running.client.get("/v2/models/three")).json()
        assert meta["inputs"][0]["shape"] == [-1, 3]
        good = await running.client.post("/v2/models/three/infer", json=tensor(flat(ROWS), [2, 3]))
        bad = await running.client.post("/v2/models/three/infer", json=tensor([1, 2], [1, 2]))
    assert output(good.json()) == ([2, 1], ReferenceModel().predict(ROWS))
    assert bad.status_code == 400
    assert "takes 3 features, got 2" in bad.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/reference/ready",
        "/v2/models/reference/versions/1.0/ready",
    ],
)
async def test_health_is_the_status_with_an_empty_body(served: Served, path: str) -> None:
    response = await served.client.get(path)
    assert (response.status_code, response.content) == (200, b"")


async def test_a_draining_server_says_not_ready_with_a_4xx() -> None:
    async for running in _serve(load_model("reference")):
        running.app.state.ready = False  # what the lifespan's exit sets
        ready = await running.client.get("/v2/health/ready")
        model_ready = await running.client.get("/v2/models/reference/ready")
        live = await running.client.get("/v2/health/live")
    assert (ready.status_code, model_ready.status_code, live.status_code) == (400, 400, 200)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/other"),
        ("GET", "/v2/models/other/ready"),
        ("GET", "/v2/models/reference/versions/9/ready"),
        ("GET", "/v2/models/reference/versions/9"),
        ("POST", "/v2/models/other/infer"),
        ("POST", "/v2/models/reference/versions/9/infer"),
        ("GET", "/v2/models/reference/nothing/here"),
    ],
)
async def test_unknown_model_or_version_is_404_with_oip_error(
    served: Served, method: str, path: str
) -> None:
    response = await served.client.request(method, path, json=tensor([1.0], [1, 1]))
    assert response.status_code == 404
    assert set(response.json()) == {"error"}
    assert isinstance(response.json()["error"], str)


@pytest.mark.parametrize("path", [INFER, "/v2/models/reference/versions/1.0/infer"])
async def test_fp64_rows_get_the_models_own_predictions(served: Served, path: str) -> None:
    response = await served.client.post(path, json=tensor(flat(ROWS), [2, 3], id="req-7"))
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("reference", "1.0", "req-7")
    assert output(body) == ([2, 1], ReferenceModel().predict(ROWS))


async def test_natural_nested_data_and_a_one_dimensional_shape(served: Served) -> None:
    nested = await served.client.post(INFER, json=tensor(ROWS, [2, 3]))
    one_row = await served.client.post(INFER, json=tensor(ROWS[1], [3]))
    assert output(nested.json()) == ([2, 1], ReferenceModel().predict(ROWS))
    assert output(one_row.json()) == ([1, 1], ReferenceModel().predict([ROWS[1]]))


async def test_fp32_values_are_taken_at_single_precision(served: Served) -> None:
    rows = [[1.1, 2.2, 3.3]]
    response = await served.client.post(INFER, json=tensor(flat(rows), [1, 3], "FP32"))
    single = [array("f", rows[0]).tolist()]
    assert output(response.json()) == ([1, 1], ReferenceModel().predict(single))
    assert single != rows  # the rounding is visible in the values the model saw


@pytest.mark.parametrize(
    ("datatype", "data", "rows"),
    [
        ("INT64", [3, -7, 2**40, 5], [[3.0, -7.0], [2.0**40, 5.0]]),
        ("INT8", [127, -128, 0, 1], [[127.0, -128.0], [0.0, 1.0]]),
        ("UINT16", [65535, 0, 9, 1], [[65535.0, 0.0], [9.0, 1.0]]),
        ("BOOL", [True, False, True, True], [[1.0, 0.0], [1.0, 1.0]]),
    ],
)
async def test_integer_and_bool_tensors_are_numbers(
    served: Served, datatype: str, data: list[Any], rows: list[list[float]]
) -> None:
    response = await served.client.post(INFER, json=tensor(data, [2, 2], datatype))
    assert response.status_code == 200, response.text
    assert output(response.json()) == ([2, 1], ReferenceModel().predict(rows))


async def test_a_request_without_id_gets_a_fresh_one(served: Served) -> None:
    first = (await served.client.post(INFER, json=tensor([1.0], [1, 1]))).json()["id"]
    second = (await served.client.post(INFER, json=tensor([1.0], [1, 1]))).json()["id"]
    assert first != second
    assert first.startswith("rest-")


async def test_a_body_without_content_type_is_taken_as_json(served: Served) -> None:
    body = json.dumps(tensor([1.0, 3.0], [1, 2])).encode()
    response = await served.client.post(INFER, content=body)
    assert output(response.json()) == ([1, 1], ReferenceModel().predict([[1.0, 3.0]]))
    text = await served.client.post(INFER, content=body, headers={"content-type": "text/plain"})
    assert text.status_code == 415


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (tensor([1.0, 2.0, 3.0], [2, 2]), "inputs[0].data has 3 values"),
        (tensor([1.0] * 8, [2, 2, 2]), "inputs[0].shape"),
        (tensor(["a", "b"], [1, 2], "BYTES"), "BYTES"),
        (tensor([1.0], [1, 1], "FP16"), "FP16"),
        ({"id": "x"}, "missing required field 'inputs'"),
        ({"inputs": []}, "exactly one tensor"),
        ({"inputs": tensor([1], [1])["inputs"] * 2}, "exactly one tensor"),
        (tensor([1.5, 2.0], [1, 2], "INT32"), "inputs[0].data[0]"),
        (tensor([128, 2], [1, 2], "INT8"), "inputs[0].data[0]"),
        (tensor([1, 2], [1, 2], "BOOL"), "inputs[0].data[0] must be true or false"),
        (tensor([True, 2.0], [1, 2]), "inputs[0].data[0]"),
        (tensor([1.0, 2.0], [0, 2]), "inputs[0].shape[0]"),
        (tensor([1.0, 2.0], [1, -2]), "inputs[0].shape[1]"),
        (tensor([[1.0], [2.0, 3.0]], [2, 1]), "inputs[0].data[1]"),
        (tensor([1.0], [1, 1], outputs=[{"name": "prob"}]), "outputs[0].name"),
        (tensor([1.0], [1, 1], id=5), "id must be a string"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    served: Served, body: object, names: str
) -> None:
    response = await served.client.post(INFER, json=body)
    assert response.status_code == 400, response.text
    assert names in response.json()["error"]


async def test_non_finite_values_are_refused(served: Served) -> None:
    body = '{"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1, NaN]}]}'
    response = await served.client.post(
        INFER, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "inputs[0].data[1]" in response.json()["error"]


async def test_the_canonical_instance_limit_applies() -> None:
    async for running in _serve(load_model("reference"), limits=Limits(max_instances=4)):
        fits = await running.client.post(INFER, json=tensor([1.0] * 4, [2, 2]))
        over = await running.client.post(INFER, json=tensor([1.0] * 6, [2, 3]))
    assert fits.status_code == 200
    assert over.status_code == 400
    assert "too many instances" in over.json()["error"]


async def test_a_failing_model_is_500() -> None:
    async for running in _serve(load_model("tests.targets.sample_models:ExplodingModel")):
        response = await running.client.post(
            "/v2/models/exploding/infer", json=tensor([1.0], [1, 1])
        )
    assert response.status_code == 500
    assert "RuntimeError" in response.json()["error"]


async def test_past_the_admission_bound_infer_is_503_and_metadata_still_answers() -> None:
    gate = AdmissionGate(1, 0)
    async for running in _serve(load_model("reference"), admission=gate):
        await gate.acquire()  # the one slot is taken
        shed = await running.client.post(INFER, json=tensor([1.0], [1, 1]))
        meta = await running.client.get("/v2/models/reference")
        gate.release()
        served_again = await running.client.post(INFER, json=tensor([1.0], [1, 1]))
    assert (shed.status_code, shed.headers["retry-after"]) == (503, "1")
    assert "overloaded" in shed.json()["error"]
    assert (meta.status_code, served_again.status_code) == (200, 200)


async def test_metrics_and_access_log_count_oip_routes_by_path(served: Served) -> None:
    await served.client.post(INFER, json=tensor([1.0], [1, 1], id="logged-1"))
    await served.client.get("/v2/models/reference/ready")
    await served.client.get("/v2/models/unknown")
    metrics = (await served.client.get("/metrics")).text
    assert 'route="/v2/models/reference/infer",status="200"' in metrics
    assert 'route="/v2/models/reference/ready",status="200"' in metrics
    assert 'route="other",status="404"' in metrics  # unknown names share one label
    lines = [json.loads(line) for line in served.log.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert {"route": INFER, "status": 200, "request_id": "logged-1"}.items() <= access[0].items()


async def test_servelab_v2_predict_keeps_its_path(served: Served) -> None:
    response = await served.client.post("/v2/predict", json={"rows": ROWS})
    assert response.status_code == 200
    assert response.json()["predictions"] == ReferenceModel().predict(ROWS)


async def test_openapi_documents_every_oip_route(served: Served) -> None:
    paths = (await served.client.get("/openapi.json")).json()["paths"]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/versions/{version}/infer",
    } <= set(paths)
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert {"200", "400", "404", "500", "503"} <= set(infer["responses"])


async def test_rows_of_no_features_are_empty_rows(served: Served) -> None:
    """Found by fuzzing: shape ``[0]`` (one row, no features) was a 500."""
    response = await served.client.post(INFER, json=tensor([], [0], "BOOL"))
    assert output(response.json()) == ([1, 1], ReferenceModel().predict([[]]))
    several = await served.client.post(INFER, json=tensor([], [3, 0]))
    assert output(several.json()) == ([3, 1], [0.0, 0.0, 0.0])


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=3)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)
_TENSORS = st.fixed_dictionaries(
    {
        "name": st.text(max_size=3) | _SCALARS,
        "datatype": st.sampled_from([*DATATYPES, "BYTES", "FP16", "x"]) | _SCALARS,
        "shape": st.lists(st.integers(-2, 4) | _SCALARS, max_size=3) | _JSON,
        "data": st.lists(_SCALARS | st.lists(_SCALARS, max_size=4), max_size=9) | _JSON,
    }
)
_BODIES = st.fixed_dictionaries(
    {"inputs": st.lists(_TENSORS, max_size=2) | _JSON},
    optional={"id": _SCALARS, "outputs": _JSON, "parameters": _JSON},
)


@settings(max_examples=1500, deadline=None, database=None, derandomize=True)
@given(body=_BODIES | _JSON)
def test_any_json_body_is_rows_or_a_request_error(body: object) -> None:
    """The codec's only answers are rows of finite floats or a ``RequestError``: never a 500."""
    try:
        parsed = parse_infer_body(body, ReferenceModel(), Limits())
    except RequestError:
        return
    assert parsed.rows
    assert all(
        type(value) is float and math.isfinite(value) for row in parsed.rows for value in row
    )
