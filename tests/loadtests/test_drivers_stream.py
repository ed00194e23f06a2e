"""The stream driver against the real streaming consumer: one request is one event, events are
micro-batched into model calls. Runs on virtual time with a fixed-service-time model give exact
figures; runs on real time with the reference model check the counts. Expected counts are
computed here from a fresh payload generator, not read from the driver."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from loadtests.drivers.stream import StreamDriver
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from targets.errors import SpecError
from targets.models import ReferenceModel

REQUESTS = 200
CONCURRENCY = 4
SEED = 11
BOUND_S = 60.0  # bounds every run should something hang (virtual seconds on a virtual loop)
SERVICE_MS = 5.0  # synthetic:fixed:5ms
WINDOW_MS = 2.0
PLAN = LoadPlan(mode="closed", concurrency=CONCURRENCY, duration_s=None, requests=REQUESTS)


async def run(
    driver: StreamDriver, spec: PayloadSpec, plan: LoadPlan = PLAN, measure: bool = False
) -> Recorder:
    harness = Harness(
        driver,
        PayloadGenerator(spec, seed=SEED),
        plan,
        on_measure_start=driver.mark_measure_start if measure else None,
    )
    async with asyncio.timeout(BOUND_S):
        recorder = await harness.run()
    assert recorder.requests == REQUESTS
    return recorder


def invalid_among_first(spec: PayloadSpec, count: int) -> int:
    """How many of payloads 0..count-1 the generator makes invalid (validity does not depend
    on the run's progress, only on the seed and the index)."""
    generator = PayloadGenerator(spec, seed=SEED)
    return sum(not generator.payload(index).valid for index in range(count))


def assert_clean(recorder: Recorder, successes: int, predictions: int) -> None:
    assert recorder.failures == 0
    assert recorder.errors == {}
    assert recorder.successes == successes
    assert recorder.schema_ok == recorder.schema_checked == successes
    assert recorder.predictions == predictions


def test_concurrent_events_share_model_calls_with_exact_latency_on_virtual_time() -> None:
    # Four producers send at once; each batch waits out the window (4 rows < 32), then the model
    # takes 5 ms: 50 model calls of 4 events, every event answered in exactly 2 + 5 ms.
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=32, window_ms=WINDOW_MS, queue_size=64
    )
    recorder = run_virtual(lambda: run(driver, PayloadSpec()))

    assert_clean(recorder, successes=REQUESTS, predictions=REQUESTS)
    assert recorder.expected_rejections == 0
    latency_ms = WINDOW_MS + SERVICE_MS
    summary = recorder.service.summary_ms()
    assert summary["min"] == pytest.approx(latency_ms, rel=1e-3)
    assert summary["max"] == pytest.approx(latency_ms, rel=1e-3)
    extra = driver.extra()
    assert extra["events"] == REQUESTS
    assert extra["bad_events"] == extra["failed_events"] == 0
    assert extra["batches"] == REQUESTS // CONCURRENCY
    assert extra["batched_rows"] == REQUESTS
    assert extra["mean_batch_events"] == extra["mean_batch_rows"] == CONCURRENCY
    assert extra["consumer_latency_ms"] == {"count": REQUESTS, "p50": latency_ms, "p99": latency_ms}
    assert 0 <= extra["queue_depth_max"] < CONCURRENCY
    assert extra["queue_full_arrivals"] == 0
    assert (extra["batch_size"], extra["window_ms"], extra["queue_size"]) == (32, WINDOW_MS, 64)


def test_a_full_batch_goes_to_the_model_without_waiting_out_the_window() -> None:
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=CONCURRENCY, window_ms=1000.0
    )
    recorder = run_virtual(lambda: run(driver, PayloadSpec()))

    assert_clean(recorder, successes=REQUESTS, predictions=REQUESTS)
    assert recorder.service.summary_ms()["max"] == pytest.approx(SERVICE_MS, rel=1e-3)
    assert driver.extra()["batches"] == REQUESTS // CONCURRENCY


def test_a_small_queue_makes_producers_wait_and_says_so() -> None:
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=1, window_ms=0.0, queue_size=1
    )
    recorder = run_virtual(lambda: run(driver, PayloadSpec()))

    assert_clean(recorder, successes=REQUESTS, predictions=REQUESTS)
    extra = driver.extra()
    assert extra["batches"] == REQUESTS  # batch_size 1: no micro-batching at all
    assert extra["queue_depth_max"] == 1
    assert extra["queue_full_arrivals"] > 0


def test_multi_row_v2_events_count_one_prediction_per_row() -> None:
    rows = 3
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=32, window_ms=WINDOW_MS, queue_size=64
    )
    spec = PayloadSpec(rows_per_request=rows, v2_share_start=1.0)
    recorder = run_virtual(lambda: run(driver, spec))

    assert_clean(recorder, successes=REQUESTS, predictions=rows * REQUESTS)
    extra = driver.extra()
    assert extra["batched_rows"] == rows * REQUESTS
    assert extra["mean_batch_rows"] == rows * extra["mean_batch_events"] == rows * CONCURRENCY


