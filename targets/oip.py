"""The Open Inference Protocol (OIP v2 / KServe V2) for servelab's models, for REST and gRPC.
Stdlib only.

Spec: kserve/kserve ``docs/predict-api/v2/required_api.md`` and ``grpc_predict_v2.proto``. A
servelab model is one tensor in, one tensor out::

    input-0   any numeric datatype (FP32, FP64, INT8..64, UINT8..64, BOOL)   [-1, F]
    output-0  FP64                                                          [-1, 1]

F is the width the model declares (``targets.models.input_width``), else -1 (any). A request
carries exactly one input tensor of shape ``[rows, features]`` (``[features]`` is one row) whose
``data`` is flat and row-major (the natural nested form is accepted too, as the spec allows); its
name is not checked (MLServer's and KServe's own runtimes do not check it either), its values
must be of its datatype (BOOL ``true``/``false``, INT* integers in range, FP* finite numbers;
FP32 values are rounded to single precision) and the canonical limits (``targets.schema.Limits``)
apply. BYTES, FP16 and BF16 are refused. Every violation is an ``InvalidRequest`` naming the
field at fault.

Transports convert at their own edge: REST hands ``parse_infer_body`` the decoded JSON, gRPC
takes the tensor out of its message (typed contents, or ``raw_input_contents`` decoded by
``decode_raw``) and calls ``tensor_rows``. Both answer ``infer_response``'s fields.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from typing import Any, Final, cast

from targets.errors import InvalidRequest, MalformedRequest
from targets.models import Model, input_width
from targets.schema import MAX_REQUEST_ID_CHARS, Limits, Row

SERVER_NAME: Final = "servelab"
PLATFORM: Final = "servelab"
INPUT_NAME: Final = "input-0"
OUTPUT_NAME: Final = "output-0"
OUTPUT_DATATYPE: Final = "FP64"
EXTENSIONS: Final[tuple[str, ...]] = ()  # none of the spec's optional extensions

_FLOAT_MAX: Final = 1.7976931348623157e308
_FP32_MAX: Final = 3.4028234663852886e38
# datatype -> (array typecode of its little-endian raw form, smallest value, largest value)
_INTEGERS: Final[dict[str, tuple[str, int, int]]] = {
    "INT8": ("b", -(1 << 7), (1 << 7) - 1),
    "INT16": ("h", -(1 << 15), (1 << 15) - 1),
    "INT32": ("i", -(1 << 31), (1 << 31) - 1),
    "INT64": ("q", -(1 << 63), (1 << 63) - 1),
    "UINT8": ("B", 0, (1 << 8) - 1),
    "UINT16": ("H", 0, (1 << 16) - 1),
    "UINT32": ("I", 0, (1 << 32) - 1),
    "UINT64": ("Q", 0, (1 << 64) - 1),
}
_FLOATS: Final[dict[str, tuple[str, float]]] = {"FP32": ("f", _FP32_MAX), "FP64": ("d", _FLOAT_MAX)}
DATATYPES: Final[tuple[str, ...]] = ("BOOL", *_INTEGERS, *_FLOATS)
_REFUSED: Final = frozenset({"BYTES", "FP16", "BF16"})
_NUMBER_TYPES: Final = frozenset({float, int})


@dataclass(frozen=True, slots=True)
class InferRequest:
    """A validated inference request: the rows of its one input tensor, and its id if given."""

    rows: list[Row]
    request_id: str | None = None


def server_version() -> str:
    """servelab's own version (``ServerMetadata.version``)."""
    return _installed_version()


@cache
def _installed_version() -> str:
    try:
        return metadata.version("servelab")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def server_metadata() -> dict[str, Any]:
    """``GET /v2`` / ``ServerMetadata``: ``{"name", "version", "extensions"}``."""
    return {"name": SERVER_NAME, "version": server_version(), "extensions": list(EXTENSIONS)}


def model_metadata(model: Model) -> dict[str, Any]:
    """``GET /v2/models/{name}`` / ``ModelMetadata``."""
    features = input_width(model)
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": PLATFORM,
        "inputs": [
            {
                "name": INPUT_NAME,
                "datatype": "FP64",
                "shape": [-1, -1 if features is None else features],
            }
        ],
        "outputs": [{"name": OUTPUT_NAME, "datatype": OUTPUT_DATATYPE, "shape": [-1, 1]}],
    }


def unknown_model(model: Model, name: str, version: str | None) -> str | None:
    """Why ``name`` (at ``version``, if given) is not served here, or ``None`` when it is."""
    if name != model.name:
        return f"model {name!r} is not served here (this server serves {model.name!r})"
    if version is not None and version != model.version:
        return f"model {name!r} has no version {version!r} (this server serves {model.version!r})"
    return None


