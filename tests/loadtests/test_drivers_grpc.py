"""The unary and in-process gRPC drivers, and the payload/status edge all gRPC drivers share.

Harness runs are bounded (request count or a 1 s open-loop schedule, each under a timeout) and
go against the real target built by ``build_server`` on 127.0.0.1 port 0 in the test's loop.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from loadtests.drivers.base import Driver
from loadtests.drivers.grpc import (
    ERROR_CLASS_BY_STATUS,
    STATUS_BY_ERROR_CODE,
    CallAborted,
    GrpcInProcessDriver,
    GrpcUnaryDriver,
    MessageCache,
    RecordingContext,
    reply_for_error,
    reply_for_status,
    to_message,
)
from loadtests.engine.harness import LoadPlan
from loadtests.engine.records import Outcome
from loadtests.engine.workload import (
    INVALID_BODIES,
    ApiName,
    Payload,
    PayloadGenerator,
    PayloadSpec,
)
from targets.batching import BatchingConfig, MicroBatcher
from targets.errors import InvalidRequest, ModelFailure, Overloaded, RequestError
from targets.logs import JsonLogger
from targets.rpc import convert
from targets.rpc import predict_pb2 as pb
from targets.rpc.server import PredictorServicer, build_server, translate
from targets.schema import validate_request
from targets.service import PredictionService
from targets.spec import load_model
from tests.loadtests.test_drivers_grpc_support import (
    CLOSED,
    OPEN,
    SEED,
    StopTargetAfter,
    assert_all_answered_to_contract,
    run,
    unused_address,
)
from tests.targets.test_grpc_support import running_grpc

VALID = Payload("v1", [[1.0, 2.0]], {"instances": [1.0, 2.0]})
INVALID = Payload("v1", [], {"instances": ["x"]}, valid=False)


def make_servicer(model: str = "reference") -> PredictorServicer:
    """The target's servicer, unstarted: the in-process driver calls its ``Predict`` only."""
    service = PredictionService(load_model(model), transport="grpc")
    logger = JsonLogger(io.StringIO(), "warning")
    return PredictorServicer(service, MicroBatcher(service), logger, pending_limit=16)


@contextlib.asynccontextmanager
async def grpc_driver(kind: str, model: str = "reference", **options: Any) -> AsyncIterator[Driver]:
    """A driver of ``kind`` for ``model``: over the network to a served target, or in-process."""
    if kind == "inprocess":
        yield GrpcInProcessDriver(make_servicer(model), **options)
        return
    async with running_grpc(model) as running:
        yield GrpcUnaryDriver(running.address, **options)


# -- payload → message ---------------------------------------------------------------------------


def test_v1_payloads_become_instances_and_multi_row_v2_payloads_rows() -> None:
    spec = PayloadSpec(rows_per_request=3, v2_share_start=0.5, min_instances=2, max_instances=6)
    payloads = PayloadGenerator(spec, SEED)
    seen = set()
    for index in range(50):
        payload = payloads.payload(index)
        body, api = convert.to_canonical(to_message(payload), enable_v2=True)
        seen.add(payload.api)
        assert body == payload.body
        assert api == ("v2" if "rows" in payload.body else "v1")
    assert seen == {"v1", "v2"}


def test_v2_extras_travel_as_their_proto_fields() -> None:
    rows = [[1.0], [2.0, 3.0]]
    body = {"rows": rows, "request_id": "r-1", "model_version": "1.0", "options": {"precision": 2}}
    message = to_message(Payload("v2", rows, body))
    assert (message.request_id, message.model_version) == ("r-1", "1.0")
    assert dict(message.options) == {"precision": "2"}
    assert convert.to_canonical(message, enable_v2=True) == (body, "v2")


V2_INVALID_BODIES: tuple[dict[str, Any], ...] = (
    {"rows": [[1.0], ["x"]]},
    {"rows": [[1.0]], "instances": [1.0]},
    {"rows": []},
    {"rows": [[1.0]], "options": {"precision": "many"}},
    {"rows": [[1.0]], "options": {"colour": "red"}},
)


