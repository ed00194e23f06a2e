"""The transport-independent core every target calls: validate, predict, answer. Stdlib only."""

from __future__ import annotations

import itertools
import os
from typing import Any

from targets.errors import (
    ApiVersionDisabled,
    InvalidRequest,
    ModelFailure,
    ModelVersionMismatch,
)
from targets.models import Model, input_width
from targets.schema import ApiVersion, Limits, PredictRequest, build_response, validate_request


class PredictionService:
    """Serves one model through the canonical schema for one transport.

    ``enable_v2=False`` runs a v1-only server (what an old deployment looks like to a v2 client).
    """

    def __init__(
        self,
        model: Model,
        *,
        transport: str,
        limits: Limits | None = None,
        enable_v2: bool = True,
    ) -> None:
        self.model = model
        self.transport = transport
        self.limits = limits or Limits()
        self.enable_v2 = enable_v2
        self.features = input_width(model)
        self._id_prefix = f"{transport}-{os.getpid():x}-{os.urandom(3).hex()}-"
        self._ids = itertools.count(1)

    def next_request_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids)}"

    def parse(self, body: object, api: ApiVersion) -> PredictRequest:
        """Validate a decoded body for ``api``; raises a ``RequestError`` subclass."""
        if api == "v2" and not self.enable_v2:
            raise ApiVersionDisabled("API v2 is disabled on this server; use v1 (/v1/predict)")
        request = validate_request(body, api, self.limits)
        if request.model_version is not None and request.model_version != self.model.version:
            raise ModelVersionMismatch(
                f"model_version {request.model_version!r} requested, "
                f"this server runs {self.model.name} {self.model.version}",
                "model_version",
            )
        if self.features is not None:
            self._check_width(request, body)
        return request

    def _check_width(self, request: PredictRequest, body: object) -> None:
        """Rows of another width than the model's are the client's mistake, not a model fault."""
        for index, row in enumerate(request.rows):
            if len(row) != self.features:
                where = (
                    f"rows[{index}]" if isinstance(body, dict) and "rows" in body else "instances"
                )
                raise InvalidRequest(
                    f"model {self.model.name} takes rows of {self.features} features, "
                    f"got {len(row)} in {where}",
                    where,
                )

    def respond(self, request: PredictRequest, predictions: list[float]) -> dict[str, Any]:
        """The canonical response to ``request`` given the model's ``predictions``."""
        if len(predictions) != len(request.rows):
            raise ModelFailure(
                f"model {self.model.name} returned {len(predictions)} predictions "
                f"for {len(request.rows)} rows"
            )
        if request.precision is not None:
            predictions = [round(value, request.precision) for value in predictions]
        return build_response(
            predictions,
            transport=self.transport,
            model_name=self.model.name,
            model_version=self.model.version,
            request_id=request.request_id or self.next_request_id(),
            api=request.api,
        )

    async def predict_async(self, request: PredictRequest) -> dict[str, Any]:
        try:
            predictions = await self.model.predict_async(request.rows)
        except Exception as exc:  # any model fault is the server's, reported as such
            raise ModelFailure(f"model {self.model.name} failed: {type(exc).__name__}") from exc
        return self.respond(request, predictions)

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        try:
            predictions = self.model.predict(request.rows)
        except Exception as exc:
            raise ModelFailure(f"model {self.model.name} failed: {type(exc).__name__}") from exc
        return self.respond(request, predictions)
