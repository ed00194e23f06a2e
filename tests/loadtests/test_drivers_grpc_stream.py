"""The bidi-stream gRPC driver: answers matched in order, in-place errors, broken streams.

Harness runs are bounded (request count or a 1 s open-loop schedule, each under a timeout) and
go against the real target built by ``build_server`` on 127.0.0.1 port 0 in the test's loop.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import pytest

from loadtests.drivers.grpc_stream import GrpcStreamDriver, _Stream
from loadtests.engine.harness import LoadPlan
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload, PayloadSpec
from targets.rpc import predict_pb2 as pb
from tests.loadtests.test_drivers_grpc_support import (
    CLOSED,
    OPEN,
    StopTargetAfter,
    assert_all_answered_to_contract,
    run,
    unused_address,
)
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, GateModel, running_grpc

ONE_ROW = Payload("v1", [[1.0, 2.0]], {"instances": [1.0, 2.0]})
THREE_ROWS = Payload("v2", [[1.0], [2.0], [3.0]], {"rows": [[1.0], [2.0], [3.0]]})


class FailingModel:
    """A model that raises: the server answers each message in place with ``model_error``."""

    name = "failing"
    version = "1.0"

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        raise ArithmeticError("broken model")

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return self.predict(rows)


@pytest.mark.parametrize("plan", [CLOSED, OPEN], ids=["closed", "open"])
async def test_valid_payloads_succeed_and_invalid_ones_are_expected_rejections(
    plan: LoadPlan,
) -> None:
    spec = PayloadSpec(invalid_fraction=0.2)
    async with running_grpc() as running:
        driver = GrpcStreamDriver(running.address, streams=3)
        recorder = await run(driver, plan, spec)
    assert_all_answered_to_contract(recorder, spec)
    assert recorder.expected_rejections > 0
    extra = driver.extra()
    assert extra["streams"] == 3
    assert extra["stream_reopens"] == 0  # nothing broke, so nothing was reopened
    assert extra["first_response_ms"] > 0
    assert 0 < extra["gap_p50_ms"] <= extra["gap_p99_ms"]


async def test_mark_measure_start_leaves_warm_up_gaps_out_of_extra() -> None:
    async with running_grpc() as running:
        driver = GrpcStreamDriver(running.address, streams=2)
        await run(driver, CLOSED)
    assert "gap_p50_ms" in driver.extra()
    driver.mark_measure_start()  # as if everything so far had been warm-up
    extra = driver.extra()
    assert "gap_p50_ms" not in extra
    assert "gap_p99_ms" not in extra
    assert extra["first_response_ms"] > 0  # stream openings are not window-bound


async def test_multi_row_v2_payloads_count_one_prediction_per_row() -> None:
    spec = PayloadSpec(rows_per_request=3, v2_share_start=1.0)
    async with running_grpc() as running:
        recorder = await run(GrpcStreamDriver(running.address, streams=2), CLOSED, spec)
    assert_all_answered_to_contract(recorder, spec)
    assert recorder.predictions == 3 * recorder.successes == 3 * 200


async def test_a_late_answer_is_dropped_and_the_next_send_gets_its_own() -> None:
    """A one-row message times out; a three-row one after it must get three predictions."""
    model = GateModel()
    async with running_grpc(model) as running:
        driver = GrpcStreamDriver(running.address, timeout_s=0.2)
        await driver.open()
        try:
            late = await driver.send(ONE_ROW)
            # held in the model past its timeout, so its answer comes after the driver gave up
            await asyncio.wait_for(model.entered.wait(), STEP_TIMEOUT_S)
            model.release.set()
            answered = await driver.send(THREE_ROWS)
        finally:
            await driver.close()
    assert late == (Outcome.FAILURE, "timeout", 0, False)
    assert answered == (Outcome.OK, None, 3, True)
    assert driver.reopens == 0


async def test_a_model_failure_answered_in_place_is_a_failure_not_a_rejection() -> None:
    async with running_grpc(FailingModel()) as running:
        driver = GrpcStreamDriver(running.address, timeout_s=STEP_TIMEOUT_S)
        await driver.open()
        try:
            replies = [await driver.send(ONE_ROW) for _ in range(3)]
        finally:
            await driver.close()
    assert replies == [(Outcome.FAILURE, "internal", 0, False)] * 3
    assert driver.reopens == 0  # the stream went on after each


async def test_a_slow_target_past_the_timeout_fails_as_timeout() -> None:
    plan = LoadPlan(mode="closed", concurrency=4, requests=8, duration_s=None)
    async with running_grpc("synthetic:fixed:200ms") as running:
        driver = GrpcStreamDriver(running.address, streams=2, timeout_s=0.05)
        recorder = await run(driver, plan)
    assert recorder.errors == {"timeout": 8}
    assert driver.reopens == 0  # a timeout does not break the stream


async def test_a_target_stopped_mid_run_fails_streams_with_classified_errors() -> None:
    async with running_grpc() as running:
        inner = GrpcStreamDriver(running.address, streams=2, timeout_s=10.0, max_reopens=4)
        driver = StopTargetAfter(inner, 50, lambda: running.target.stop(0))
        recorder = await run(driver, CLOSED, PayloadSpec(invalid_fraction=0.2))
        assert driver.stopping is not None
        await driver.stopping
    assert recorder.requests == 200
    assert recorder.successes + recorder.expected_rejections >= 50
    assert recorder.failures > 0
    assert sum(recorder.errors.values()) == recorder.failures
    # a write racing the target's GOAWAY fails in the client's own grpc core: client_internal
    classes = {"unavailable", "cancelled", "stream_ended", "client_internal"}
    assert set(recorder.errors) <= classes, recorder.errors
    assert inner.reopens <= 4


async def test_an_unreachable_target_is_unavailable_and_reopening_is_bounded() -> None:
    plan = LoadPlan(mode="closed", concurrency=2, requests=10, duration_s=None)
    driver = GrpcStreamDriver(unused_address(), streams=2, timeout_s=10.0, max_reopens=3)
    recorder = await run(driver, plan)
    assert recorder.errors == {"unavailable": 10}
    assert driver.reopens == 3
    assert "first_response_ms" not in driver.extra()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"streams": 0}, "streams"),
        ({"max_reopens": -1}, "max_reopens"),
        ({"timeout_s": -1.0}, "timeout_s"),
        ({"timeout_s": math.nan}, "timeout_s"),
    ],
)
def test_the_stream_driver_names_a_bad_argument(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        GrpcStreamDriver("127.0.0.1:1", **options)


async def test_the_stream_driver_dials_nothing_before_open() -> None:
    driver = GrpcStreamDriver(unused_address())
    with pytest.raises(RuntimeError, match=r"before open\(\)"):
        await driver.send(ONE_ROW)
    await driver.close()


# -- the stream's own logic, against a scripted peer ---------------------------------------------

ANSWER = pb.PredictResponse(predictions=[0.5], metadata=pb.Metadata(transport="scripted"))
Responder = Callable[[pb.PredictRequest], list[pb.PredictResponse]]


class ScriptedCall:
    """Stands in for a grpc.aio bidi call; the test plays the server through ``respond``."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.inbox: asyncio.Queue[pb.PredictResponse | BaseException | None] = asyncio.Queue()
        self.status: grpc.StatusCode | None = None  # set when the call has ended
        self.write_error: Exception | None = None
        self.write_gate: asyncio.Event | None = None  # a write waits for it (flow control)

    async def write(self, message: pb.PredictRequest) -> None:
        if self.write_gate is not None:
            await self.write_gate.wait()
        if self.write_error is not None:
            raise self.write_error
        for response in self.respond(message):
            self.inbox.put_nowait(response)

    async def read(self) -> Any:
        item = await self.inbox.get()
        if item is None:
            return grpc.aio.EOF
        if isinstance(item, BaseException):
            raise item
        return item

    def end(self, status: grpc.StatusCode) -> None:
        """The peer ends the call: reads see the end (EOF, or the error for a non-OK status)."""
        self.status = status
        if status == grpc.StatusCode.OK:
            self.inbox.put_nowait(None)
        else:
            empty = grpc.aio.Metadata()
            self.inbox.put_nowait(grpc.aio.AioRpcError(status, empty, empty, "ended"))

    def done(self) -> bool:
        return self.status is not None

    def cancel(self) -> bool:
        if self.status is None:  # grpc.aio: read() on a locally cancelled call raises Cancelled
            self.status = grpc.StatusCode.CANCELLED
            self.inbox.put_nowait(asyncio.CancelledError())
        return True

    async def code(self) -> grpc.StatusCode | None:
        return self.status

    async def done_writing(self) -> None:
        self.inbox.put_nowait(None)


