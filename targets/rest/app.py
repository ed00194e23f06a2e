"""The REST target's FastAPI app, built by a factory that takes the model by injection.

Request bodies are read, size-checked and parsed here (orjson), then validated by the canonical
stdlib validator, so REST answers exactly what every other transport answers. The pydantic models
in ``api_models`` only document the contract in ``/openapi.json``. The app also serves the Open
Inference Protocol (``targets.rest.oip``: ``/v2``, ``/v2/health/...``, ``/v2/models/...``) beside
servelab's own ``/v1/predict`` and ``/v2/predict``, which keep their paths (no clash).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException

from targets.admission import AdmissionGate
from targets.errors import (
    ApiVersionDisabled,
    MalformedRequest,
    ModelFailure,
    ModelVersionMismatch,
    Overloaded,
    RequestError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from targets.logs import JsonLogger
from targets.rest import api_models, oip
from targets.rest.metrics import RestMetrics
from targets.rest.middleware import AdmissionMiddleware, ObservabilityMiddleware
from targets.schema import ApiVersion, Limits, check_body_size
from targets.service import PredictionService

JSON = "application/json"
# A client-chosen request id is echoed in a header only when it is a legal header value (visible
# ASCII, inner blanks): anything else would fail latin-1 encoding (a 500) or smuggle a header.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")
PREDICT_ROUTES = {"v1": "/v1/predict", "v2": "/v2/predict"}
ROUTES = (*PREDICT_ROUTES.values(), "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
_STATUS: dict[type[RequestError], int] = {
    MalformedRequest: 400,
    UnsupportedMediaType: 415,
    RequestTooLarge: 413,
    ApiVersionDisabled: 404,
    ModelVersionMismatch: 409,
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": api_models.ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed or empty JSON"),
        (404, "API version disabled on this server"),
        (409, "Requested model_version is not the one served"),
        (413, "Body over the size limit"),
        (415, "Content type is not application/json"),
        (422, "Body violates the canonical schema"),
        (500, "The model failed (a server fault)"),
        (503, "Overloaded: past the in-flight and queue bound; retry after `Retry-After` s"),
    )
}


def _json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: Exception) -> Response:
    """The one place REST turns errors into answers: client mistakes 4xx, server faults 500,
    overload 503 with ``Retry-After`` (RFC 9110: the client may come back after that long)."""
    if isinstance(exc, RequestError):
        return _json_response(exc.to_body(), _STATUS.get(type(exc), 422))
    if isinstance(exc, Overloaded):
        return _json_response(exc.to_body(), 503, {"retry-after": str(exc.retry_after_s)})
    if isinstance(exc, ModelFailure):
        return _json_response({"error": {"code": exc.code, "message": str(exc)}}, 500)
    return _json_response(
        {"error": {"code": "internal_error", "message": f"unexpected {type(exc).__name__}"}}, 500
    )


def _check_content_type(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != JSON and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        shown = media_type or "none"
        raise UnsupportedMediaType(f"content type must be {JSON}, got {shown}")


async def read_json_body(request: Request, limits: Limits, *, untyped_ok: bool = False) -> object:
    """Read and decode a JSON body within the size limit; typed errors for every bad case.

    ``untyped_ok`` takes a body with no content type as JSON (OIP clients often send none)."""
    if not (untyped_ok and "content-type" not in request.headers):
        _check_content_type(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_body_size(int(declared), limits)
        return _decode_json(await request.body())
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_body_size(len(body), limits)  # chunked bodies carry no Content-Length
    return _decode_json(bytes(body))


def _decode_json(body: bytes) -> object:
    if not body.strip():
        raise MalformedRequest("request body is empty; expected a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses NaN/Infinity and huge integers: the validator should name those
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedRequest(f"request body is not valid JSON: {exc}") from None


def _predict_route(api: ApiVersion) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def predict(request: Request) -> Response:
        service: PredictionService = request.app.state.service
        try:
            body = await read_json_body(request, service.limits)
            answer = await service.predict_async(service.parse(body, api))
        except Exception as exc:  # translated to 4xx/500 at this one boundary
            return error_response(exc)
        request_id = answer["metadata"]["request_id"]
        request.scope.setdefault("state", {})["request_id"] = request_id  # for the access log
        headers = {"x-request-id": request_id} if _HEADER_SAFE.fullmatch(request_id) else None
        return _json_response(answer, headers=headers)

    predict.__name__ = f"predict_{api}"
    predict.__doc__ = (
        "Predict one row (`instances`)."
        if api == "v1"
        else "Predict one row (`instances`) or several (`rows`), with optional "
        "`request_id`, `model_version` and `options`."
    )
    return predict


def _install_openapi(app: FastAPI) -> None:
    """Describe the request bodies the routes parse themselves (FastAPI cannot infer them)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(api_models.schema_components())
            components.update(oip.schema_components())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.ready = True
    yield
    app.state.ready = False  # draining: load balancers should stop sending


