"""The Open Inference Protocol (KServe V2, MLServer, Triton) over REST:
``POST {base}/v2/models/{name}[/versions/{v}]/infer`` with JSON tensors, ready at
``…/ready``, described at ``GET /v2/models/{name}[/versions/{v}]``.

The input tensors are ``--tensor NAME:DATATYPE:SHAPE`` or, when not given, what the model's
metadata lists. A deliberately invalid payload becomes, by its slot, a tensor of the wrong
shape, of an unknown datatype, or no input at all: a 4xx is an expected rejection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import INVALID_KINDS, SCHEMA_FAILURE, HttpContract, HttpRequest
from loadtests.protocols.tensors import TensorSpec, outputs_problem


@dataclass(slots=True)
class OipHttp(HttpContract):
    name: ClassVar[str] = "oip"
    model_name: str = ""
    model_version: str | None = None
    tensors: tuple[TensorSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.model_name:
            raise LoadOptionError("--protocol oip needs --model-name NAME")
        self.ready_path = f"{self._model_path}/ready"

    @property
    def _model_path(self) -> str:
        version = f"/versions/{self.model_version}" if self.model_version else ""
        return f"/v2/models/{self.model_name}{version}"

    @property
    def metadata_path(self) -> str | None:
        return self._model_path

    def describe(self, metadata: Mapping[str, Any]) -> None:
        """The inputs the model's metadata lists, unless ``--tensor`` named them."""
        if self.tensors:
            return
        where = f"model {self.model_name!r} metadata"
        inputs = metadata.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise LoadOptionError(
                f"{where} lists no inputs: give them with --tensor NAME:DATATYPE:SHAPE "
                "(e.g. --tensor input-0:FP64:-1,64)"
            )
        self.tensors = tuple(TensorSpec.from_metadata(entry, where) for entry in inputs)

    def row_width(self) -> int | None:
        return self.tensors[0].features if self.tensors else None

    def request(self, payload: Payload) -> HttpRequest:
        if not self.tensors:
            raise LoadOptionError(f"--protocol oip: no input tensors for {self.model_name!r}")
        if not payload.valid:
            return self.post_json(
                f"{self._model_path}/infer", invalid_inputs(self.tensors[0], payload.slot)
            )
        body = {"inputs": [tensor.tensor(payload.rows) for tensor in self.tensors]}
        return self.post_json(f"{self._model_path}/infer", body)

    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        if outputs_problem(answer, payload.expected_predictions) is not None:
            return SCHEMA_FAILURE
        return Reply.ok(payload.expected_predictions)


def invalid_inputs(tensor: TensorSpec, slot: int) -> dict[str, Any]:
    """A request a conforming server refuses, by ``slot``: a wrong shape, an unknown datatype,
    or no input."""
    kind = INVALID_KINDS[slot % len(INVALID_KINDS)]
    width = tensor.features or 4
    if kind == "shape":  # one value short of the shape it claims
        entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": [1, width],
                 "data": [0] * (width - 1)}  # fmt: skip
        return {"inputs": [entry]}
    if kind == "datatype":
        entry = {"name": tensor.name, "datatype": "FP99", "shape": [1, width], "data": [0] * width}
        return {"inputs": [entry]}
    return {"inputs": []}
