"""The edge driver against a real REST remote (a ``servelab serve rest`` subprocess on a free
loopback port), a refused one, and none: answers split by source, counted as the recorder
counts them. Expected figures are computed here from the payloads, not read from the runtime."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from loadtests.drivers.edge import EdgeDriver
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.jobs.launch import launch_target
from targets.edge.runtime import EdgeConfig
from targets.errors import SpecError

REQUESTS = 300
DISTINCT = 20
INT8_STEPS = 127
INT8_RANGE = 8.0  # EdgeConfig's default quantisation: int8:8
GATE_TIMEOUT_S = 10.0  # bounds every wait on a thread in these tests


@pytest.fixture(scope="module")
def remote_url() -> Iterator[str]:
    """A real REST target with the reference model, shared by this module's tests."""
    with launch_target("rest", model_spec="reference") as target:
        yield target.url


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that refuses: bound (so no one else can listen there) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def int8_key(rows: Sequence[Sequence[float]]) -> tuple[tuple[int, ...], ...]:
    """Rows as int8:8 steps — what the edge cache keys on, computed independently."""
    step = INT8_RANGE / INT8_STEPS
    return tuple(
        tuple(max(-INT8_STEPS, min(INT8_STEPS, round(value / step))) for value in row)
        for row in rows
    )


def expected_split(payloads: PayloadGenerator, requests: int) -> tuple[int, int, int]:
    """(misses, hits, invalid) for requests 0..requests-1: each distinct quantised key misses
    once (the runtime is serial, so a repeat is never answered before its first occurrence)."""
    sent = [payloads.payload(index) for index in range(requests)]
    valid = [payload for payload in sent if payload.valid]
    misses = len({int8_key(payload.rows) for payload in valid})
    return misses, len(valid) - misses, len(sent) - len(valid)


async def run_closed(driver: EdgeDriver, spec: PayloadSpec) -> tuple[Recorder, PayloadGenerator]:
    payloads = PayloadGenerator(spec, seed=7)
    # duration_s only bounds the test should something hang; the request count ends the run.
    plan = LoadPlan(mode="closed", concurrency=4, requests=REQUESTS, duration_s=60.0)
    recorder = await Harness(driver, payloads, plan).run()
    assert recorder.requests == REQUESTS
    return recorder, payloads


def counts(extra: dict[str, Any]) -> dict[str, int]:
    return {source: figures["count"] for source, figures in extra["sources"].items()}


def assert_consistent_with(extra: dict[str, Any], recorder: Recorder) -> None:
    """The driver's split adds up to what the recorder counted."""
    assert extra["answers"] == sum(counts(extra).values()) == recorder.successes
    assert extra["error_answers"] == recorder.expected_rejections + recorder.failures
    assert sum(figures["share"] for figures in extra["sources"].values()) == pytest.approx(1.0)
    assert extra["cache_hit_rate"] == pytest.approx(extra["sources"]["cache"]["share"])
    for figures in extra["sources"].values():
        if figures["count"]:
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
        else:
            assert figures["p50_ms"] is None
            assert figures["p99_ms"] is None


async def test_a_live_remote_answers_each_distinct_payload_once_and_the_cache_the_repeats(
    remote_url: str,
) -> None:
    driver = EdgeDriver(EdgeConfig(model="reference", remote=remote_url))
    recorder, payloads = await run_closed(driver, PayloadSpec(distinct=DISTINCT))
    misses, hits, _ = expected_split(payloads, REQUESTS)

    assert recorder.failures == 0
    assert recorder.schema_ok == recorder.schema_checked == REQUESTS
    extra = driver.extra()
    assert counts(extra) == {"remote": misses, "cache": hits, "local": 0}
    assert hits == REQUESTS - misses >= REQUESTS - DISTINCT
    assert extra["cache_hit_rate"] == pytest.approx(hits / REQUESTS)
    assert extra["breaker_opens"] == 0
    assert extra["max_quantization_drift"] == 0.0  # drift is measured on local answers only
    assert extra["runtime"]["remote"]["failures"] == {}
    assert_consistent_with(extra, recorder)


async def test_several_rows_go_to_the_remote_as_one_v2_request(remote_url: str) -> None:
    driver = EdgeDriver(EdgeConfig(model="reference", remote=remote_url))
    spec = PayloadSpec(distinct=DISTINCT, rows_per_request=3, v2_share_start=1.0)
    recorder, payloads = await run_closed(driver, spec)
    misses, hits, _ = expected_split(payloads, REQUESTS)

    assert recorder.failures == 0
    assert recorder.predictions == 3 * REQUESTS
    assert counts(driver.extra()) == {"remote": misses, "cache": hits, "local": 0}


