"""The REST target's Open Inference Protocol (OIP v2 / KServe V2) routes.

Served beside servelab's own contract, with no path clash: OIP is ``GET /v2``,
``/v2/health/{live,ready}`` and ``/v2/models/{name}[/versions/{version}][/ready|/infer]``, while
servelab's contract v2 stays ``POST /v2/predict`` (no OIP path is ``/v2/predict``, and ``predict``
is not a model route's last segment). Health answers are status only with an empty body (200
true, 400 false, as the spec asks); every error is OIP's ``{"error": string}``: an unknown model
or version 404, a bad request 400 (413 over the size limit, 415 for a content type that is not
JSON; a missing one is taken as JSON, as OIP clients often send none), a model failure 500,
overload 503 with ``Retry-After``. The codec is ``targets.oip``; the pydantic models here only
document the routes in ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, Final, Literal

import orjson
from fastapi import FastAPI, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from targets import oip
from targets.admission import AdmissionGate
from targets.errors import (
    ModelFailure,
    Overloaded,
    RequestError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from targets.models import Model
from targets.schema import Limits, PredictRequest
from targets.service import PredictionService

JSON: Final = "application/json"
TAG: Final = "Open Inference Protocol"
SERVER_PATHS: Final = ("/v2", "/v2/health/live", "/v2/health/ready")
_PREFIXES: Final = ("/v2/models/", "/v2/health/")

ReadBody = Callable[[Request, Limits], Awaitable[object]]
Datatype = Literal[
    "BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
    "FP32", "FP64",
]  # fmt: skip


class OipError(BaseModel):
    """OIP's error body: ``{"error": string}``."""

    error: str


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


Parameters = dict[str, str | int | float | bool]


class InferInput(BaseModel):
    """The one input tensor: ``[rows, features]`` or ``[features]``, data flat row-major."""

    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any]


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Literal["output-0"]
    parameters: Parameters | None = None


class InferRequestBody(BaseModel):
    """``$inference_request``: exactly one input tensor."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[InferInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestedOutput] | None = None


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float]


class InferResponse(BaseModel):
    """``$inference_response``: ``output-0``, FP64, shape ``[rows, 1]``."""

    model_name: str
    model_version: str
    id: str
    outputs: list[InferOutput]


def schema_components() -> dict[str, Any]:
    """The request body's JSON schema, for ``components.schemas`` of the OpenAPI document."""
    schema = InferRequestBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = schema.pop("$defs", {})
    components["InferRequestBody"] = schema
    return components


def route_paths(model: Model) -> tuple[str, ...]:
    """Every OIP path of ``model`` (bounded: one model), for metrics and access-log labels."""
    paths: list[str] = list(SERVER_PATHS)
    for base in (f"/v2/models/{model.name}", f"/v2/models/{model.name}/versions/{model.version}"):
        paths += [base, f"{base}/ready", f"{base}/infer"]
    return tuple(paths)


def is_oip_path(path: str) -> bool:
    """Whether an unrouted ``path`` is one an OIP client would ask (its 404 is OIP-shaped)."""
    return path == "/v2" or path.startswith(_PREFIXES)


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: Exception) -> Response:
    """OIP's error answers: ``{"error": message}`` with the status the module docstring lists."""
    if isinstance(exc, RequestError):
        status = {RequestTooLarge: 413, UnsupportedMediaType: 415}.get(type(exc), 400)
        return json_response({"error": exc.message}, status)
    if isinstance(exc, Overloaded):
        return json_response({"error": exc.message}, 503, {"retry-after": str(exc.retry_after_s)})
    if isinstance(exc, ModelFailure):
        return json_response({"error": str(exc)}, 500)
    return json_response({"error": f"internal error: unexpected {type(exc).__name__}"}, 500)


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "A request that breaks the protocol or the model's input",
        404: "No such model or version on this server",
        413: "Body over the size limit",
        415: "Content type is not JSON",
        500: "The model failed (a server fault)",
        503: "Overloaded: past the in-flight and queue bound; retry after `Retry-After` s",
    }
    return {status: {"model": OipError, "description": descriptions[status]} for status in statuses}


def _status_only(true: str, false: str, *errors: int) -> dict[int | str, dict[str, Any]]:
    """A health answer: the status is the answer, the body empty."""
    return {200: {"description": true}, 400: {"description": false}, **_documented(*errors)}


def _name(model: Model) -> Any:
    return Path(description="The model's name", json_schema_extra={"enum": [model.name]})


def _version(model: Model) -> Any:
    return Path(description="The model's version", json_schema_extra={"enum": [model.version]})


def add_routes(
    app: FastAPI,
    service: PredictionService,
    *,
    read_body: ReadBody,
    admission: AdmissionGate | None,
) -> None:
    """Add every OIP route for ``service``'s model to ``app``.

    ``read_body`` reads and decodes a JSON body within the limits (the app's one reader);
    ``admission`` bounds ``/infer`` as it bounds the native predict routes (``None``: no bound).
    """
    _add_server_routes(app)
    _add_model_routes(app, service.model)
    _add_infer_routes(app, service, read_body, admission)