def infer_response(model: Model, request_id: str, predictions: Sequence[float]) -> dict[str, Any]:
    """The inference response: one FP64 output of shape ``[rows, 1]``."""
    return {
        "model_name": model.name,
        "model_version": model.version,
        "id": request_id,
        "outputs": [
            {
                "name": OUTPUT_NAME,
                "datatype": OUTPUT_DATATYPE,
                "shape": [len(predictions), 1],
                "data": list(predictions),
            }
        ],
    }


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return type(value).__name__


def check_datatype(datatype: object, where: str) -> str:
    """``datatype`` when servelab's models take it; ``InvalidRequest`` naming ``where`` if not."""
    if datatype in DATATYPES:
        return str(datatype)
    if datatype in _REFUSED:
        reason = f"{datatype} tensors are not numbers a servelab model takes"
    else:
        reason = f"unknown datatype {datatype!r}" if isinstance(datatype, str) else "not a string"
    raise InvalidRequest(f"{where}: {reason}; use one of {', '.join(DATATYPES)}", where)


def check_shape(
    shape: Sequence[object], model: Model, limits: Limits, where: str
) -> tuple[int, int]:
    """``(rows, features)`` of a ``[rows, features]`` or ``[features]`` shape within the limits."""
    if not 1 <= len(shape) <= 2:
        raise InvalidRequest(
            f"{where} must be [rows, features] or [features], got {len(shape)} dimensions", where
        )
    dims: list[int] = []
    for index, size in enumerate(shape):
        if not (isinstance(size, int) and type(size) is not bool and size >= 0):
            raise InvalidRequest(
                f"{where}[{index}] must be a non-negative integer, got {_kind(size)}",
                f"{where}[{index}]",
            )
        dims.append(size)
    rows, features = (1, dims[0]) if len(dims) == 1 else (dims[0], dims[1])
    if rows < 1:
        raise InvalidRequest(f"{where}[0] must be at least 1 row", f"{where}[0]")
    expected = input_width(model)
    if expected is not None and features != expected:
        raise InvalidRequest(
            f"{where}: model {model.name} takes {expected} features, got {features}",
            f"{where}[{len(dims) - 1}]",
        )
    if rows > limits.max_instances or rows * features > limits.max_instances:
        raise InvalidRequest(
            f"too many instances: {rows * features} values in {rows} rows "
            f"> limit {limits.max_instances}",
            where,
        )
    return rows, features


def _element_check(datatype: str) -> tuple[Callable[[object], bool], str]:
    """Whether one element is a value of ``datatype`` (bools are not numbers), and what it takes."""
    if datatype in _FLOATS:
        largest = _FLOATS[datatype][1]

        def is_float(value: object) -> bool:
            if type(value) is bool or not isinstance(value, float | int):
                return False
            return -largest <= value <= largest

        return is_float, f"a finite number within {datatype}'s range"
    if datatype == "BOOL":
        return (lambda value: type(value) is bool), "true or false"
    _, smallest, largest = _INTEGERS[datatype]

    def is_integer(value: object) -> bool:
        return type(value) is int and smallest <= value <= largest

    return is_integer, f"an integer within {datatype}'s range {smallest}..{largest}"


def _all_valid(datatype: str, data: Sequence[object], is_value: Callable[[object], bool]) -> bool:
    if datatype not in _FLOATS:
        return all(map(is_value, data))
    numbers = cast("Sequence[float]", data)
    try:  # the hot path, in C: numbers only (no bools), all finite, within FP32's range if FP32
        if not set(map(type, data)) <= _NUMBER_TYPES or not all(map(math.isfinite, numbers)):
            return False
    except OverflowError:  # an integer beyond a double's range
        return False
    return datatype == "FP64" or not data or max(map(abs, numbers)) <= _FP32_MAX


def tensor_rows(
    datatype: str, shape: tuple[int, int], data: Sequence[object], where: str
) -> list[Row]:
    """The rows of a flat, row-major tensor whose datatype and shape were checked."""
    rows, features = shape
    if len(data) != rows * features:
        raise InvalidRequest(
            f"{where} has {len(data)} values, shape {[rows, features]} needs {rows * features}",
            where,
        )
    is_value, wanted = _element_check(datatype)
    if not _all_valid(datatype, data, is_value):  # only a bad tensor is searched for the culprit
        index, value = next((i, v) for i, v in enumerate(data) if not is_value(v))
        raise InvalidRequest(
            f"{where}[{index}] must be {wanted}, got {_kind(value)}", f"{where}[{index}]"
        )
    numbers = cast("Sequence[float]", data)  # checked above; bools are 1.0 / 0.0
    values = array("f", numbers).tolist() if datatype == "FP32" else [float(v) for v in numbers]
    return [values[row * features : (row + 1) * features] for row in range(rows)]


