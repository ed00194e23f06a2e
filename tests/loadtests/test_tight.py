"""The tight in-process loop (and ``servelab run --loop tight``) records every call, exactly, in
constant memory."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from loadtests.engine.harness import LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.schedule import RateProfile
from loadtests.engine.tight import TightHarness, run_tight


def test_every_call_is_recorded_with_its_own_duration() -> None:
    ticks = itertools.count(0, 1_000)  # each clock read advances 1 µs: every call "takes" 1 µs
    calls: list[Sequence[float]] = []
    recorder = Recorder()
    rows = [[1.0], [2.0], [3.0]]
    run_tight(calls.append, rows, 10_000, recorder, chunk=4096, clock=lambda: next(ticks))  # type: ignore[arg-type]
    assert recorder.requests == recorder.successes == recorder.predictions == 10_000
    assert calls[:4] == [[1.0], [2.0], [3.0], [1.0]]
    assert recorder.service.percentile_ns(0.1) == recorder.service.percentile_ns(100) == 1_000
    assert recorder.lateness.total == 10_000
    assert recorder.lateness.percentile_ns(100) == 0
    assert sum(row["requests"] for row in recorder.timeseries) == 10_000


def test_per_second_series_closes_as_time_passes() -> None:
    ticks = itertools.count(0, 1_000_000)  # 1 ms per call: 1,000 calls per second
    recorder = Recorder()
    run_tight(lambda row: 0.0, [[1.0]], 5_000, recorder, chunk=700, clock=lambda: next(ticks))
    assert [row["requests"] for row in recorder.timeseries] == [999, 1000, 1000, 1000, 1000, 1]
    assert all(row["p50_ms"] == pytest.approx(1.0, rel=1e-3) for row in recorder.timeseries)


@pytest.mark.parametrize(("requests", "rows"), [(0, [[1.0]]), (5, [])])
def test_bad_arguments_are_refused(requests: int, rows: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="must"):
        run_tight(lambda row: 0.0, rows, requests, Recorder())


class _Model:
    """A model whose answers are scripted by call number (the clock is a counter too)."""

    name, version = "scripted", "1"

    def __init__(self, answer: Callable[[int], float]) -> None:
        self.answer = answer
        self.calls = 0

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls += 1
        return [self.answer(self.calls)]

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return self.predict(rows)


def _tight(model: _Model, plan: LoadPlan, step_ns: int = 1_000, **kwargs: Any) -> TightHarness:
    ticks = itertools.count(0, step_ns)
    return TightHarness(model, [[1.0], [2.0]], plan, clock=lambda: next(ticks), **kwargs)


async def test_tight_harness_records_every_call_up_to_the_request_count() -> None:
    model = _Model(lambda _call: 0.5)
    harness = _tight(model, LoadPlan(duration_s=None, requests=10_000), chunk=3_000)
    recorder = await harness.run()
    assert model.calls == recorder.requests == recorder.successes == 10_000
    assert recorder.schema_ok == recorder.schema_checked == 10_000
    assert recorder.service.percentile_ns(50) == 1_000  # one clock step per call
    assert harness.stats.interrupted is False


async def test_tight_harness_counts_bad_answers_and_raising_models_as_failures() -> None:
    def answer(call: int) -> float:
        if call % 100 == 0:
            raise RuntimeError("model broke")
        return math.nan if call % 100 == 1 else 0.5

    recorder = await _tight(_Model(answer), LoadPlan(duration_s=None, requests=1_000)).run()
    assert recorder.requests == 1_000
    assert recorder.failures == 20  # 10 raised, 10 answered NaN: the run went on
    assert recorder.errors == {"model_error": 20}
    assert recorder.successes == recorder.predictions == 980


async def test_tight_harness_stops_at_the_duration_checked_per_chunk() -> None:
    model = _Model(lambda _call: 0.5)
    plan = LoadPlan(duration_s=2.0)  # 1 ms a call: 2,000 calls, rounded up to the chunk
    recorder = await _tight(model, plan, step_ns=1_000_000, chunk=512).run()
    assert 2_000 <= recorder.requests < 2_000 + 512
    assert [row["requests"] for row in recorder.timeseries][1] == 1_000


async def test_tight_harness_stop_ends_the_run_between_chunks() -> None:
    model = _Model(lambda _call: 0.5)
    harness = _tight(model, LoadPlan(duration_s=None, requests=10**9), chunk=1_000)

    async def stop_soon() -> None:
        while model.calls < 5_000:  # bounded by the run: it makes calls until stopped
            await asyncio.sleep(0)
        harness.stop()

    stopper = asyncio.ensure_future(stop_soon())
    recorder = await harness.run()
    await stopper
    assert harness.stats.interrupted is True
    assert 5_000 <= recorder.requests <= 6_000


@pytest.mark.parametrize(
    "plan",
    [LoadPlan(concurrency=2), LoadPlan(warmup_s=1.0), LoadPlan(think_time_s=0.1),
     LoadPlan(mode="open", profile=RateProfile.constant(10))],
)  # fmt: skip
def test_tight_harness_refuses_what_it_cannot_do(plan: LoadPlan) -> None:
    with pytest.raises(ValueError, match="--loop tight"):
        _tight(_Model(lambda _call: 0.5), plan)