def _add_server_routes(app: FastAPI) -> None:
    @app.get(
        "/v2/health/live",
        tags=[TAG],
        response_class=Response,
        responses=_status_only("Live", "Not live"),
    )
    async def oip_server_live() -> Response:
        """Server live: the process answers."""
        return Response(status_code=200)

    @app.get(
        "/v2/health/ready",
        tags=[TAG],
        response_class=Response,
        responses=_status_only("Ready", "Not ready"),
    )
    async def oip_server_ready(request: Request) -> Response:
        """Server ready: the model is loaded and the server is not draining."""
        return Response(status_code=200 if request.app.state.ready else 400)

    @app.get("/v2", tags=[TAG], response_model=ServerMetadataResponse)
    async def oip_server_metadata() -> Response:
        """Server metadata."""
        return json_response(oip.server_metadata())


def _model_ready(request: Request, model: Model, name: str, version: str | None) -> Response:
    problem = oip.unknown_model(model, name, version)
    if problem is not None:
        return json_response({"error": problem}, 404)
    return Response(status_code=200 if request.app.state.ready else 400)


def _model_metadata(model: Model, name: str, version: str | None) -> Response:
    problem = oip.unknown_model(model, name, version)
    if problem is not None:
        return json_response({"error": problem}, 404)
    return json_response(oip.model_metadata(model))


def _add_model_routes(app: FastAPI, model: Model) -> None:
    metadata = {
        "tags": [TAG],
        "response_model": ModelMetadataResponse,
        "responses": _documented(404),
    }
    ready = {
        "tags": [TAG],
        "response_class": Response,
        "responses": _status_only("Ready", "Not ready", 404),
    }

    @app.get("/v2/models/{name}", **metadata)  # type: ignore[arg-type]
    async def oip_model_metadata(name: str = _name(model)) -> Response:
        """Model metadata: its one input and one output tensor."""
        return _model_metadata(model, name, None)

    @app.get("/v2/models/{name}/versions/{version}", **metadata)  # type: ignore[arg-type]
    async def oip_model_version_metadata(
        name: str = _name(model), version: str = _version(model)
    ) -> Response:
        """Model metadata of one version."""
        return _model_metadata(model, name, version)

    @app.get("/v2/models/{name}/ready", **ready)  # type: ignore[arg-type]
    async def oip_model_ready(request: Request, name: str = _name(model)) -> Response:
        """Model ready."""
        return _model_ready(request, model, name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", **ready)  # type: ignore[arg-type]
    async def oip_model_version_ready(
        request: Request, name: str = _name(model), version: str = _version(model)
    ) -> Response:
        """Model ready, for one version."""
        return _model_ready(request, model, name, version)


def _admitted(admission: AdmissionGate | None) -> AbstractAsyncContextManager[None]:
    return admission.admit() if admission is not None else nullcontext()


async def _infer(
    request: Request,
    service: PredictionService,
    name: str,
    version: str | None,
    read_body: ReadBody,
    admission: AdmissionGate | None,
) -> Response:
    """One inference: the route's one error boundary."""
    model = service.model
    problem = oip.unknown_model(model, name, version)
    if problem is not None:
        return json_response({"error": problem}, 404)
    try:
        async with _admitted(admission):  # taken before the body is read, as the native routes do
            body = await read_body(request, service.limits)
            parsed = oip.parse_infer_body(body, model, service.limits)
            answer = await service.predict_async(
                PredictRequest(rows=parsed.rows, api="v2", request_id=parsed.request_id)
            )
    except Exception as exc:  # translated to 4xx/5xx here and nowhere else
        return error_response(exc)
    request_id: str = answer["metadata"]["request_id"]
    request.scope.setdefault("state", {})["request_id"] = request_id  # for the access log
    return json_response(oip.infer_response(model, request_id, answer["predictions"]))


def _add_infer_routes(
    app: FastAPI, service: PredictionService, read_body: ReadBody, admission: AdmissionGate | None
) -> None:
    model = service.model
    options: dict[str, Any] = {
        "tags": [TAG],
        "response_model": InferResponse,
        "responses": _documented(400, 404, 413, 415, 500, 503),
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": {"$ref": "#/components/schemas/InferRequestBody"}}},
            }
        },
    }

    @app.post("/v2/models/{name}/infer", **options)
    async def oip_model_infer(request: Request, name: str = _name(model)) -> Response:
        """Inference: one input tensor of shape `[rows, features]`, one FP64 output per row."""
        return await _infer(request, service, name, None, read_body, admission)

    @app.post("/v2/models/{name}/versions/{version}/infer", **options)
    async def oip_model_version_infer(
        request: Request, name: str = _name(model), version: str = _version(model)
    ) -> Response:
        """Inference on one version of the model."""
        return await _infer(request, service, name, version, read_body, admission)