def decode_raw(datatype: str, raw: bytes, where: str) -> list[object]:
    """A tensor's little-endian ``raw_input_contents`` as values (BOOL: one byte each)."""
    if datatype == "BOOL":
        if any(byte > 1 for byte in raw):
            raise InvalidRequest(f"{where}: BOOL bytes must be 0 or 1", where)
        return [byte == 1 for byte in raw]
    typecode = _FLOATS[datatype][0] if datatype in _FLOATS else _INTEGERS[datatype][0]
    values = array(typecode)
    if len(raw) % values.itemsize:
        raise InvalidRequest(
            f"{where} is {len(raw)} bytes, not a whole number of {datatype} values "
            f"({values.itemsize} bytes each)",
            where,
        )
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    decoded: list[Any] = values.tolist()
    if datatype in _FLOATS and not all(map(math.isfinite, decoded)):
        raise InvalidRequest(f"{where} must hold finite numbers only", where)
    return decoded


def encode_fp64(values: Sequence[float]) -> bytes:
    """FP64 values as little-endian raw tensor contents (``raw_output_contents``)."""
    encoded = array("d", values)
    if sys.byteorder == "big":
        encoded.byteswap()
    return encoded.tobytes()


def _flat_data(data: object, shape: tuple[int, int], ndim: int, where: str) -> Sequence[object]:
    """``data`` flat: as given, or flattened from its natural nested ``[rows][features]`` form."""
    if not isinstance(data, list):
        raise InvalidRequest(f"{where} must be a list, got {_kind(data)}", where)
    if ndim == 1 or not data or not isinstance(data[0], list):
        return data
    rows, features = shape
    if len(data) != rows:
        raise InvalidRequest(f"{where} has {len(data)} rows, shape says {rows}", where)
    flat: list[object] = []
    for index, row in enumerate(data):
        if not isinstance(row, list) or len(row) != features:
            raise InvalidRequest(
                f"{where}[{index}] must be a list of {features} values, got {_kind(row)}"
                + (f" of {len(row)}" if isinstance(row, list) else ""),
                f"{where}[{index}]",
            )
        flat.extend(row)
    return flat


def _optional_object(body: Mapping[str, Any], key: str, where: str) -> None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise InvalidRequest(f"{where} must be an object, got {_kind(value)}", where)


def check_requested_outputs(names: Sequence[object], where: str = "outputs") -> None:
    """Every requested output must be ``output-0``, the one a servelab model produces."""
    for index, name in enumerate(names):
        if name != OUTPUT_NAME:
            shown = repr(name) if isinstance(name, str) else _kind(name)
            raise InvalidRequest(
                f"{where}[{index}].name: unknown output {shown}; this model has {OUTPUT_NAME!r}",
                f"{where}[{index}].name",
            )


def _requested_outputs(outputs: object) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise InvalidRequest(f"outputs must be a list, got {_kind(outputs)}", "outputs")
    for index, output in enumerate(outputs):
        if not isinstance(output, dict):
            raise InvalidRequest(
                f"outputs[{index}] must be an object, got {_kind(output)}", f"outputs[{index}]"
            )
        _optional_object(output, "parameters", f"outputs[{index}].parameters")
    check_requested_outputs([output.get("name") for output in outputs])


def request_id(value: object, where: str = "id") -> str | None:
    """The request's optional ``id`` (an empty one is none)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{where} must be a string, got {_kind(value)}", where)
    if len(value) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"{where} is longer than {MAX_REQUEST_ID_CHARS} characters", where)
    return value


def one_input(count: int) -> None:
    """A servelab model takes exactly one input tensor."""
    if count != 1:
        raise InvalidRequest(
            f"inputs must hold exactly one tensor ({INPUT_NAME!r}), got {count}", "inputs"
        )


def parse_infer_body(body: object, model: Model, limits: Limits) -> InferRequest:
    """Validate a decoded JSON inference request (``$inference_request``) for ``model``."""
    if not isinstance(body, dict):
        raise MalformedRequest(f"request body must be a JSON object, got {_kind(body)}")
    identifier = request_id(body.get("id"))
    _optional_object(body, "parameters", "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise InvalidRequest(
            f"inputs must be a list of tensors, got {_kind(inputs)}"
            if "inputs" in body
            else "missing required field 'inputs'",
            "inputs",
        )
    one_input(len(inputs))
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise InvalidRequest(f"inputs[0] must be an object, got {_kind(tensor)}", "inputs[0]")
    if not isinstance(tensor.get("name"), str):
        raise InvalidRequest(
            f"inputs[0].name must be a string, got {_kind(tensor.get('name'))}", "inputs[0].name"
        )
    datatype = check_datatype(tensor.get("datatype"), "inputs[0].datatype")
    shape_field = tensor.get("shape")
    if not isinstance(shape_field, list):
        raise InvalidRequest(
            f"inputs[0].shape must be a list of integers, got {_kind(shape_field)}",
            "inputs[0].shape",
        )
    shape = check_shape(shape_field, model, limits, "inputs[0].shape")
    _optional_object(tensor, "parameters", "inputs[0].parameters")
    data = _flat_data(tensor.get("data"), shape, len(shape_field), "inputs[0].data")
    _requested_outputs(body.get("outputs"))
    return InferRequest(tensor_rows(datatype, shape, data, "inputs[0].data"), identifier)
