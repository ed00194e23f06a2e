"""A BentoML service: ``POST {base}/{api}`` (``--bentoml-api``, default ``predict``) with the
rows in the JSON field the service's ``/docs.json`` names for that API (``instances`` when it
names none); ready when ``/readyz`` answers 200. The answer is the predictions (a list), or an
object whose ``predictions`` is: one per row sent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.protocols.base import HttpContract, HttpRequest, count_predictions
from loadtests.protocols.kserve_v1 import invalid_instances

DEFAULT_FIELD = "instances"


@dataclass(slots=True)
class BentoML(HttpContract):
    name: ClassVar[str] = "bentoml"
    api: str = "predict"
    field: str = DEFAULT_FIELD

    def __post_init__(self) -> None:
        self.api = self.api.strip("/") or "predict"
        self.ready_path = "/readyz"

    @property
    def metadata_path(self) -> str | None:
        return "/docs.json"

    def describe(self, metadata: Mapping[str, Any]) -> None:
        """The request field of ``/{api}`` in the service's OpenAPI document, when it has one."""
        operation = metadata.get("paths", {}).get(f"/{self.api}", {}).get("post", {})
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        if "$ref" in schema:  # "#/components/schemas/Name"
            name = str(schema["$ref"]).rsplit("/", 1)[-1]
            schema = metadata.get("components", {}).get("schemas", {}).get(name, {})
        properties = schema.get("properties") if isinstance(schema, dict) else None
        if isinstance(properties, dict) and properties:
            self.field = next(iter(properties))

    def request(self, payload: Payload) -> HttpRequest:
        if payload.valid:
            return self.post_json(f"/{self.api}", {self.field: payload.rows})
        body = invalid_instances(payload.slot)
        return self.post_json(f"/{self.api}", {self.field: body.get("instances", "none")})

    def judge_ok(self, payload: Payload, answer: Any) -> Reply:
        predictions = answer.get("predictions") if isinstance(answer, dict) else answer
        return count_predictions(payload, predictions)
