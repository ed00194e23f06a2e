"""The REST drivers against the real REST target: over HTTP (aiohttp) and in-process (ASGI)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from loadtests.drivers.inprocess import AsgiDriver
from loadtests.drivers.rest import RestDriver
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from targets.rest.app import create_app
from targets.service import PredictionService
from targets.spec import load_model

SPEC = PayloadSpec(invalid_fraction=0.2, v2_share_start=0.5, rows_per_request=3)


def _expected_invalid(requests: int) -> int:
    generator = PayloadGenerator(SPEC, 1)
    return sum(not generator.payload(index).valid for index in range(requests))


async def _run(driver: Any, plan: LoadPlan) -> Recorder:
    harness = Harness(driver, PayloadGenerator(SPEC, 1), plan)
    return await harness.run()


def _assert_clean(recorder: Recorder, requests: int) -> None:
    assert recorder.requests == requests
    assert recorder.failures == 0
    assert recorder.schema_ok == recorder.schema_checked == recorder.successes
    assert recorder.expected_rejections == _expected_invalid(requests)
    assert recorder.predictions > recorder.successes  # v2 payloads carry 3 rows


async def test_rest_driver_over_http(spawn_target: Any) -> None:
    target = spawn_target("rest", "--log-level", "warning")
    driver = RestDriver(target.url, connections=4)
    recorder = await _run(driver, LoadPlan(concurrency=4, duration_s=None, requests=300))
    _assert_clean(recorder, 300)
    assert driver.bytes_sent > 0
    assert driver.bytes_received > 0


async def test_rest_driver_open_loop(spawn_target: Any) -> None:
    target = spawn_target("rest", "--log-level", "warning")
    plan = LoadPlan(mode="open", profile=RateProfile.constant(200), duration_s=1.0)
    recorder = await _run(RestDriver(target.url, connections=8), plan)
    _assert_clean(recorder, 200)


async def test_asgi_driver_calls_the_app_without_a_socket() -> None:
    service = PredictionService(load_model("reference"), transport="rest")
    recorder = await _run(
        AsgiDriver(create_app(service)), LoadPlan(concurrency=4, duration_s=None, requests=300)
    )
    _assert_clean(recorder, 300)


@pytest.mark.parametrize(
    ("error", "spec"),
    [("connect", "refused"), ("timeout", "synthetic:fixed:300ms")],
)
async def test_rest_failures_are_classified(spawn_target: Any, error: str, spec: str) -> None:
    if spec == "refused":
        target = spawn_target("rest", "--log-level", "warning")
        url = target.url
        target.stop()  # nothing listens there any more
    else:
        url = spawn_target("rest", "--log-level", "warning", "--model", spec).url
    driver = RestDriver(url, connections=2, timeout_s=0.05)
    recorder = await asyncio.wait_for(
        _run(driver, LoadPlan(concurrency=2, duration_s=None, requests=10)), 30
    )
    assert recorder.requests == 10
    valid = 10 - _expected_invalid(10)
    assert recorder.errors.get(error, 0) >= valid
