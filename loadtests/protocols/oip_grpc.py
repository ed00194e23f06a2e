"""The Open Inference Protocol over gRPC: ``inference.GRPCInferenceService/ModelInfer`` with typed
``contents`` (or, with ``--raw-tensors``, little-endian ``raw_input_contents``), ready when
``ModelReady`` says so, described by ``ModelMetadata``. Requests are serialized once per distinct
payload and sent as bytes; answers are parsed and checked as the REST contract checks JSON: each
output named and typed, ``shape[0]`` the rows sent, exactly prod(shape) values."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import INVALID_KINDS, SCHEMA_FAILURE
from loadtests.protocols.tensors import FLOAT_TYPES, TensorSpec

SERVICE: Final = "inference.GRPCInferenceService"
INFER: Final = f"/{SERVICE}/ModelInfer"
STREAM_INFER: Final = f"/{SERVICE}/ModelStreamInfer"
STREAM_ERROR: Final = "stream_error"  # a ModelStreamInferResponse with an error_message
# typed contents field and raw little-endian struct code, by datatype
CONTENTS: Final = {
    "BOOL": ("bool_contents", "?"), "INT8": ("int_contents", "b"), "INT16": ("int_contents", "h"),
    "INT32": ("int_contents", "i"), "INT64": ("int64_contents", "q"),
    "UINT8": ("uint_contents", "B"), "UINT16": ("uint_contents", "H"),
    "UINT32": ("uint_contents", "I"), "UINT64": ("uint64_contents", "Q"),
    "FP16": ("fp32_contents", "e"), "FP32": ("fp32_contents", "f"), "FP64": ("fp64_contents", "d"),
    "BYTES": ("bytes_contents", ""),
}  # fmt: skip


def _pb() -> Any:
    from targets.rpc import inference_pb2

    return inference_pb2


@dataclass(slots=True)
class OipGrpc:
    """The OIP gRPC contract: ``request_bytes`` per payload, ``judge`` per answer."""

    name: ClassVar[str] = "oip"
    model_name: str = ""
    model_version: str | None = None
    tensors: tuple[TensorSpec, ...] = field(default=())
    raw: bool = False
    metadata: tuple[tuple[str, str], ...] = ()  # --header, as gRPC metadata

    def __post_init__(self) -> None:
        if not self.model_name:
            raise LoadOptionError("--protocol oip needs --model-name NAME")

    def describe(self, response: Any) -> None:
        """The inputs a ``ModelMetadataResponse`` lists, unless ``--tensor`` named them."""
        if self.tensors:
            return
        where = f"model {self.model_name!r} metadata"
        if not response.inputs:
            raise LoadOptionError(
                f"{where} lists no inputs: give them with --tensor NAME:DATATYPE:SHAPE "
                "(e.g. --tensor input-0:FP64:-1,64)"
            )
        self.tensors = tuple(
            TensorSpec(entry.name, entry.datatype.upper(), tuple(entry.shape)).checked(where)
            for entry in response.inputs
        )

    def row_width(self) -> int | None:
        return self.tensors[0].features if self.tensors else None

    def ready_request(self) -> Any:
        return _pb().ModelReadyRequest(name=self.model_name, version=self.model_version or "")

    def metadata_request(self) -> Any:
        return _pb().ModelMetadataRequest(name=self.model_name, version=self.model_version or "")

    def request_bytes(self, payload: Payload) -> bytes:
        """The serialized ``ModelInferRequest`` for ``payload``."""
        if not self.tensors:
            raise LoadOptionError(f"--protocol oip: no input tensors for {self.model_name!r}")
        pb = _pb()
        request = pb.ModelInferRequest(
            model_name=self.model_name, model_version=self.model_version or ""
        )
        if not payload.valid:
            self._invalid(request, payload.slot)
            return bytes(request.SerializeToString())
        for spec in self.tensors:
            tensor = spec.tensor(payload.rows)
            entry = request.inputs.add(name=spec.name, datatype=spec.datatype)
            entry.shape.extend(tensor["shape"])
            contents, code = CONTENTS[spec.datatype]
            if self.raw and code:
                request.raw_input_contents.append(_raw(tensor["data"], code))
            elif spec.datatype == "BYTES":
                entry.contents.bytes_contents.extend(str(v).encode() for v in tensor["data"])
            else:
                getattr(entry.contents, contents).extend(tensor["data"])
        return bytes(request.SerializeToString())

    def _invalid(self, request: Any, slot: int) -> None:
        """A request a conforming server refuses: a wrong shape, an unknown datatype, no input."""
        kind = INVALID_KINDS[slot % len(INVALID_KINDS)]
        if kind == "missing":
            return
        spec = self.tensors[0]
        width = spec.features or 4
        entry = request.inputs.add(name=spec.name, datatype=spec.datatype)
        entry.shape.extend([1, width])
        if kind == "datatype":
            entry.datatype = "FP99"
            entry.contents.fp64_contents.extend([0.0] * width)
        else:  # one value short of the shape it claims
            entry.contents.fp64_contents.extend([0.0] * (width - 1))
            if spec.datatype not in FLOAT_TYPES:
                entry.datatype = "FP64"

    def judge(self, payload: Payload, answer: bytes) -> Reply:
        """An OK answer (bytes of a ``ModelInferResponse``) for ``payload``."""
        if not payload.valid:
            return Reply.failure("accepted_invalid")
        try:
            response = _pb().ModelInferResponse.FromString(answer)
        except Exception:  # a DecodeError: not this protocol's answer
            return SCHEMA_FAILURE
        return self.judge_message(payload, response)

    def judge_message(self, payload: Payload, response: Any) -> Reply:
        """A parsed ``ModelInferResponse`` for ``payload`` (a valid one)."""
        if not _outputs_ok(response, payload.expected_predictions):
            return SCHEMA_FAILURE
        return Reply.ok(payload.expected_predictions)


ID_FIELD: Final = 3  # ModelInferResponse.id


def verdict_key(answer: bytes) -> bytes:
    """The bytes of a ``ModelInferResponse`` its verdict depends on: all but its ``id``.

    Servers make up an id per answer (servelab's target, MLServer), so equal answers differ in
    it; ``judge`` never reads it. The top level is scanned as a serializer writes it (one-byte
    tags of length-delimited fields, in field order) up to the id or the first field past it;
    anything else is returned whole — still a correct key, only one that repeats less.
    """
    pos, size = 0, len(answer)
    while pos < size:
        tag = answer[pos]
        if tag & 0x87 != 2:  # a tag past one byte, or a field not length-delimited
            return answer
        start, pos = pos, pos + 1
        length = shift = 0
        while pos < size:
            byte = answer[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        number = tag >> 3
        if number == ID_FIELD:
            return answer[:start] + answer[pos + length :]
        if number > ID_FIELD:
            return answer
        pos += length
    return answer


def _raw(values: list[Any], code: str) -> bytes:
    return struct.pack(f"<{len(values)}{code}", *values)


def _outputs_ok(response: Any, rows: int) -> bool:
    if not response.outputs:
        return False
    raw = list(response.raw_output_contents)
    for index, output in enumerate(response.outputs):
        shape = list(output.shape)
        if not output.name or not output.datatype or not shape or shape[0] != rows:
            return False
        if _count(output, raw[index] if index < len(raw) else None) != math.prod(shape):
            return False
    return True


def _count(output: Any, raw: bytes | None) -> int:
    """How many values an output carries: its raw bytes over the item size, else its contents."""
    contents, code = CONTENTS.get(output.datatype.upper(), ("", ""))
    if raw is not None and code:
        return len(raw) // struct.calcsize(f"<{code}")
    return len(getattr(output.contents, contents)) if contents else -1