@pytest.mark.parametrize(
    ("api", "body"),
    [
        *(("v1", body) for body in (*INVALID_BODIES, {"instances": [True]})),
        *(("v2", body) for body in (*INVALID_BODIES, *V2_INVALID_BODIES)),
    ],
)
def test_an_invalid_body_becomes_a_message_the_canonical_validator_rejects(
    api: ApiName, body: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest):  # the body really breaks the contract for ``api``
        validate_request(body, api)
    message = to_message(Payload(api, [], body, valid=False))
    service = PredictionService(load_model("reference"), transport="grpc")
    with pytest.raises(RequestError):
        service.parse(*convert.to_canonical(message, enable_v2=True))


def test_the_message_cache_builds_each_payload_once_and_stays_bounded() -> None:
    cache = MessageCache(limit=2)
    first, size = cache.get(VALID)
    assert cache.get(VALID) == (first, size)
    assert cache.get(VALID)[0] is first
    assert size == first.ByteSize() > 0
    twin = Payload("v1", [[1.0, 2.0]], {"instances": [1.0, 2.0]})  # equal, but another object
    assert cache.get(twin)[0] is not first
    cache.get(INVALID)  # over the limit: the cache starts afresh instead of growing
    assert cache.get(VALID)[0] is not first
    with pytest.raises(ValueError, match="limit"):
        MessageCache(limit=0)
    assert pb.PredictRequest.FromString(cache.data(VALID)) == cache.get(VALID)[0]  # its bytes


def _answer(predictions: list[float], request_id: str, *, metadata: bool = True) -> Any:
    response = pb.PredictResponse(predictions=predictions)
    if metadata:
        response.metadata.CopyFrom(pb.Metadata(transport="grpc", model_name="reference",
                                               model_version="1", request_id=request_id,
                                               api="v1"))  # fmt: skip
    return response


def test_the_answer_judge_gives_the_canonical_verdict_once_per_distinct_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loadtests.drivers import grpc as grpc_driver

    judged: list[Any] = []
    canonical = grpc_driver.judge_response

    def counting(payload: Payload, response: Any) -> Any:
        judged.append(response)
        return canonical(payload, response)

    monkeypatch.setattr(grpc_driver, "judge_response", counting)
    judge = grpc_driver.AnswerJudge()
    answers = [
        _answer([0.5], "a"), _answer([0.5], "b"),  # equal but for the request id: one check
        _answer([0.5, 0.5], "c"),  # two predictions for one row: schema
        _answer([math.inf], "d"),  # not finite: schema
        _answer([0.5], "e", metadata=False),  # proto3 reads absent metadata as empty strings
        pb.PredictResponse(error=pb.Error(code="invalid_request", message="no")),  # in place
    ]  # fmt: skip
    verdicts = [judge(VALID, answer) for answer in answers]
    assert verdicts == [canonical(VALID, answer) for answer in answers]
    assert [v.outcome for v in verdicts] == [Outcome.OK] * 2 + [Outcome.FAILURE] * 2 + [
        Outcome.OK,
        Outcome.FAILURE,
    ]
    assert len(judged) == 5  # the second [0.5] came from the cache
    assert judge(INVALID, answers[0]) == canonical(INVALID, answers[0])  # keyed by payload too


# -- the status boundary -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        (grpc.StatusCode.UNAVAILABLE, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "timeout"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "resource_exhausted"),
        (grpc.StatusCode.INTERNAL, "internal"),
        (grpc.StatusCode.CANCELLED, "cancelled"),
        (grpc.StatusCode.FAILED_PRECONDITION, "failed_precondition"),
        (grpc.StatusCode.UNIMPLEMENTED, "unimplemented"),
    ],
)
def test_statuses_map_to_error_classes(code: grpc.StatusCode, error_class: str) -> None:
    assert reply_for_status(VALID, code) == (Outcome.FAILURE, error_class, 0, False)
    assert reply_for_status(INVALID, code) == (Outcome.FAILURE, error_class, 0, False)


