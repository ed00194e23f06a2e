"""The canonical request/response contract, shared by every transport. Stdlib only.

v1 request:  ``{"instances": [number, ...]}`` — one row of features.
v2 request:  v1, or ``{"rows": [[number, ...], ...]}`` for several rows, plus the optional
             ``request_id`` (str), ``model_version`` (str) and ``options`` (``{"precision": int}``).
Response:    ``{"predictions": [float, ...], "metadata": {"transport", "model_name",
             "model_version", "request_id", "api", ...}}`` — one prediction per row.

Both versions ignore unknown top-level keys (forward compatibility, as proto3 ignores unknown
fields), so a v2-shaped request without ``rows`` works against a v1 route. The pydantic models in
``targets.rest.api_models`` mirror these rules for OpenAPI; a test proves they agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from targets.errors import InvalidRequest, RequestTooLarge

ApiVersion = Literal["v1", "v2"]
API_VERSIONS: Final[tuple[ApiVersion, ...]] = ("v1", "v2")
DEFAULT_MAX_INSTANCES: Final = 10_000
DEFAULT_MAX_BODY_BYTES: Final = 1 << 20
MIN_BODY_BYTES: Final = 64  # the smallest body limit a target accepts
MAX_REQUEST_ID_CHARS: Final = 128
MAX_PRECISION: Final = 12
KNOWN_OPTIONS: Final = frozenset({"precision"})
METADATA_KEYS: Final = ("transport", "model_name", "model_version", "request_id", "api")

Row = list[float]
_FLOAT_MAX: Final = 1.7976931348623157e308  # integers beyond a double's range are not numbers here


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits a target enforces; every transport applies the same ones."""

    max_instances: int = DEFAULT_MAX_INSTANCES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __post_init__(self) -> None:
        if self.max_instances < 1:
            raise ValueError("max_instances must be a positive int")
        if self.max_body_bytes < MIN_BODY_BYTES:
            raise ValueError(f"max_body_bytes must be at least {MIN_BODY_BYTES}")


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """A validated request: one or more rows of finite numbers."""

    rows: list[Row]
    api: ApiVersion = "v1"
    request_id: str | None = None
    model_version: str | None = None
    precision: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def instance_count(self) -> int:
        return sum(len(row) for row in self.rows)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        return "an integer beyond the range of a double"
    return type(value).__name__


def _check_row(row: object, where: str, *, nested_hint: bool) -> Row:
    if not isinstance(row, list):
        raise InvalidRequest(f"{where} must be a list of numbers, got {_describe(row)}", where)
    for index, value in enumerate(row):
        kind = type(value)
        if kind is float:
            if math.isfinite(value):
                continue
        elif kind is int and -_FLOAT_MAX <= value <= _FLOAT_MAX:
            continue
        hint = ""
        if nested_hint and isinstance(value, list):
            hint = " (several rows need /v2/predict with 'rows')"
        raise InvalidRequest(
            f"{where}[{index}] must be a finite number, got {_describe(value)}{hint}",
            f"{where}[{index}]",
        )
    return row


def _check_count(count: int, limits: Limits, where: str = "instances") -> None:
    if count > limits.max_instances:
        raise InvalidRequest(f"too many instances: {count} > limit {limits.max_instances}", where)


def _optional_str(body: Mapping[str, Any], key: str, max_chars: int) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string, got {_describe(value)}", key)
    if len(value) > max_chars:
        raise InvalidRequest(f"{key} is longer than {max_chars} characters", key)
    return value


def _options(body: Mapping[str, Any]) -> tuple[Mapping[str, Any], int | None]:
    options = body.get("options")
    if options is None:
        return {}, None
    if not isinstance(options, dict):
        raise InvalidRequest(f"options must be an object, got {_describe(options)}", "options")
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise InvalidRequest(
            f"unknown option {unknown[0]!r} (known: {', '.join(sorted(KNOWN_OPTIONS))})",
            f"options.{unknown[0]}",
        )
    precision = options.get("precision")
    if precision is not None and (
        type(precision) is not int or not 0 <= precision <= MAX_PRECISION
    ):
        raise InvalidRequest(
            f"options.precision must be an integer 0..{MAX_PRECISION}", "options.precision"
        )
    return options, precision