async def test_a_refused_remote_opens_the_breaker_once_and_the_local_model_answers(
    refused_url: str,
) -> None:
    # A cool-down longer than any test run: no half-open trial can reopen the breaker.
    config = EdgeConfig(model="reference", remote=refused_url, cooldown_s=3600.0)
    driver = EdgeDriver(config)
    recorder, payloads = await run_closed(driver, PayloadSpec(distinct=DISTINCT))
    misses, hits, _ = expected_split(payloads, REQUESTS)

    assert recorder.failures == 0
    assert recorder.successes == REQUESTS
    extra = driver.extra()
    assert counts(extra) == {"remote": 0, "cache": hits, "local": misses}
    assert extra["breaker_opens"] == 1
    assert extra["runtime"]["remote"]["failures"] == {"ConnectionRefusedError": 1}
    assert extra["max_quantization_drift"] > 0.0  # int8 moved the rows the model saw
    assert extra["max_quantization_drift"] == extra["runtime"]["drift"]["max"]
    assert_consistent_with(extra, recorder)


async def test_invalid_payloads_are_expected_rejections_not_failures(remote_url: str) -> None:
    driver = EdgeDriver(EdgeConfig(model="reference", remote=remote_url))
    spec = PayloadSpec(distinct=DISTINCT, invalid_fraction=0.2)
    recorder, payloads = await run_closed(driver, spec)
    misses, hits, invalid = expected_split(payloads, REQUESTS)

    assert invalid > 0
    assert recorder.expected_rejections == invalid
    assert recorder.failures == 0
    assert recorder.successes == REQUESTS - invalid
    assert recorder.schema_ok == recorder.schema_checked == REQUESTS - invalid
    extra = driver.extra()
    assert counts(extra) == {"remote": misses, "cache": hits, "local": 0}
    assert extra["error_answers"] == invalid
    assert extra["runtime"]["remote"]["rejections"] == 0  # rejected at the edge, never sent
    assert_consistent_with(extra, recorder)


def pool(spec: PayloadSpec) -> list[Payload]:
    generator = PayloadGenerator(spec, seed=3)
    return [generator.payload(index) for index in range(spec.distinct)]