def test_invalid_argument_is_an_expected_rejection_only_for_an_invalid_payload() -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT
    assert reply_for_status(INVALID, code) == (Outcome.EXPECTED_REJECTION, None, 0, True)
    assert reply_for_status(VALID, code) == (Outcome.FAILURE, "rejected", 0, False)


def test_exceptions_become_replies_not_raises() -> None:
    aborted = CallAborted(grpc.StatusCode.UNAVAILABLE, "gone")
    assert reply_for_error(VALID, aborted)[:2] == (Outcome.FAILURE, "unavailable")
    assert reply_for_error(VALID, TimeoutError())[:2] == (Outcome.FAILURE, "timeout")
    assert reply_for_error(VALID, RuntimeError("x"))[:2] == (Outcome.FAILURE, "client_RuntimeError")


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_an_internal_status_the_client_core_made_up_is_the_clients_not_the_targets() -> None:
    server_said = rpc_error(grpc.StatusCode.INTERNAL, "internal error: ValueError")
    core_said = rpc_error(grpc.StatusCode.INTERNAL, "Internal error from Core")
    assert reply_for_error(VALID, server_said)[:2] == (Outcome.FAILURE, "internal")
    assert reply_for_error(INVALID, core_said)[:2] == (Outcome.FAILURE, "client_internal")
    rejected = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "instances[0] must be a finite number")
    assert reply_for_error(INVALID, rejected) == (Outcome.EXPECTED_REJECTION, None, 0, True)


def test_every_status_has_a_lower_case_class() -> None:
    for code in grpc.StatusCode:
        assert ERROR_CLASS_BY_STATUS[code] == (
            "timeout" if code.name == "DEADLINE_EXCEEDED" else code.name.lower()
        )


