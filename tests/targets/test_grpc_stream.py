"""``PredictStream``: order, in-place errors, micro-batching and backpressure-safe ends.

Responses are drained with ``read()`` until ``grpc.aio.EOF`` (never mixed with ``async for``),
and every loop is bounded by the number of messages sent.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

import grpc
import pytest

from targets.batching import BatchingConfig
from targets.rpc import convert
from targets.rpc import predict_pb2 as pb
from targets.schema import response_problem
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, RunningGrpc, expected, running_grpc


async def exchange(
    running: RunningGrpc, messages: Sequence[pb.PredictRequest]
) -> list[pb.PredictResponse]:
    """Write every message, half-close, then read exactly one answer each and the end."""
    call = running.stub.PredictStream(timeout=STEP_TIMEOUT_S)
    for message in messages:
        await call.write(message)
    await call.done_writing()
    responses = []
    for _ in messages:
        response = await call.read()
        assert response is not grpc.aio.EOF, "stream ended before every message was answered"
        responses.append(response)
    assert await call.read() is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK
    return responses


def instances(*rows: Sequence[float]) -> list[pb.PredictRequest]:
    return [pb.PredictRequest(instances=row) for row in rows]


async def test_answers_come_back_in_request_order_across_batches() -> None:
    rows = [[float(index), float(index) / 3] for index in range(40)]
    async with running_grpc(batching=BatchingConfig(max_batch_rows=3, window_s=0.001)) as running:
        responses = await exchange(running, instances(*rows))
        batches = running.target.batcher.batches
    assert [response.predictions[0] for response in responses] == expected(rows)
    assert batches >= len(rows) // 3  # several batches, so order was kept across them
    for response in responses:
        body = convert.from_response(response)
        assert response_problem(body, expected_predictions=1) is None
        assert body["metadata"]["transport"] == "grpc-stream"


async def test_a_bad_message_is_answered_in_place_and_the_stream_goes_on() -> None:
    messages = [
        pb.PredictRequest(instances=[1.0]),
        pb.PredictRequest(instances=[math.nan]),
        pb.PredictRequest(rows=[pb.Row(values=[2.0, 4.0])], request_id="two"),
        pb.PredictRequest(instances=[1.0], rows=[pb.Row(values=[1.0])]),
        pb.PredictRequest(rows=[pb.Row(values=[1.0])], options={"precision": "many"}),
        pb.PredictRequest(instances=[1.0], model_version="0.0"),
        pb.PredictRequest(instances=[3.0]),
    ]
    async with running_grpc() as running:
        responses = await exchange(running, messages)
        statuses = [line["status"] for line in running.access_lines()]
    errors = [(r.error.code, r.error.field) if r.HasField("error") else None for r in responses]
    assert errors == [
        None,
        ("invalid_request", "instances[0]"),
        None,
        ("invalid_request", "instances"),
        ("invalid_request", "options.precision"),
        ("model_version_mismatch", "model_version"),
        None,
    ]
    assert [responses[index].predictions[0] for index in (0, 2, 6)] == expected(
        [[1.0], [2.0, 4.0], [3.0]]
    )
    assert responses[2].metadata.request_id == "two"
    assert statuses == [
        "OK",
        "INVALID_ARGUMENT",
        "OK",
        "INVALID_ARGUMENT",
        "INVALID_ARGUMENT",
        "FAILED_PRECONDITION",
        "OK",
    ]


async def test_rows_on_a_v1_only_stream_are_flagged_in_place() -> None:
    messages = [pb.PredictRequest(rows=[pb.Row(values=[1.0])]), pb.PredictRequest(instances=[1.0])]
    async with running_grpc(enable_v2=False) as running:
        first, second = await exchange(running, messages)
    assert first.error.code == "api_version_disabled"
    assert "instances" in first.error.message
    assert list(second.predictions) == expected([[1.0]])


async def test_model_failure_is_answered_in_place_as_model_error() -> None:
    async with running_grpc("tests.targets.sample_models:ExplodingModel") as running:
        responses = await exchange(running, instances([1.0], [2.0]))
        statuses = [line["status"] for line in running.access_lines()]
    assert [response.error.code for response in responses] == ["model_error", "model_error"]
    assert statuses == ["INTERNAL", "INTERNAL"]


async def test_concurrent_messages_are_micro_batched() -> None:
    rows = [[float(index)] for index in range(16)]
    config = BatchingConfig(max_batch_rows=32, window_s=0.005)
    async with running_grpc("synthetic:fixed:20ms", batching=config) as running:
        responses = await exchange(running, instances(*rows))
        batcher = running.target.batcher
    assert [response.predictions[0] for response in responses] == expected(rows)
    assert batcher.batched_rows == len(rows)
    assert batcher.batches < len(rows)


async def test_one_batcher_serves_every_stream() -> None:
    # A batch closes only once it holds two rows (the window is far longer than any test), so
    # one batch for two single-message streams proves they share the batcher.
    config = BatchingConfig(max_batch_rows=2, window_s=STEP_TIMEOUT_S)
    async with running_grpc(batching=config) as running:
        first, second = await asyncio.gather(
            exchange(running, instances([1.0])), exchange(running, instances([5.0]))
        )
        batcher = running.target.batcher
    assert (first[0].predictions[0], second[0].predictions[0]) == tuple(expected([[1.0], [5.0]]))
    assert (batcher.batches, batcher.batched_rows) == (1, 2)


async def test_answers_arrive_while_the_client_is_still_writing() -> None:
    async with running_grpc() as running:
        call = running.stub.PredictStream(timeout=STEP_TIMEOUT_S)
        for value in (1.0, 2.0, 3.0):  # ping-pong: each answer before the next write
            await call.write(pb.PredictRequest(instances=[value]))
            response = await call.read()
            assert list(response.predictions) == expected([[value]])
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK


async def test_a_client_that_cancels_mid_stream_leaves_the_server_healthy() -> None:
    async with running_grpc("synthetic:fixed:20ms") as running:
        call = running.stub.PredictStream(timeout=STEP_TIMEOUT_S)
        for value in range(5):
            await call.write(pb.PredictRequest(instances=[float(value)]))
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        responses = await exchange(running, instances([1.0]))
    assert list(responses[0].predictions) == expected([[1.0]])