def create_app(
    service: PredictionService,
    *,
    metrics: RestMetrics | None = None,
    logger: JsonLogger | None = None,
    admission: AdmissionGate | None = None,
) -> FastAPI:
    """A FastAPI app serving ``service``; metrics and logger off when ``None``.

    ``admission`` bounds the predict routes (503 past it); ``None`` admits everything, for
    in-process callers that bound their own load.
    """
    app = FastAPI(
        title="servelab REST target",
        version="1.0",
        lifespan=_lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.service = service
    app.state.ready = False
    _add_predict_routes(app)
    _add_probe_routes(app, service)
    oip.add_routes(app, service, read_body=_read_oip_body, admission=admission)
    _add_metrics_route(app, metrics)
    _add_error_handlers(app)
    _install_openapi(app)
    _add_middleware(
        app,
        routes=(*ROUTES, *oip.route_paths(service.model)),
        metrics=metrics,
        logger=logger,
        admission=admission,
    )
    return app


async def _read_oip_body(request: Request, limits: Limits) -> object:
    return await read_json_body(request, limits, untyped_ok=True)


def _add_predict_routes(app: FastAPI) -> None:
    """``POST /v1/predict`` and ``/v2/predict``, their bodies documented by reference."""
    for api, path in PREDICT_ROUTES.items():
        request_model = "PredictRequestV1" if api == "v1" else "PredictRequestV2"
        app.add_api_route(
            path,
            _predict_route(api),  # type: ignore[arg-type]
            methods=["POST"],
            response_model=api_models.PredictResponse,
            responses=_ERROR_RESPONSES,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {"schema": {"$ref": f"#/components/schemas/{request_model}"}}
                    },
                }
            },
        )


def _add_probe_routes(app: FastAPI, service: PredictionService) -> None:
    """``/healthz`` (liveness) and ``/readyz`` (readiness)."""

    @app.get("/healthz", response_model=api_models.Health)
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json_response({"status": "ok"})

    @app.get(
        "/readyz", response_model=api_models.Health, responses={503: {"model": api_models.Health}}
    )
    async def readyz(request: Request) -> Response:
        """Readiness: the model is loaded and the server is not draining."""
        if not request.app.state.ready:
            return _json_response({"status": "not ready"}, 503)
        model = service.model
        return _json_response(
            {"status": "ready", "model_name": model.name, "model_version": model.version}
        )


def _add_metrics_route(app: FastAPI, metrics: RestMetrics | None) -> None:
    """``/metrics``: Prometheus text, or a 404 body when metrics are off."""

    @app.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def metrics_route() -> Response:
        """Prometheus text format: requests and latency by route and status."""
        if metrics is None:
            return _json_response(
                {"error": {"code": "not_found", "message": "metrics are off"}}, 404
            )
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)  # registered for that type only
    if oip.is_oip_path(request.url.path):  # an OIP client expects OIP's {"error": string}
        return oip.json_response({"error": str(exc.detail)}, exc.status_code, exc.headers)
    code = "not_found" if exc.status_code == 404 else "http_error"
    return _json_response(
        {"error": {"code": code, "message": str(exc.detail)}}, exc.status_code, exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


def _add_error_handlers(app: FastAPI) -> None:
    """Starlette's HTTP errors and anything unexpected answer in the canonical error body."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _add_middleware(
    app: FastAPI,
    *,
    routes: tuple[str, ...],
    metrics: RestMetrics | None,
    logger: JsonLogger | None,
    admission: AdmissionGate | None,
) -> None:
    """Admission (when bounded) inside observability (when metrics or a logger are on)."""
    if admission is not None:  # added first, so it runs inside observability: 503s are counted
        app.add_middleware(
            AdmissionMiddleware,
            gate=admission,
            paths=PREDICT_ROUTES.values(),
            refuse=error_response,
        )
    if metrics is not None or logger is not None:
        app.add_middleware(ObservabilityMiddleware, routes=routes, metrics=metrics, logger=logger)