class ScriptedChannel:
    """What ``grpc.aio.insecure_channel`` returns in these tests: every call is scripted."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.calls: list[ScriptedCall] = []

    def unary_unary(self, *args: Any, **kwargs: Any) -> None:
        return None

    def stream_stream(self, *args: Any, **kwargs: Any) -> Callable[[], ScriptedCall]:
        return self._call

    def _call(self) -> ScriptedCall:
        self.calls.append(ScriptedCall(self.respond))
        return self.calls[-1]

    async def close(self) -> None:
        for call in self.calls:
            call.cancel()


async def scripted_driver(
    monkeypatch: pytest.MonkeyPatch, respond: Responder, timeout_s: float = STEP_TIMEOUT_S
) -> tuple[GrpcStreamDriver, ScriptedChannel]:
    channel = ScriptedChannel(respond)
    monkeypatch.setattr(grpc.aio, "insecure_channel", lambda address, **options: channel)
    driver = GrpcStreamDriver("scripted:1", timeout_s=timeout_s)
    await driver.open()
    return driver, channel


async def test_an_answer_nobody_asked_for_breaks_the_stream_and_the_next_send_reopens_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver, channel = await scripted_driver(monkeypatch, lambda message: [ANSWER, ANSWER])
    try:
        assert await driver.send(ONE_ROW) == (Outcome.OK, None, 1, True)
        assert channel.calls[0].done()  # the second, unasked answer broke it
        assert await driver.send(ONE_ROW) == (Outcome.OK, None, 1, True)
    finally:
        await driver.close()
    assert (driver.reopens, len(channel.calls)) == (1, 2)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [(grpc.StatusCode.UNAVAILABLE, "unavailable"), (grpc.StatusCode.OK, "stream_ended")],
)
async def test_a_write_on_an_ended_call_fails_with_why_the_call_ended(
    monkeypatch: pytest.MonkeyPatch, status: grpc.StatusCode, error_class: str
) -> None:
    driver, channel = await scripted_driver(monkeypatch, lambda message: [ANSWER])
    channel.calls[0].end(status)
    channel.calls[0].write_error = asyncio.InvalidStateError("RPC already finished.")
    try:
        assert await driver.send(ONE_ROW) == (Outcome.FAILURE, error_class, 0, False)
    finally:
        await driver.close()


async def test_a_write_stuck_past_the_timeout_breaks_only_its_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver, channel = await scripted_driver(monkeypatch, lambda message: [ANSWER], timeout_s=0.05)
    channel.calls[0].write_gate = asyncio.Event()  # never opened: the peer stopped reading
    try:
        assert await driver.send(ONE_ROW) == (Outcome.FAILURE, "timeout", 0, False)
        assert channel.calls[0].status == grpc.StatusCode.CANCELLED
        assert await driver.send(ONE_ROW) == (Outcome.OK, None, 1, True)
    finally:
        await driver.close()
    assert driver.reopens == 1


async def test_sends_that_find_the_write_slot_taken_write_in_send_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[bytes] = []

    def respond(message: Any) -> list[pb.PredictResponse]:
        written.append(message)
        return [ANSWER]

    driver, channel = await scripted_driver(monkeypatch, respond)  # one stream
    gate = channel.calls[0].write_gate = asyncio.Event()  # the first write waits for it
    payloads = [Payload("v1", [[float(k)]], {"instances": [float(k)]}) for k in range(4)]
    try:
        sends = [asyncio.ensure_future(driver.send(payload)) for payload in payloads]
        await asyncio.sleep(0)  # the first holds the slot; the other three wait their turn
        sends[1].cancel()  # gives up its turn before it comes
        gate.set()
        replies = await asyncio.gather(*sends, return_exceptions=True)
        assert isinstance(replies[1], asyncio.CancelledError)
        assert [replies[k] for k in (0, 2, 3)] == [(Outcome.OK, None, 1, True)] * 3
        expected = [pb.PredictRequest(instances=[float(k)]) for k in (0, 2, 3)]
        assert [pb.PredictRequest.FromString(data) for data in written] == expected
        assert await driver.send(ONE_ROW) == (Outcome.OK, None, 1, True)  # the slot is free
    finally:
        await driver.close()
    assert driver.reopens == 0


async def test_a_turn_handed_over_as_its_send_is_cancelled_passes_to_the_next() -> None:
    loop = asyncio.get_running_loop()
    stream = _Stream(ScriptedCall(lambda message: []), 0, 0)
    stream.write_busy = True  # a write in flight
    second, third = (loop.create_task(stream.wait_turn(loop)) for _ in range(2))
    await asyncio.sleep(0)  # both queued
    stream.pass_turn()  # the write ended: the slot goes to the second...
    second.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(second, return_exceptions=True)
    await asyncio.wait_for(third, STEP_TIMEOUT_S)  # so the third has it
    assert stream.write_busy
    stream.pass_turn()
    assert not stream.write_busy
    assert not stream.turns
