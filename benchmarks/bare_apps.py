"""Baselines for ``rest_middleware.py``: FastAPI apps with the same route and models as the
target, and none of its extras (no middleware, metrics, access log, canonical validation)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request, Response

from targets.models import ReferenceModel
from targets.rest.api_models import PredictRequestV1, PredictResponse


def pydantic_app() -> FastAPI:
    """The idiomatic FastAPI way: pydantic parses the body and serialises the response."""
    app = FastAPI()
    model = ReferenceModel()

    @app.post("/v1/predict", response_model=PredictResponse)
    async def predict(request: PredictRequestV1) -> dict[str, Any]:
        predictions = await model.predict_async([request.instances])
        return {
            "predictions": predictions,
            "metadata": {
                "transport": "rest",
                "model_name": model.name,
                "model_version": model.version,
                "request_id": "-",
                "api": "v1",
            },
        }

    return app


def raw_app() -> FastAPI:
    """The least FastAPI can do: orjson in, model, orjson out; no checks at all."""
    app = FastAPI()
    model = ReferenceModel()

    @app.post("/v1/predict")
    async def predict(request: Request) -> Response:
        body = orjson.loads(await request.body())
        predictions = await model.predict_async([body["instances"]])
        answer = {
            "predictions": predictions,
            "metadata": {
                "transport": "rest",
                "model_name": model.name,
                "model_version": model.version,
                "request_id": "-",
                "api": "v1",
            },
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    return app
