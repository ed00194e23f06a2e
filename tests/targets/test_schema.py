"""The canonical schema: what v1 and v2 accept, what they reject, and why."""

from __future__ import annotations

import math

import pytest

from targets.errors import InvalidRequest, RequestTooLarge
from targets.schema import (
    Limits,
    build_response,
    check_body_size,
    response_problem,
    validate_request,
)


def test_v1_accepts_one_flat_row_of_ints_and_floats() -> None:
    request = validate_request({"instances": [1, 2.5, -3e10]}, "v1")
    assert request.rows == [[1, 2.5, -3e10]]
    assert request.api == "v1"


def test_v1_accepts_an_empty_row() -> None:
    assert validate_request({"instances": []}, "v1").rows == [[]]


def test_both_versions_ignore_unknown_top_level_keys() -> None:
    body = {"instances": [1.0], "tracing": {"span": 1}}
    assert validate_request(body, "v1").rows == [[1.0]]
    assert validate_request(body, "v2").rows == [[1.0]]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({}, "instances", "missing required field 'instances'"),
        ({"instances": None}, "instances", "missing required field"),
        ({"instances": "1,2"}, "instances", "must be a list of numbers, got a string"),
        ({"instances": [1, "2"]}, "instances[1]", "got a string"),
        ({"instances": [True]}, "instances[0]", "got a boolean"),
        ({"instances": [None]}, "instances[0]", "got null"),
        ({"instances": [math.nan]}, "instances[0]", "got nan"),
        ({"instances": [math.inf]}, "instances[0]", "got inf"),
        ({"instances": [-math.inf]}, "instances[0]", "got -inf"),
        ({"instances": [10**400]}, "instances[0]", "beyond the range of a double"),
        ({"instances": [[1, 2]]}, "instances[0]", "several rows need /v2/predict"),
        ({"instances": [{"x": 1}]}, "instances[0]", "got an object"),
    ],
)
def test_v1_rejects_with_a_message_naming_the_field(body: object, field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(body, "v1")
    assert caught.value.field == field
    assert words in caught.value.message


@pytest.mark.parametrize("body", [None, [], [1, 2], "text", 3])
def test_a_body_that_is_not_an_object_is_rejected(body: object) -> None:
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        validate_request(body, "v1")


def test_instance_limit_is_enforced_per_request() -> None:
    limits = Limits(max_instances=3)
    assert validate_request({"instances": [1, 2, 3]}, "v1", limits).instance_count == 3
    with pytest.raises(InvalidRequest, match="too many instances: 4 > limit 3"):
        validate_request({"instances": [1, 2, 3, 4]}, "v1", limits)
    with pytest.raises(InvalidRequest, match="too many instances: 4 > limit 3"):
        validate_request({"rows": [[1, 2], [3, 4]]}, "v2", limits)


def test_v2_takes_several_rows_and_optional_fields() -> None:
    request = validate_request(
        {
            "rows": [[1, 2], [], [3.5]],
            "request_id": "r-1",
            "model_version": "1.0",
            "options": {"precision": 2},
        },
        "v2",
    )
    assert request.rows == [[1, 2], [], [3.5]]
    assert (request.request_id, request.model_version, request.precision) == ("r-1", "1.0", 2)
    assert request.api == "v2"


def test_v2_accepts_a_v1_body() -> None:
    assert validate_request({"instances": [4, 5]}, "v2").rows == [[4, 5]]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"instances": [1], "rows": [[1]]}, "exactly one of"),
        ({"request_id": "x"}, "exactly one of"),
        ({"rows": []}, "non-empty list of rows"),
        ({"rows": [1, 2]}, "rows[0] must be a list"),
        ({"rows": [[1], [math.nan]]}, "rows[1][0] must be a finite number"),
        ({"rows": [[1]], "request_id": 7}, "request_id must be a string"),
        ({"rows": [[1]], "request_id": "x" * 129}, "longer than 128"),
        ({"rows": [[1]], "options": []}, "options must be an object"),
        ({"rows": [[1]], "options": {"temperature": 1}}, "unknown option 'temperature'"),
        ({"rows": [[1]], "options": {"precision": 13}}, "precision must be an integer 0..12"),
        ({"rows": [[1]], "options": {"precision": 2.0}}, "precision must be an integer"),
    ],
)
def test_v2_rejections(body: object, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(body, "v2")
    assert words in caught.value.message


def test_unknown_api_version_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="api must be one of"):
        validate_request({"instances": []}, "v3")  # type: ignore[arg-type]


def test_body_size_check() -> None:
    limits = Limits(max_body_bytes=100)
    check_body_size(100, limits)
    with pytest.raises(RequestTooLarge, match="101 bytes, over the limit of 100"):
        check_body_size(101, limits)


def _response(**overrides: object) -> dict[str, object]:
    body = build_response(
        [0.5, 1.0],
        transport="rest",
        model_name="m",
        model_version="1",
        request_id="r",
        api="v2",
    )
    body.update(overrides)
    return body


def test_built_responses_meet_the_contract() -> None:
    assert response_problem(_response(), expected_predictions=2) is None


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "must be a JSON object"),
        ({"metadata": {}}, "'predictions' must be a list"),
        ({"predictions": [1.0, "2"], "metadata": {}}, "predictions[1] must be a finite number"),
        ({"predictions": [math.nan], "metadata": {}}, "predictions[0]"),
        ({"predictions": [1.0]}, "'metadata' must be an object"),
        ({"predictions": [1.0], "metadata": {"transport": "rest"}}, "metadata.model_name"),
    ],
)
def test_response_problems_are_named(body: object, words: str) -> None:
    problem = response_problem(body)
    assert problem is not None
    assert words in problem


def test_wrong_prediction_count_is_a_schema_failure() -> None:
    assert response_problem(_response(), expected_predictions=3) == "expected 3 predictions, got 2"
