"""The transport-independent service core."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from targets.errors import ApiVersionDisabled, ModelFailure, ModelVersionMismatch
from targets.models import CallableModel, ReferenceModel
from targets.schema import response_problem
from targets.service import PredictionService


def test_answers_are_canonical_with_generated_unique_ids() -> None:
    service = PredictionService(ReferenceModel(), transport="rest")
    first = service.predict(service.parse({"instances": [1, 2]}, "v1"))
    second = service.predict(service.parse({"instances": [1, 2]}, "v1"))
    assert first["predictions"] == [1.3]
    assert response_problem(first, expected_predictions=1) is None
    assert first["metadata"]["request_id"] != second["metadata"]["request_id"]
    assert first["metadata"]["transport"] == "rest"


async def test_v2_request_id_is_echoed_and_precision_applied() -> None:
    service = PredictionService(ReferenceModel(), transport="grpc")
    request = service.parse(
        {"rows": [[1.23456, 1.0]], "request_id": "abc", "options": {"precision": 1}}, "v2"
    )
    answer = await service.predict_async(request)
    assert answer["predictions"] == [1.0]  # 0.9938 rounded to one decimal
    assert answer["metadata"]["request_id"] == "abc"
    assert answer["metadata"]["api"] == "v2"


def test_v2_disabled_is_refused() -> None:
    service = PredictionService(ReferenceModel(), transport="rest", enable_v2=False)
    with pytest.raises(ApiVersionDisabled, match="use v1"):
        service.parse({"instances": [1]}, "v2")
    assert service.parse({"instances": [1]}, "v1").rows == [[1]]


def test_asking_for_another_model_version_is_refused() -> None:
    service = PredictionService(ReferenceModel(), transport="rest")
    assert service.parse({"rows": [[1]], "model_version": "1.0"}, "v2").model_version == "1.0"
    with pytest.raises(ModelVersionMismatch, match=r"this server runs reference 1\.0"):
        service.parse({"rows": [[1]], "model_version": "9"}, "v2")


def _broken(rows: Sequence[Sequence[float]]) -> list[float]:
    raise ZeroDivisionError


class OneShortModel(ReferenceModel):
    name = "short"

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return super().predict(rows)[1:]


async def test_a_model_that_raises_is_a_model_failure() -> None:
    service = PredictionService(CallableModel(_broken, name="b", version="1"), transport="rest")
    request = service.parse({"instances": [1]}, "v1")
    with pytest.raises(ModelFailure, match="model b failed: ZeroDivisionError"):
        service.predict(request)
    with pytest.raises(ModelFailure):
        await service.predict_async(request)


def test_a_model_returning_the_wrong_count_is_a_model_failure() -> None:
    service = PredictionService(OneShortModel(), transport="rest")
    with pytest.raises(ModelFailure, match="0 predictions for 1 rows"):
        service.predict(service.parse({"instances": [1]}, "v1"))
