"""KServe's V1 protocol (and TF-Serving's REST predict): ``POST {base}/v1/models/{name}:predict``
with ``{"instances": rows}``; the answer carries one prediction per instance. Ready when
``GET /v1/models/{name}`` answers 200."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import (
    INVALID_KINDS,
    SCHEMA_FAILURE,
    HttpContract,
    HttpRequest,
    count_predictions,
)


@dataclass(slots=True)
class KServeV1(HttpContract):
    name: ClassVar[str] = "kserve-v1"
    model_name: str = ""

    def __post_init__(self) -> None:
        if not self.model_name:
            raise LoadOptionError("--protocol kserve-v1 needs --model-name NAME")
        self.ready_path = f"/v1/models/{self.model_name}"

    def request(self, payload: Payload) -> HttpRequest:
        path = f"/v1/models/{self.model_name}:predict"
        if payload.valid:
            return self.post_json(path, {"instances": payload.rows})
        return self.post_json(path, invalid_instances(payload.slot))

    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        if not isinstance(answer, dict):
            return SCHEMA_FAILURE
        return count_predictions(payload, answer.get("predictions"))


def invalid_instances(slot: int) -> dict[str, Any]:
    """By ``slot``: ragged rows, rows that are not numbers, or no ``instances``."""
    kind = INVALID_KINDS[slot % len(INVALID_KINDS)]
    if kind == "shape":
        return {"instances": [[0.0, 1.0], [0.0]]}
    if kind == "datatype":
        return {"instances": [["not-a-number"]]}
    return {"inputs": "none"}