class GatedConnection(http.client.HTTPConnection):
    """A real connection whose requests wait for ``gate``, saying when one is waiting."""

    def __init__(
        self, host: str, port: int, timeout: float, entered: threading.Event, gate: threading.Event
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self.entered = entered
        self.gate = gate

    def request(self, *args: Any, **kwargs: Any) -> None:
        self.entered.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise TimeoutError("the test never opened the gate")
        super().request(*args, **kwargs)


async def test_a_repeat_queues_behind_a_busy_runtime_and_is_still_a_cache_hit(
    remote_url: str,
) -> None:
    entered, gate = threading.Event(), threading.Event()
    gate.set()
    driver = EdgeDriver(
        EdgeConfig(model="reference", remote=remote_url),
        connection_factory=lambda host, port, timeout_s: GatedConnection(
            host, port, timeout_s, entered, gate
        ),
    )
    first, second = pool(PayloadSpec(distinct=2))
    await driver.open()
    try:
        assert await driver.send(first) == (Outcome.OK, None, 1, True)
        entered.clear()
        gate.clear()
        blocked = asyncio.ensure_future(driver.send(second))  # a miss: held in the remote call
        assert await asyncio.to_thread(entered.wait, GATE_TIMEOUT_S)
        repeat = asyncio.ensure_future(driver.send(first))  # cached, but the runtime is busy
        for _ in range(3):
            await asyncio.sleep(0)  # let it run up to its wait for the worker
        assert not repeat.done()
        gate.set()
        replies = await asyncio.wait_for(asyncio.gather(blocked, repeat), GATE_TIMEOUT_S)
    finally:
        gate.set()
        await driver.close()
    assert list(replies) == [(Outcome.OK, None, 1, True)] * 2
    assert counts(driver.extra()) == {"remote": 2, "cache": 1, "local": 0}


async def test_an_idle_runtime_answers_cache_hits_and_rejections_on_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver = EdgeDriver(EdgeConfig(model="reference"))
    threads: list[int] = []
    handle = driver.runtime.handle

    def spy(body: object) -> dict[str, Any]:
        threads.append(threading.get_ident())
        return handle(body)

    monkeypatch.setattr(driver.runtime, "handle", spy)
    valid, invalid = pool(PayloadSpec(distinct=1)) + pool(PayloadSpec(invalid_fraction=1.0))[:1]
    await driver.open()
    try:
        await driver.send(valid)  # a miss: computed by the local model, in the worker
        await driver.send(valid)  # a hit
        rejected = await driver.send(invalid)
    finally:
        await driver.close()
    loop_thread = threading.get_ident()
    assert threads[0] != loop_thread
    assert threads[1:] == [loop_thread, loop_thread]
    assert rejected == (Outcome.EXPECTED_REJECTION, None, 0, True)
    assert counts(driver.extra()) == {"remote": 0, "cache": 1, "local": 1}


async def test_mark_measure_start_leaves_warm_up_answers_out_of_extra(refused_url: str) -> None:
    driver = EdgeDriver(EdgeConfig(model="reference", remote=refused_url, cooldown_s=3600.0))
    first, second = pool(PayloadSpec(distinct=2))
    await driver.open()
    try:
        await driver.send(first)  # warm-up: refused, opens the breaker, answered locally
        driver.mark_measure_start()
        await driver.send(first)
        await driver.send(second)
    finally:
        await driver.close()
    extra = driver.extra()
    assert counts(extra) == {"remote": 0, "cache": 1, "local": 1}
    assert extra["breaker_opens"] == 0
    assert extra["runtime"]["remote"]["breaker"]["opens"] == 1  # cumulative, for the record


async def test_a_model_failure_is_a_failure_not_an_expected_rejection() -> None:
    driver = EdgeDriver(EdgeConfig(model="tests.targets.sample_models:ExplodingModel"))
    (payload,) = pool(PayloadSpec(distinct=1))
    await driver.open()
    try:
        reply = await driver.send(payload)
    finally:
        await driver.close()
    assert reply == (Outcome.FAILURE, "model_error", 0, False)
    assert driver.extra()["error_answers"] == 1


async def test_a_runtime_that_raises_is_reported_as_a_failure_not_raised(remote_url: str) -> None:
    def broken_factory(host: str, port: int, timeout_s: float) -> http.client.HTTPConnection:
        raise RuntimeError("no connections today")

    driver = EdgeDriver(
        EdgeConfig(model="reference", remote=remote_url), connection_factory=broken_factory
    )
    (payload,) = pool(PayloadSpec(distinct=1))
    await driver.open()
    try:
        reply = await driver.send(payload)
    finally:
        await driver.close()
    assert reply == (Outcome.FAILURE, "edge_RuntimeError", 0, False)


async def test_send_before_open_is_a_usage_error() -> None:
    driver = EdgeDriver(EdgeConfig(model="reference"))
    (payload,) = pool(PayloadSpec(distinct=1))
    with pytest.raises(RuntimeError, match=r"before open\(\)"):
        await driver.send(payload)
    await driver.close()  # closing a driver never opened is harmless


def test_extra_without_answers_has_zero_counts_and_no_percentiles() -> None:
    extra = EdgeDriver(EdgeConfig(model="reference")).extra()
    assert extra["answers"] == 0
    assert extra["cache_hit_rate"] == 0.0
    for figures in extra["sources"].values():
        assert figures == {"count": 0, "share": 0.0, "p50_ms": None, "p99_ms": None}
    assert extra["remote"] is None
    assert extra["quantization"] == "int8:8"


def test_a_bad_model_spec_fails_when_the_driver_is_built_not_mid_run() -> None:
    with pytest.raises(SpecError):
        EdgeDriver(EdgeConfig(model="synthetic:nonsense"))


def test_the_runtime_cache_key_is_what_handle_looks_up() -> None:
    driver = EdgeDriver(EdgeConfig(model="reference"))
    runtime = driver.runtime
    (payload,) = pool(PayloadSpec(distinct=1))
    key = runtime.cache_key(payload.body)
    assert key is not None
    assert key not in runtime.cache
    assert runtime.stats()["requests"] == 0  # asking counts nothing
    runtime.handle(payload.body)
    assert key in runtime.cache
    assert runtime.cache_key({"instances": ["not-a-number"]}) is None
