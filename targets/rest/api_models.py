"""Pydantic mirrors of the canonical schema (``targets.schema``), for FastAPI's OpenAPI document.

The stdlib validator is the one that runs on requests; these models describe the same contract
to clients and tools, and ``tests/targets/test_schema_mirror.py`` proves both accept and reject
the same inputs.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from targets.schema import DEFAULT_MAX_INSTANCES, MAX_PRECISION, MAX_REQUEST_ID_CHARS

FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
_STRICT_IGNORING = ConfigDict(strict=True, extra="ignore")


class PredictRequestV1(BaseModel):
    """One row of features; unknown keys are ignored."""

    model_config = _STRICT_IGNORING
    instances: list[FiniteNumber] = Field(max_length=DEFAULT_MAX_INSTANCES)


class PredictOptions(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    precision: int | None = Field(default=None, ge=0, le=MAX_PRECISION)


class PredictRequestV2(BaseModel):
    """v1, or several ``rows``; exactly one of ``instances`` / ``rows``."""

    model_config = _STRICT_IGNORING
    instances: list[FiniteNumber] | None = Field(default=None, max_length=DEFAULT_MAX_INSTANCES)
    rows: list[list[FiniteNumber]] | None = Field(
        default=None, min_length=1, max_length=DEFAULT_MAX_INSTANCES
    )
    request_id: str | None = Field(default=None, max_length=MAX_REQUEST_ID_CHARS)
    model_version: str | None = Field(default=None, max_length=MAX_REQUEST_ID_CHARS)
    options: PredictOptions | None = None

    @model_validator(mode="after")
    def _one_of_instances_or_rows(self) -> PredictRequestV2:
        if (self.instances is None) == (self.rows is None):
            raise ValueError("exactly one of 'instances' or 'rows' is required")
        if self.rows is not None and sum(len(row) for row in self.rows) > DEFAULT_MAX_INSTANCES:
            raise ValueError(f"too many instances: limit {DEFAULT_MAX_INSTANCES}")
        return self


class ResponseMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    transport: str
    model_name: str
    model_version: str
    request_id: str
    api: str


class PredictResponse(BaseModel):
    """One prediction per row."""

    predictions: list[FiniteNumber]
    metadata: ResponseMetadata


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: str


def schema_components() -> dict[str, Any]:
    """JSON schemas of the request models, for ``components.schemas`` of the OpenAPI document."""
    components: dict[str, Any] = {}
    for model in (PredictRequestV1, PredictRequestV2):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return components
