"""Proto <-> canonical conversion and the error-to-status table, without a server."""

from __future__ import annotations

import grpc
import pytest

from targets.errors import (
    ApiVersionDisabled,
    InvalidRequest,
    MalformedRequest,
    ModelFailure,
    ModelVersionMismatch,
    RequestError,
    RequestTooLarge,
    ServelabError,
)
from targets.models import ReferenceModel
from targets.rpc import convert
from targets.rpc import predict_pb2 as pb
from targets.rpc.server import translate
from targets.schema import response_problem
from targets.service import PredictionService


def service(*, enable_v2: bool = True) -> PredictionService:
    return PredictionService(ReferenceModel(), transport="grpc", enable_v2=enable_v2)


def test_plain_instances_are_v1() -> None:
    body, api = convert.to_canonical(pb.PredictRequest(instances=[1, 2.5]), enable_v2=True)
    assert (body, api) == ({"instances": [1.0, 2.5]}, "v1")


def test_no_field_at_all_is_the_empty_v1_row() -> None:
    body, api = convert.to_canonical(pb.PredictRequest(), enable_v2=True)
    assert (body, api) == ({"instances": []}, "v1")
    request = service().parse(body, api)
    assert request.rows == [[]]


def test_rows_are_v2_with_their_optional_fields() -> None:
    message = pb.PredictRequest(
        rows=[pb.Row(values=[1, 2]), pb.Row(values=[])],
        request_id="r-1",
        model_version="1.0",
        options={"precision": "2"},
    )
    body, api = convert.to_canonical(message, enable_v2=True)
    assert api == "v2"
    assert body == {
        "rows": [[1.0, 2.0], []],
        "request_id": "r-1",
        "model_version": "1.0",
        "options": {"precision": 2},
    }
    parsed = service().parse(body, api)
    assert (parsed.request_id, parsed.precision) == ("r-1", 2)


def test_v2_fields_on_instances_make_a_v2_request_when_enabled() -> None:
    message = pb.PredictRequest(instances=[3], request_id="abc")
    assert convert.to_canonical(message, enable_v2=True) == (
        {"instances": [3.0], "request_id": "abc"},
        "v2",
    )


def test_v1_only_server_ignores_v2_fields_like_unknown_ones() -> None:
    message = pb.PredictRequest(instances=[3], request_id="abc", options={"precision": "x"})
    assert convert.to_canonical(message, enable_v2=False) == ({"instances": [3.0]}, "v1")


def test_rows_on_v1_only_server_say_how_to_send_v1() -> None:
    with pytest.raises(ApiVersionDisabled) as caught:
        convert.to_canonical(pb.PredictRequest(rows=[pb.Row(values=[1])]), enable_v2=False)
    assert "one row per request in 'instances'" in caught.value.message
    assert caught.value.field == "rows"


def test_instances_and_rows_together_are_left_to_the_canonical_validator() -> None:
    message = pb.PredictRequest(instances=[1], rows=[pb.Row(values=[1])])
    body, api = convert.to_canonical(message, enable_v2=True)
    assert set(body) == {"instances", "rows"}
    with pytest.raises(InvalidRequest, match="exactly one of"):
        service().parse(body, api)


@pytest.mark.parametrize("text", ["3", " 3 ", "+3", "-1"])
def test_precision_text_that_is_an_integer_converts(text: str) -> None:
    message = pb.PredictRequest(rows=[pb.Row(values=[1])], options={"precision": text})
    body, _ = convert.to_canonical(message, enable_v2=True)
    assert body["options"]["precision"] == int(text)


@pytest.mark.parametrize("text", ["x", "2.5", "", "1e2", "٣", "1_0", "9" * 12])
def test_precision_text_that_is_not_an_integer_is_invalid(text: str) -> None:
    message = pb.PredictRequest(rows=[pb.Row(values=[1])], options={"precision": text})
    with pytest.raises(InvalidRequest) as caught:
        convert.to_canonical(message, enable_v2=True)
    assert caught.value.field == "options.precision"


def test_unknown_options_reach_the_validator_as_strings() -> None:
    message = pb.PredictRequest(rows=[pb.Row(values=[1])], options={"colour": "red"})
    body, api = convert.to_canonical(message, enable_v2=True)
    assert body["options"] == {"colour": "red"}
    with pytest.raises(InvalidRequest, match="unknown option 'colour'"):
        service().parse(body, api)


def test_response_round_trips_through_the_canonical_body() -> None:
    svc = service()
    answer = svc.respond(svc.parse({"rows": [[1.0], [2.0, 4.0]]}, "v2"), [0.9, 2.5])
    message = convert.to_response(answer)
    body = convert.from_response(pb.PredictResponse.FromString(message.SerializeToString()))
    assert body == answer
    assert response_problem(body, expected_predictions=2) is None


def test_error_response_carries_code_message_and_field() -> None:
    message = convert.to_error_response("invalid_request", "bad", "instances[0]")
    assert not message.predictions
    assert convert.from_response(message) == {
        "error": {"code": "invalid_request", "message": "bad", "field": "instances[0]"}
    }
    assert (
        "field" not in convert.from_response(convert.to_error_response("model_error", "x"))["error"]
    )


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (MalformedRequest("m"), grpc.StatusCode.INVALID_ARGUMENT),
        (InvalidRequest("m", "instances"), grpc.StatusCode.INVALID_ARGUMENT),
        (RequestTooLarge("m"), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (ApiVersionDisabled("m"), grpc.StatusCode.UNIMPLEMENTED),
        (ModelVersionMismatch("m", "model_version"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_client_mistakes_map_to_their_status(error: RequestError, status: grpc.StatusCode) -> None:
    failure = translate(error)
    assert (failure.status, failure.code, failure.message, failure.field) == (
        status,
        error.code,
        "m",
        error.field,
    )


def test_a_subclass_of_a_mapped_error_keeps_its_parents_status() -> None:
    class TooManyRows(RequestTooLarge):
        code = "too_many_rows"

    assert translate(TooManyRows("m")).status == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "error",
    [ModelFailure("model x failed: RuntimeError"), RuntimeError("secret"), ServelabError("s")],
)
def test_server_faults_are_internal_never_a_client_code(error: Exception) -> None:
    failure = translate(error)
    assert failure.status == grpc.StatusCode.INTERNAL
    assert "secret" not in failure.message
    expected_code = "model_error" if isinstance(error, ModelFailure) else "internal_error"
    assert failure.code == expected_code