def test_in_place_error_codes_classify_as_the_status_the_server_gives_them() -> None:
    """The stream driver reads ``error.code``; it must mean what the unary status means."""
    kinds: list[type[RequestError]] = [RequestError, *RequestError.__subclasses__()]
    errors: list[Exception] = [kind("probe") for kind in kinds]
    errors += [ModelFailure("probe"), Overloaded("probe"), RuntimeError("probe")]
    codes = {convert.error_code(exc): translate(exc).status for exc in errors}
    assert codes == dict(STATUS_BY_ERROR_CODE)


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"channels": 0}, "channels"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"timeout_s": math.inf}, "timeout_s"),
    ],
)
def test_unary_driver_names_a_bad_argument(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        GrpcUnaryDriver("127.0.0.1:1", **options)


async def test_the_unary_driver_dials_nothing_before_open() -> None:
    driver = GrpcUnaryDriver(unused_address())
    with pytest.raises(RuntimeError, match=r"before open\(\)"):
        await driver.send(VALID)
    await driver.close()


# -- harness runs against the real target ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["unary", "inprocess"])
@pytest.mark.parametrize("plan", [CLOSED, OPEN], ids=["closed", "open"])
async def test_valid_payloads_succeed_and_invalid_ones_are_expected_rejections(
    kind: str, plan: LoadPlan
) -> None:
    spec = PayloadSpec(invalid_fraction=0.2)
    async with grpc_driver(kind) as driver:
        recorder = await run(driver, plan, spec)
    assert_all_answered_to_contract(recorder, spec)
    assert recorder.expected_rejections > 0
    assert recorder.predictions == recorder.successes
    if plan.mode == "closed":
        assert recorder.requests == 200


@pytest.mark.parametrize("kind", ["unary", "inprocess"])
async def test_multi_row_v2_payloads_count_one_prediction_per_row(kind: str) -> None:
    spec = PayloadSpec(rows_per_request=3, v2_share_start=1.0)
    async with grpc_driver(kind) as driver:
        recorder = await run(driver, CLOSED, spec)
    assert_all_answered_to_contract(recorder, spec)
    assert recorder.predictions == 3 * recorder.successes == 3 * 200


async def test_several_channels_are_several_connections() -> None:
    service = PredictionService(load_model("reference"), transport="grpc")
    log = io.StringIO()  # at debug level the servicer logs each call's peer (client host:port)
    target = build_server(
        service,
        batching=BatchingConfig(),
        max_message_bytes=1 << 20,
        logger=JsonLogger(log, "debug"),
    )
    await target.start("127.0.0.1", 0)
    try:
        assert target.address is not None
        recorder = await run(GrpcUnaryDriver(target.address, channels=3), CLOSED)
    finally:
        await target.stop(grace_s=0)
    assert_all_answered_to_contract(recorder, PayloadSpec())
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    peers = {line["peer"] for line in lines if line["event"] == "rpc_started"}
    assert len(peers) == 3


@pytest.mark.parametrize("kind", ["unary", "inprocess"])
async def test_a_slow_target_past_the_timeout_fails_as_timeout(kind: str) -> None:
    plan = LoadPlan(mode="closed", concurrency=4, requests=8, duration_s=None)
    async with grpc_driver(kind, "synthetic:fixed:200ms", timeout_s=0.05) as driver:
        recorder = await run(driver, plan)
    assert recorder.errors == {"timeout": 8}
    assert recorder.failures == recorder.requests == 8


async def test_a_target_stopped_mid_run_fails_requests_as_unavailable() -> None:
    async with running_grpc() as running:
        driver = StopTargetAfter(
            GrpcUnaryDriver(running.address, timeout_s=10.0), 50, lambda: running.target.stop(0)
        )
        recorder = await run(driver, CLOSED, PayloadSpec(invalid_fraction=0.2))
        assert driver.stopping is not None
        await driver.stopping
    assert recorder.requests == 200
    assert recorder.successes + recorder.expected_rejections >= 50
    assert recorder.errors["unavailable"] > 0
    # calls in flight when the server went down are cancelled by it: at most one per worker
    assert set(recorder.errors) <= {"unavailable", "cancelled"}
    assert recorder.errors.get("cancelled", 0) <= CLOSED.concurrency
    assert sum(recorder.errors.values()) == recorder.failures


async def test_an_unreachable_target_is_unavailable_not_an_exception() -> None:
    plan = LoadPlan(mode="closed", concurrency=2, requests=6, duration_s=None)
    recorder = await run(GrpcUnaryDriver(unused_address(), timeout_s=10.0), plan)
    assert recorder.errors == {"unavailable": 6}


# -- the in-process context ----------------------------------------------------------------------


class SetCodeServicer:
    """Sets a status without aborting, as a servicer may."""

    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
        context.set_details("busy")
        return pb.PredictResponse()


class BrokenServicer:
    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        raise ValueError("bug")


async def test_in_process_statuses_map_like_the_network_ones() -> None:
    set_code = GrpcInProcessDriver(SetCodeServicer())
    assert await set_code.send(VALID) == (Outcome.FAILURE, "resource_exhausted", 0, False)
    broken = GrpcInProcessDriver(BrokenServicer())  # grpc answers an escaped exception UNKNOWN
    assert await broken.send(VALID) == (Outcome.FAILURE, "unknown", 0, False)
    real = GrpcInProcessDriver(make_servicer())
    assert await real.send(INVALID) == (Outcome.EXPECTED_REJECTION, None, 0, True)
    assert await real.send(VALID) == (Outcome.OK, None, 1, True)


async def test_the_recording_context_raises_on_abort_and_keeps_what_it_was_told() -> None:
    context = RecordingContext()
    with pytest.raises(CallAborted) as caught:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad", (("k", "v"),))
    assert caught.value.code == context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (context.details, tuple(context.trailing_metadata)) == ("bad", (("k", "v"),))
    assert context.peer() == "inprocess"
    assert (context.invocation_metadata(), context.time_remaining()) == ((), None)
    assert not context.cancelled()