def test_invalid_events_are_expected_rejections_on_virtual_time() -> None:
    spec = PayloadSpec(invalid_fraction=0.2)
    invalid = invalid_among_first(spec, REQUESTS)
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=32, window_ms=WINDOW_MS, queue_size=64
    )
    recorder = run_virtual(lambda: run(driver, spec))

    assert invalid > 0
    assert recorder.expected_rejections == invalid
    assert_clean(recorder, successes=REQUESTS - invalid, predictions=REQUESTS - invalid)
    extra = driver.extra()
    assert extra["events"] == REQUESTS
    assert extra["bad_events"] == invalid
    assert extra["batched_rows"] == REQUESTS - invalid
    assert extra["batches"] < REQUESTS - invalid
    # Rejections answer at once, so every valid event still waits the window plus the model.
    latency_ms = WINDOW_MS + SERVICE_MS
    assert extra["consumer_latency_ms"] == {
        "count": REQUESTS - invalid,
        "p50": latency_ms,
        "p99": latency_ms,
    }


def test_warm_up_events_are_left_out_of_the_figures() -> None:
    # Rounds start every 7 ms; the measured window opens at 101 ms, between rounds.
    driver = StreamDriver(
        f"synthetic:fixed:{SERVICE_MS:g}ms", batch_size=32, window_ms=WINDOW_MS, queue_size=64
    )
    plan = LoadPlan(
        mode="closed", concurrency=CONCURRENCY, duration_s=None, requests=REQUESTS, warmup_s=0.101
    )
    recorder = run_virtual(lambda: run(driver, PayloadSpec(), plan, measure=True))

    assert_clean(recorder, successes=REQUESTS, predictions=REQUESTS)
    extra = driver.extra()
    assert extra["events"] == REQUESTS
    assert extra["batches"] == REQUESTS // CONCURRENCY
    # The round in flight at 101 ms (sent at 98 ms) is warm-up: its latencies are dropped too.
    assert extra["consumer_latency_ms"]["count"] == REQUESTS


async def test_the_reference_model_micro_batches_concurrent_events_on_real_time() -> None:
    driver = StreamDriver("reference", batch_size=32, window_ms=WINDOW_MS, queue_size=64)
    recorder = await run(driver, PayloadSpec())

    assert_clean(recorder, successes=REQUESTS, predictions=REQUESTS)
    extra = driver.extra()
    assert extra["events"] == extra["batched_rows"] == REQUESTS
    assert 0 < extra["batches"] < REQUESTS  # fewer model calls than events
    assert extra["mean_batch_events"] == pytest.approx(REQUESTS / extra["batches"])
    p50_ms, p99_ms = extra["consumer_latency_ms"]["p50"], extra["consumer_latency_ms"]["p99"]
    # The consumer times each event from its read, before any wait for queue space, inside
    # the send the harness times from its dispatch (rounded to 1 µs); in a closed loop the
    # dispatch is the intended start, so latency bounds it. (Service time starts later: at
    # the enqueue, the stream's on-wire instant.)
    assert 0 <= p50_ms <= p99_ms <= recorder.latency.summary_ms()["max"] + 1e-3
    assert extra["consumer_latency_ms"]["count"] == REQUESTS
    assert driver.bytes_sent > 0
    assert driver.bytes_received == 0


async def test_invalid_events_are_expected_rejections_not_failures_on_real_time() -> None:
    spec = PayloadSpec(invalid_fraction=0.2)
    invalid = invalid_among_first(spec, REQUESTS)
    driver = StreamDriver("reference", batch_size=32, window_ms=WINDOW_MS, queue_size=64)
    recorder = await run(driver, spec)

    assert invalid > 0
    assert recorder.expected_rejections == invalid
    assert_clean(recorder, successes=REQUESTS - invalid, predictions=REQUESTS - invalid)
    extra = driver.extra()
    assert extra["bad_events"] == invalid
    assert extra["failed_events"] == 0
    assert extra["batched_rows"] == REQUESTS - invalid


class FailingModel(ReferenceModel):
    name = "failing"

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        raise RuntimeError("model down")


async def test_a_model_that_raises_is_a_model_error_failure() -> None:
    driver = StreamDriver(FailingModel(), batch_size=32, window_ms=0.0)
    valid = PayloadGenerator(PayloadSpec(), seed=SEED).payload(0)
    invalid = PayloadGenerator(PayloadSpec(invalid_fraction=1.0), seed=SEED).payload(0)
    await driver.open()
    try:
        assert await driver.send(valid) == (Outcome.FAILURE, "model_error", 0, False)
        assert await driver.send(invalid) == (Outcome.EXPECTED_REJECTION, None, 0, True)
    finally:
        await driver.close()
    extra = driver.extra()
    assert (extra["events"], extra["failed_events"], extra["bad_events"]) == (2, 1, 1)
    assert extra["consumer_latency_ms"] == {"count": 0, "p50": None, "p99": None}


async def test_send_outside_open_and_close_is_a_programming_error() -> None:
    driver = StreamDriver("reference")
    payload = PayloadGenerator(PayloadSpec(), seed=SEED).payload(0)
    with pytest.raises(RuntimeError, match="open"):
        await driver.send(payload)
    await driver.open()
    assert await driver.send(payload) == (Outcome.OK, None, 1, True)
    await driver.close()
    with pytest.raises(RuntimeError, match="open"):
        await driver.send(payload)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"window_ms": -1.0}, "window_ms"),
        ({"window_ms": float("nan")}, "window_ms"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, float], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        StreamDriver("reference", **options)  # type: ignore[arg-type]


def test_figures_before_open_are_zero() -> None:
    extra = StreamDriver("reference").extra()
    assert (extra["events"], extra["batches"], extra["mean_batch_events"]) == (0, 0, 0.0)
    assert extra["consumer_latency_ms"] == {"count": 0, "p50": None, "p99": None}


def test_a_bad_model_spec_fails_before_any_load() -> None:
    with pytest.raises(SpecError):
        StreamDriver("synthetic:nonsense")
