"""The OIP gRPC driver's hot-path parts: timeouts kept by one sweeper (``Deadlines``), answers
judged once per distinct answer (``verdict_key``, ``OipAnswerJudge``), requests serialized
before the load (``prepare`` over ``PayloadGenerator.pool``). Runs go against the real gRPC
target on 127.0.0.1 port 0, bounded by request count and a timeout."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from loadtests.drivers.deadlines import Deadlines
from loadtests.drivers.grpc_oip import GrpcOipDriver, OipAnswerJudge
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.protocols.base import SCHEMA_FAILURE
from loadtests.protocols.oip_grpc import OipGrpc, verdict_key
from loadtests.protocols.tensors import TensorSpec
from targets.rpc import inference_pb2 as pb
from tests.loadtests.test_drivers_grpc_support import RUN_TIMEOUT_S, SEED, run
from tests.targets.test_grpc_support import running_grpc

ROW = Payload("v1", [[1.0, 2.0, 3.0, 4.0]], {"instances": [1.0, 2.0, 3.0, 4.0]})


def contract(model_name: str) -> OipGrpc:
    return OipGrpc(model_name=model_name, tensors=(TensorSpec.parse("input-0:FP64:-1,4"),))


def answer(request_id: str, rows: int = 1, values: int = 1) -> bytes:
    response = pb.ModelInferResponse(model_name="m", model_version="1", id=request_id)
    output = response.outputs.add(name="output-0", datatype="FP64", shape=[rows, 1])
    output.contents.fp64_contents.extend([7.0] * values)
    return bytes(response.SerializeToString())


# -- Deadlines, on explicit clock readings ----------------------------------------------------


def test_the_sweep_expires_only_what_is_past_its_deadline_oldest_first_and_once() -> None:
    expired: list[str] = []
    deadlines: Deadlines[str] = Deadlines(1.0, expire=expired.append)
    deadlines.add("a")
    deadlines.add("b")
    deadlines.add("c")
    deadlines.forget("b")  # ended in time
    first = deadlines._due["a"]
    deadlines.sweep(first - 1)
    assert expired == []
    assert len(deadlines) == 2
    deadlines.sweep(deadlines._due["c"])
    assert expired == ["a", "c"]
    assert len(deadlines) == 0
    deadlines.sweep(first + 10**10)
    assert expired == ["a", "c"]  # each expired once


async def test_the_period_is_a_quarter_of_a_short_timeout() -> None:
    assert Deadlines(0.08, expire=print).period_s == pytest.approx(0.02)
    assert Deadlines(30.0, expire=print).period_s == pytest.approx(0.05)


# -- answers judged once per distinct answer -----------------------------------------------------


def test_the_verdict_key_drops_the_id_and_nothing_else() -> None:
    assert verdict_key(answer("a-1")) == verdict_key(answer("b-22222")) != answer("a-1")
    assert verdict_key(answer("a-1")) != verdict_key(answer("a-1", values=2))
    parsed = pb.ModelInferResponse.FromString(verdict_key(answer("a-1")))
    assert (parsed.id, parsed.model_name, len(parsed.outputs)) == ("", "m", 1)
    assert verdict_key(b"\xff\x01junk") == b"\xff\x01junk"  # not the simple form: kept whole


def test_a_cached_verdict_is_the_contracts_verdict_for_each_answer() -> None:
    oip = contract("m")
    judge = OipAnswerJudge(oip, limit=2)
    good, short = answer("x"), answer("y", values=0)  # one value short of shape [1, 1]
    for data in (good, answer("z"), short, good, short, answer("w", rows=2, values=2)):
        assert judge(ROW, data) == oip.judge(ROW, data)
    assert judge(ROW, short) == SCHEMA_FAILURE
    assert len(judge._verdicts) <= 2  # bounded: cleared when full


# -- the driver against the real target --------------------------------------------------------


async def test_oip_calls_past_the_timeout_fail_as_timeout_and_the_sweeper_stops() -> None:
    plan = LoadPlan(mode="closed", concurrency=4, requests=8, duration_s=None)
    spec = PayloadSpec(min_instances=4, max_instances=4)
    async with running_grpc("synthetic:fixed:300ms") as running:
        driver = GrpcOipDriver(running.address, contract("synthetic:fixed:300ms"), timeout_s=0.05)
        recorder = await run(driver, plan, spec)
    assert recorder.errors == {"timeout": 8}
    assert len(driver._timeouts.deadlines) == 0
    assert driver._timeouts.deadlines._task is None


async def test_answers_are_judged_to_the_contract_with_requests_made_before_the_load() -> None:
    plan = LoadPlan(mode="closed", concurrency=4, requests=200, duration_s=None)
    spec = PayloadSpec(min_instances=4, max_instances=4, distinct=16, invalid_fraction=0.25)
    async with running_grpc("reference") as running:
        driver = GrpcOipDriver(running.address, contract("reference"))
        payloads = PayloadGenerator(spec, SEED)
        driver.prepare(payloads.pool())
        prepared = len(driver._request._entries)
        harness = Harness(driver, payloads, plan)
        recorder = await asyncio.wait_for(harness.run(), RUN_TIMEOUT_S)
    assert prepared == 16  # v1 only, valid or not: one request each
    assert len(driver._request._entries) == prepared  # the load serialized nothing new
    assert recorder.failures == 0
    assert recorder.expected_rejections > 0
    assert recorder.requests == 200
    assert recorder.schema_ok == 200 - recorder.expected_rejections


@pytest.mark.parametrize(
    ("start", "end"), [(0.0, None), (1.0, None), (0.2, 0.7)], ids=["v1", "v2", "rollout"]
)
def test_the_pool_is_every_payload_a_run_can_draw_once(start: float, end: float | None) -> None:
    spec = PayloadSpec(distinct=64, invalid_fraction=0.2, v2_share_start=start, v2_share_end=end)
    generator = PayloadGenerator(spec, SEED)
    pool = list(generator.pool())
    drawn = {
        id(generator.payload(index, progress)): generator.payload(index, progress)
        for index, progress in itertools.product(range(64), [i / 50 for i in range(51)])
    }
    assert len({id(payload) for payload in pool}) == len(pool)
    assert {id(payload) for payload in pool} == set(drawn)
