"""gRPC overload: past the bound a call ends UNAVAILABLE, a stream message is answered in place
``overloaded``; never RESOURCE_EXHAUSTED (that means an oversize message), never INTERNAL.

In-process (a model held open on demand) for the exact bound logic; then a real ``servelab serve
grpc`` with ``synthetic:fixed:300ms`` for the CLI wiring.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from targets.admission import AdmissionGate
from targets.batching import BatchingConfig
from targets.logs import JsonLogger
from targets.models import Model
from targets.rpc import predict_pb2 as pb
from targets.rpc import predict_pb2_grpc
from targets.rpc.server import ERROR_CODE_KEY, RETRY_PUSHBACK_KEY, GrpcTarget, build_server
from targets.schema import DEFAULT_MAX_BODY_BYTES
from targets.service import PredictionService
from targets.spec import load_model
from tests.conftest import RunningTarget
from tests.targets.test_grpc_support import GateModel
from tests.targets.test_overload_gate import STEP_TIMEOUT_S, wait_until

ROW = pb.PredictRequest(instances=[1.0, 2.0, 3.0])


@contextlib.asynccontextmanager
async def gated_grpc(
    model: Model, gate: AdmissionGate
) -> AsyncIterator[tuple[GrpcTarget, grpc.aio.Channel]]:
    service = PredictionService(model, transport="grpc")
    target = build_server(
        service,
        batching=BatchingConfig(),
        max_message_bytes=DEFAULT_MAX_BODY_BYTES,
        logger=JsonLogger(io.StringIO(), "info"),
        admission=gate,
    )
    await target.start("127.0.0.1", 0)
    assert target.address is not None
    channel = grpc.aio.insecure_channel(target.address)
    try:
        yield target, channel
    finally:
        await channel.close()
        await target.stop(grace_s=0)


async def _health(channel: grpc.aio.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=STEP_TIMEOUT_S)
    status: int = response.status
    return status


async def _predict(stub: Any) -> pb.PredictResponse:
    response: pb.PredictResponse = await stub.Predict(ROW, timeout=STEP_TIMEOUT_S)
    return response


def _assert_overloaded(error: BaseException) -> None:
    assert isinstance(error, grpc.aio.AioRpcError), error
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    trailing = dict(error.trailing_metadata() or ())
    assert trailing[ERROR_CODE_KEY] == "overloaded"
    assert trailing[RETRY_PUSHBACK_KEY] == "1000"


async def test_unary_past_the_bound_is_unavailable_and_stream_messages_overloaded_in_place() -> (
    None
):
    model = GateModel()
    gate = AdmissionGate(2, 1)
    async with gated_grpc(model, gate) as (_, channel):
        stub = predict_pb2_grpc.PredictorStub(channel)
        held = [asyncio.create_task(_predict(stub)) for _ in range(3)]
        await wait_until(lambda: (gate.in_flight, gate.waiting) == (2, 1))
        shed = await asyncio.gather(
            *(stub.Predict(ROW, timeout=STEP_TIMEOUT_S) for _ in range(4)),
            return_exceptions=True,
        )
        for error in shed:
            _assert_overloaded(error)
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        stream = stub.PredictStream(timeout=STEP_TIMEOUT_S)
        await stream.write(ROW)
        answer = await stream.read()
        assert answer.error.code == "overloaded"  # answered in place; the stream goes on
        model.release.set()
        answered = await asyncio.wait_for(asyncio.gather(*held), STEP_TIMEOUT_S)
        assert all(list(response.predictions) == [1.7] for response in answered)
        await stream.write(ROW)
        answer = await stream.read()
        assert not answer.HasField("error")
        assert list(answer.predictions) == [1.7]
        await stream.done_writing()
        assert await stream.code() == grpc.StatusCode.OK
        assert (await stub.Predict(ROW, timeout=STEP_TIMEOUT_S)).predictions == [1.7]
    assert (gate.in_flight, gate.waiting, gate.shed) == (0, 0, 5)


async def test_one_busy_stream_is_slowed_not_shed() -> None:
    gate = AdmissionGate(2, 1)
    async with gated_grpc(load_model("synthetic:fixed:20ms"), gate) as (_, channel):
        stream = predict_pb2_grpc.PredictorStub(channel).PredictStream(timeout=STEP_TIMEOUT_S)
        for _ in range(12):  # pipelined: far more than 2 in flight + 1 queued
            await stream.write(ROW)
        await stream.done_writing()
        answers = [await stream.read() for _ in range(12)]
        assert await stream.code() == grpc.StatusCode.OK
    assert [answer.error.code for answer in answers] == [""] * 12
    assert (gate.in_flight, gate.shed) == (0, 0)


async def test_a_model_that_raises_is_still_internal_and_frees_its_slot() -> None:
    gate = AdmissionGate(1)
    model = load_model("tests.targets.sample_models:ExplodingModel")
    async with gated_grpc(model, gate) as (_, channel):
        stub = predict_pb2_grpc.PredictorStub(channel)
        for _ in range(3):  # were the slot leaked, the second call would be UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Predict(ROW, timeout=STEP_TIMEOUT_S)
            assert caught.value.code() == grpc.StatusCode.INTERNAL
        stream = stub.PredictStream(timeout=STEP_TIMEOUT_S)
        await stream.write(ROW)
        assert (await stream.read()).error.code == "model_error"
        await stream.done_writing()
        await stream.code()
    assert (gate.in_flight, gate.shed) == (0, 0)


async def test_real_server_sheds_exactly_the_calls_over_the_bound(spawn_target: Any) -> None:
    target: RunningTarget = spawn_target(
        "grpc",
        "--model",
        "synthetic:fixed:300ms",
        "--max-in-flight",
        "2",
        "--max-queue",
        "1",
        "--log-level",
        "warning",
    )
    async with grpc.aio.insecure_channel(target.address) as channel:
        stub = predict_pb2_grpc.PredictorStub(channel)
        await channel.channel_ready()  # connect first, so all ten go out together
        outcomes = await asyncio.gather(
            *(stub.Predict(ROW, timeout=STEP_TIMEOUT_S) for _ in range(10)),
            return_exceptions=True,
        )
        served = [outcome for outcome in outcomes if isinstance(outcome, pb.PredictResponse)]
        shed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert (len(served), len(shed)) == (3, 7)  # 2 in flight + 1 queued, the rest shed
        for error in shed:
            _assert_overloaded(error)
        assert await _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert (await stub.Predict(ROW, timeout=STEP_TIMEOUT_S)).predictions == [1.7]
    assert target.process.poll() is None
