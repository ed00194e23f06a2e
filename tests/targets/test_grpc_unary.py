"""Unary ``Predict``, health, reflection, error codes and graceful stop, against an in-process
grpc.aio server on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from targets.rpc import predict_pb2 as pb
from targets.schema import response_problem
from tests.targets.test_grpc_support import (
    STEP_TIMEOUT_S,
    GateModel,
    RunningGrpc,
    expected,
    running_grpc,
)

ROWS = [[1.0, 2.0, 3.0], [0.5], [-4.0, 10.0], [0.1, 0.2, 0.3, 0.4]]


async def predict(running: RunningGrpc, message: pb.PredictRequest) -> pb.PredictResponse:
    response: pb.PredictResponse = await running.stub.Predict(message, timeout=STEP_TIMEOUT_S)
    return response


async def rpc_error(running: RunningGrpc, message: pb.PredictRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await predict(running, message)
    return caught.value


@pytest.mark.parametrize("row", ROWS)
async def test_v1_instances_get_the_reference_value(row: list[float]) -> None:
    async with running_grpc() as running:
        response = await predict(running, pb.PredictRequest(instances=row))
    assert list(response.predictions) == expected([row])
    metadata = response.metadata
    assert (metadata.transport, metadata.api, metadata.model_name) == ("grpc", "v1", "reference")
    assert metadata.model_version == "1.0"
    assert metadata.request_id.startswith("grpc-")


async def test_v1_empty_instances_predict_zero() -> None:
    async with running_grpc() as running:
        response = await predict(running, pb.PredictRequest(instances=[]))
    assert list(response.predictions) == [0.0]


async def test_v2_rows_get_one_prediction_each_and_echo_the_request_id() -> None:
    message = pb.PredictRequest(rows=[pb.Row(values=row) for row in ROWS], request_id="req-42")
    async with running_grpc() as running:
        response = await predict(running, message)
    assert list(response.predictions) == expected(ROWS)
    assert (response.metadata.api, response.metadata.request_id) == ("v2", "req-42")


async def test_v2_precision_option_rounds_predictions() -> None:
    row = [0.123456, 0.654321]
    message = pb.PredictRequest(rows=[pb.Row(values=row)], options={"precision": "2"})
    async with running_grpc() as running:
        response = await predict(running, message)
    assert list(response.predictions) == [round(expected([row])[0], 2)]


async def test_health_reports_serving_for_the_server_and_the_predictor() -> None:
    async with running_grpc() as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        for service in ("", "servelab.v1.Predictor"):
            reply = await health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=STEP_TIMEOUT_S
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def call_through_reflection(address: str, row: list[float]) -> tuple[list[str], dict[str, object]]:
    """A generic client: no generated code, only what the server describes about itself."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName("servelab.v1.Predictor").methods_by_name["Predict"]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.ParseDict({"instances": row}, request_class())
        call = channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        response = call(request, timeout=STEP_TIMEOUT_S)
        body = json_format.MessageToDict(
            response,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    return services, body


async def test_reflection_lets_a_generic_client_call_by_name() -> None:
    async with running_grpc() as running:
        # The reflection database speaks blocking grpc: run it off the server's event loop.
        services, body = await asyncio.to_thread(call_through_reflection, running.address, ROWS[0])
    assert services == [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "inference.GRPCInferenceService",
        "servelab.v1.Predictor",
    ]
    assert response_problem(body, expected_predictions=1) is None
    assert body["predictions"] == expected([ROWS[0]])


BAD_REQUESTS = {
    "nan": (pb.PredictRequest(instances=[1.0, math.nan]), "instances[1]"),
    "infinity": (pb.PredictRequest(instances=[math.inf]), "instances[0]"),
    "negative infinity in rows": (
        pb.PredictRequest(rows=[pb.Row(values=[-math.inf])]),
        "rows[0][0]",
    ),
    "too many instances": (pb.PredictRequest(instances=[1.0] * 5), "instances"),
    "too many rows": (pb.PredictRequest(rows=[pb.Row(values=[1.0])] * 5), "rows"),
    "instances and rows": (
        pb.PredictRequest(instances=[1.0], rows=[pb.Row(values=[1.0])]),
        "instances",
    ),
    "precision not an int": (
        pb.PredictRequest(rows=[pb.Row(values=[1.0])], options={"precision": "two"}),
        "options.precision",
    ),
    "precision out of range": (
        pb.PredictRequest(rows=[pb.Row(values=[1.0])], options={"precision": "99"}),
        "options.precision",
    ),
    "unknown option": (
        pb.PredictRequest(rows=[pb.Row(values=[1.0])], options={"colour": "red"}),
        "options.colour",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
async def test_invalid_input_is_invalid_argument_and_the_server_serves_on(case: str) -> None:
    message, field = BAD_REQUESTS[case]
    async with running_grpc(max_instances=4) as running:
        error = await rpc_error(running, message)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        trailers = dict(error.trailing_metadata() or ())
        assert trailers == {"servelab-error-code": "invalid_request", "servelab-error-field": field}
        ok = await predict(running, pb.PredictRequest(instances=[1.0, 2.0]))
        assert list(ok.predictions) == expected([[1.0, 2.0]])
        statuses = [line["status"] for line in running.access_lines()]
    assert statuses == ["INVALID_ARGUMENT", "OK"]


async def test_model_version_mismatch_is_failed_precondition() -> None:
    async with running_grpc() as running:
        error = await rpc_error(running, pb.PredictRequest(instances=[1.0], model_version="9.9"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "9.9" in (error.details() or "")
        same = await predict(running, pb.PredictRequest(instances=[1.0], model_version="1.0"))
    assert same.metadata.api == "v2"


async def test_rows_on_a_v1_only_server_are_unimplemented_with_a_hint() -> None:
    async with running_grpc(enable_v2=False) as running:
        error = await rpc_error(running, pb.PredictRequest(rows=[pb.Row(values=[1.0])]))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "one row per request in 'instances'" in (error.details() or "")
        # Other v2 fields are ignored, as an old server ignores fields it does not know.
        ok = await predict(
            running, pb.PredictRequest(instances=[1.0], request_id="x", options={"precision": "?"})
        )
    assert ok.metadata.api == "v1"
    assert ok.metadata.request_id != "x"


async def test_a_model_that_raises_is_internal_not_a_client_error() -> None:
    async with running_grpc("tests.targets.sample_models:ExplodingModel") as running:
        for _ in range(2):  # and the server keeps answering
            error = await rpc_error(running, pb.PredictRequest(instances=[1.0]))
            assert error.code() == grpc.StatusCode.INTERNAL
            assert "corrupt" not in (error.details() or "")  # the model's text stays inside
            assert dict(error.trailing_metadata() or ())["servelab-error-code"] == "model_error"
        health = health_pb2_grpc.HealthStub(running.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=STEP_TIMEOUT_S)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert [line["status"] for line in running.access_lines()] == ["INTERNAL", "INTERNAL"]


async def test_message_over_the_size_limit_is_refused_by_grpc_as_resource_exhausted() -> None:
    async with running_grpc(max_message_bytes=1024) as running:
        error = await rpc_error(running, pb.PredictRequest(instances=[0.5] * 1000))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await predict(running, pb.PredictRequest(instances=[0.5] * 10))
    assert list(ok.predictions) == expected([[0.5] * 10])


async def test_access_log_has_one_line_per_call() -> None:
    async with running_grpc() as running:
        await predict(
            running, pb.PredictRequest(instances=[1.0], request_id="a", model_version="1.0")
        )
        await rpc_error(running, pb.PredictRequest(instances=[math.nan]))
        lines = running.access_lines()
    assert [(line["status"], line["request_id"]) for line in lines] == [
        ("OK", "a"),
        ("INVALID_ARGUMENT", None),
    ]
    for line in lines:
        assert line["transport"] == "grpc"
        assert line["route"] == "/servelab.v1.Predictor/Predict"
        assert line["latency_ms"] >= 0


async def test_stop_reports_not_serving_and_lets_the_in_flight_call_finish() -> None:
    model = GateModel()
    async with running_grpc(model) as running:
        in_flight = asyncio.ensure_future(predict(running, pb.PredictRequest(instances=[2.0])))
        await asyncio.wait_for(model.entered.wait(), STEP_TIMEOUT_S)
        stopping = asyncio.ensure_future(running.target.stop(grace_s=STEP_TIMEOUT_S))
        status = None
        for _ in range(1000):  # health flips before the server stops accepting calls
            reply = await running.target.health.Check(health_pb2.HealthCheckRequest(), None)
            status = reply.status
            if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not in_flight.done()
        model.release.set()
        response = await asyncio.wait_for(in_flight, STEP_TIMEOUT_S)
        await asyncio.wait_for(stopping, STEP_TIMEOUT_S)
    assert list(response.predictions) == expected([[2.0]])