def validate_request(
    body: object, api: ApiVersion = "v1", limits: Limits | None = None
) -> PredictRequest:
    """Check a decoded JSON body against the ``api`` contract; ``InvalidRequest`` says why not."""
    limits = limits or Limits()
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object, got {_describe(body)}")
    instances = body.get("instances")
    if api == "v1":
        if instances is None:
            raise InvalidRequest("missing required field 'instances'", "instances")
        _check_count(len(instances) if isinstance(instances, list) else 0, limits)
        return PredictRequest(rows=[_check_row(instances, "instances", nested_hint=True)])
    if api != "v2":
        raise ValueError(f"api must be one of {API_VERSIONS}, got {api!r}")
    rows_field = body.get("rows")
    if (instances is None) == (rows_field is None):
        raise InvalidRequest("exactly one of 'instances' or 'rows' is required", "instances")
    if instances is not None:
        _check_count(len(instances) if isinstance(instances, list) else 0, limits)
        rows = [_check_row(instances, "instances", nested_hint=True)]
    else:
        if not isinstance(rows_field, list) or not rows_field:
            raise InvalidRequest(
                f"rows must be a non-empty list of rows, got {_describe(rows_field)}", "rows"
            )
        _check_count(len(rows_field), limits, "rows")
        rows = [
            _check_row(row, f"rows[{index}]", nested_hint=False)
            for index, row in enumerate(rows_field)
        ]
        _check_count(sum(len(row) for row in rows), limits, "rows")
    options, precision = _options(body)
    return PredictRequest(
        rows=rows,
        api="v2",
        request_id=_optional_str(body, "request_id", MAX_REQUEST_ID_CHARS),
        model_version=_optional_str(body, "model_version", MAX_REQUEST_ID_CHARS),
        precision=precision,
        options=options,
    )


def check_body_size(size_bytes: int, limits: Limits) -> None:
    """``RequestTooLarge`` when a body of ``size_bytes`` is over the limit."""
    if size_bytes > limits.max_body_bytes:
        raise RequestTooLarge(
            f"request body is {size_bytes} bytes, over the limit of {limits.max_body_bytes}"
        )


def build_response(
    predictions: list[float],
    *,
    transport: str,
    model_name: str,
    model_version: str,
    request_id: str,
    api: ApiVersion,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The canonical response body. ``extra`` adds metadata; it never replaces a key the
    contract requires (a built response always meets ``response_problem``)."""
    metadata: dict[str, Any] = {
        "transport": transport,
        "model_name": model_name,
        "model_version": model_version,
        "request_id": request_id,
        "api": api,
    }
    if extra:
        for key, value in extra.items():
            metadata.setdefault(key, value)
    return {"predictions": predictions, "metadata": metadata}


def response_problem(body: object, expected_predictions: int | None = None) -> str | None:
    """What is wrong with a response body, or ``None`` when it meets the contract.

    Load generators call this per response to count schema success, so it returns instead of
    raising and does no more work than the contract needs.
    """
    if not isinstance(body, dict):
        return f"response must be a JSON object, got {_describe(body)}"
    predictions = body.get("predictions")
    if not isinstance(predictions, list):
        return f"'predictions' must be a list, got {_describe(predictions)}"
    for index, value in enumerate(predictions):
        if type(value) not in (float, int) or not math.isfinite(value):
            return f"predictions[{index}] must be a finite number, got {_describe(value)}"
    if expected_predictions is not None and len(predictions) != expected_predictions:
        return f"expected {expected_predictions} predictions, got {len(predictions)}"
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return f"'metadata' must be an object, got {_describe(metadata)}"
    for key in METADATA_KEYS:
        if not isinstance(metadata.get(key), str):
            return f"metadata.{key} must be a string, got {_describe(metadata.get(key))}"
    return None
