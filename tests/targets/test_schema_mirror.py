"""The pydantic models FastAPI documents accept and reject what the stdlib validator does."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from targets.errors import InvalidRequest
from targets.rest.api_models import PredictRequestV1, PredictRequestV2
from targets.schema import DEFAULT_MAX_INSTANCES, validate_request

numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**400), 0, -0.0, 1.7976931348623157e308]),
)
scalars = st.one_of(st.none(), st.booleans(), st.text(max_size=5), numbers)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
rows = st.lists(st.one_of(numbers, numbers, numbers, json_values), max_size=6)
options = st.one_of(
    st.none(),
    json_values,
    st.fixed_dictionaries(
        {}, optional={"precision": st.one_of(st.integers(-2, 14), scalars), "x": scalars}
    ),
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "instances": st.one_of(rows, json_values),
            "rows": st.one_of(st.lists(rows, max_size=4), json_values),
            "request_id": st.one_of(st.text(max_size=130), scalars),
            "model_version": st.one_of(st.text(max_size=3), scalars),
            "options": options,
            "extra": json_values,
        },
    ),
)


def _stdlib_accepts(body: object, api: str) -> bool:
    try:
        validate_request(body, api)  # type: ignore[arg-type]
    except InvalidRequest:
        return False
    return True


def _pydantic_accepts(body: object, model: type[pydantic.BaseModel]) -> bool:
    try:
        model.model_validate(body)
    except pydantic.ValidationError:
        return False
    return True


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=bodies)
def test_v1_mirror_agrees(body: Any) -> None:
    assert _stdlib_accepts(body, "v1") == _pydantic_accepts(body, PredictRequestV1), body


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=bodies)
def test_v2_mirror_agrees(body: Any) -> None:
    assert _stdlib_accepts(body, "v2") == _pydantic_accepts(body, PredictRequestV2), body


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [0.0] * DEFAULT_MAX_INSTANCES},
        {"instances": [0.0] * (DEFAULT_MAX_INSTANCES + 1)},
        {"rows": [[0.0]] * DEFAULT_MAX_INSTANCES},
        {"rows": [[0.0]] * (DEFAULT_MAX_INSTANCES + 1)},
        {"rows": [[0.0] * 6000, [0.0] * 4000]},
        {"rows": [[0.0] * 6000, [0.0] * 4001]},
        {"rows": [[1.0]], "request_id": "x" * 128},
        {"rows": [[1.0]], "request_id": "x" * 129},
        {"rows": [[1.0]], "options": {"precision": 12}},
        {"rows": [[1.0]], "options": {"precision": True}},
    ],
)
def test_mirror_agrees_at_the_limits(body: dict[str, Any]) -> None:
    assert _stdlib_accepts(body, "v2") == _pydantic_accepts(body, PredictRequestV2)
    if "instances" in body:
        assert _stdlib_accepts(body, "v1") == _pydantic_accepts(body, PredictRequestV1)
