"""Protobuf <-> canonical schema, at the gRPC edge and nowhere else.

The server turns a ``PredictRequest`` message into the canonical body dict and lets
``PredictionService.parse`` validate it, so gRPC accepts and rejects exactly what REST does. proto3
cannot tell an empty field from an absent one, so here "unset" means "empty": ``instances=[]`` is
the lesson's empty row (``[0.0]``), and an empty ``request_id`` is no request id.

API version of a message (what ``to_canonical`` decides):

- ``rows`` set, or any other v2 field set on a v2 server: v2 (``parse(body, "v2")``), so the
  validator rejects ``instances`` and ``rows`` together;
- ``rows`` set on a v1-only server: ``ApiVersionDisabled`` (UNIMPLEMENTED), telling the client to
  send one row per request in ``instances``;
- otherwise v1; a v1-only server ignores ``request_id``/``model_version``/``options`` as an old
  server ignores unknown fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from targets.errors import (
    ApiVersionDisabled,
    InvalidRequest,
    ModelFailure,
    Overloaded,
    RequestError,
)
from targets.rpc import predict_pb2 as pb
from targets.schema import ApiVersion

V2_DISABLED_MESSAGE: Final = (
    "API v2 ('rows') is disabled on this server; send one row per request in 'instances'"
)
INTERNAL_ERROR_CODE: Final = "internal_error"
_INT_TEXT: Final = re.compile(r"\s*[+-]?[0-9]{1,9}\s*")


def _options(options: Mapping[str, str]) -> dict[str, Any]:
    """The proto map carries strings; the canonical options carry typed values."""
    converted: dict[str, Any] = dict(options)
    precision = options.get("precision")
    if precision is not None:
        if _INT_TEXT.fullmatch(precision) is None:
            raise InvalidRequest(
                f"options.precision must be an integer, got {precision!r}", "options.precision"
            )
        converted["precision"] = int(precision)
    return converted


def _has_v2_extras(message: pb.PredictRequest) -> bool:
    return bool(message.request_id or message.model_version or message.options)


def to_canonical(
    message: pb.PredictRequest, *, enable_v2: bool
) -> tuple[dict[str, Any], ApiVersion]:
    """The canonical body of ``message`` and the API version to validate it against.

    Raises ``ApiVersionDisabled`` for ``rows`` on a v1-only server and ``InvalidRequest`` for an
    option that is not the type its proto string must encode; everything else is left to the
    canonical validator.
    """
    body: dict[str, Any] = {}
    if message.instances or not message.rows:
        body["instances"] = list(message.instances)
    if message.rows:
        if not enable_v2:
            raise ApiVersionDisabled(V2_DISABLED_MESSAGE, "rows")
        body["rows"] = [list(row.values) for row in message.rows]
    elif not (enable_v2 and _has_v2_extras(message)):
        return body, "v1"
    if message.request_id:
        body["request_id"] = message.request_id
    if message.model_version:
        body["model_version"] = message.model_version
    if message.options:
        body["options"] = _options(message.options)
    return body, "v2"


def to_response(answer: Mapping[str, Any]) -> pb.PredictResponse:
    """The message for a canonical response body (extra metadata keys have no proto field)."""
    metadata = answer["metadata"]
    return pb.PredictResponse(
        predictions=answer["predictions"],
        metadata=pb.Metadata(
            transport=metadata["transport"],
            model_name=metadata["model_name"],
            model_version=metadata["model_version"],
            request_id=metadata["request_id"],
            api=metadata["api"],
        ),
    )


def error_code(exc: BaseException) -> str:
    """The canonical error code (``RequestError.code``, ``model_error``, ``overloaded``,
    ``internal_error``)."""
    if isinstance(exc, RequestError | ModelFailure | Overloaded):
        return exc.code
    return INTERNAL_ERROR_CODE


def to_error_response(code: str, message: str, field: str | None = None) -> pb.PredictResponse:
    """A stream message's in-place rejection: ``error`` set, no predictions."""
    return pb.PredictResponse(error=pb.Error(code=code, message=message, field=field or ""))


def from_response(message: pb.PredictResponse) -> dict[str, Any]:
    """The canonical body of a response message (``{"error": ...}`` for an in-place error)."""
    if message.HasField("error"):
        error: dict[str, Any] = {"code": message.error.code, "message": message.error.message}
        if message.error.field:
            error["field"] = message.error.field
        return {"error": error}
    metadata = message.metadata
    return {
        "predictions": list(message.predictions),
        "metadata": {
            "transport": metadata.transport,
            "model_name": metadata.model_name,
            "model_version": metadata.model_version,
            "request_id": metadata.request_id,
            "api": metadata.api,
        },
    }


def rows_request(
    rows: Sequence[Sequence[float]],
    *,
    request_id: str | None = None,
    model_version: str | None = None,
    precision: int | None = None,
) -> pb.PredictRequest:
    """A v2 message for several rows (what a client sends)."""
    options = {"precision": str(precision)} if precision is not None else {}
    return pb.PredictRequest(
        rows=[pb.Row(values=row) for row in rows],
        request_id=request_id or "",
        model_version=model_version or "",
        options=options,
    )


def instances_request(row: Sequence[float]) -> pb.PredictRequest:
    """A v1 message for one row."""
    return pb.PredictRequest(instances=row)
