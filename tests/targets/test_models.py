"""The model layer: the reference contract, seeded synthetic service times, user models."""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time

import pytest

from targets.errors import SpecError
from targets.models import (
    Model,
    ReferenceModel,
    ServiceTime,
    SyntheticModel,
    burn_cpu_s,
    reference_prediction,
)
from targets.spec import is_stdlib_model, load_model, parse_synthetic


def test_reference_model_matches_the_lesson_formula() -> None:
    rows = [[1.0, 2.0, 3.0], [0.1, 0.2], [-5.0], [1e6, 3e6]]
    expected = [round(statistics.mean(row) * 0.8 + 0.1, 4) for row in rows]
    assert ReferenceModel().predict(rows) == expected


def test_reference_model_predicts_zero_for_an_empty_row() -> None:
    assert ReferenceModel().predict([[]]) == [0.0]
    assert reference_prediction([]) == 0.0


async def test_reference_model_async_agrees_with_sync() -> None:
    rows = [[1.0, 2.0], [3.0]]
    assert await ReferenceModel().predict_async(rows) == ReferenceModel().predict(rows)


def test_every_shipped_model_satisfies_the_protocol() -> None:
    for spec in ("reference", "synthetic:fixed:1ms", "synthetic:cpu:1ms"):
        assert isinstance(load_model(spec), Model)


def test_synthetic_service_times_replay_from_the_seed() -> None:
    spec = parse_synthetic("synthetic:lognormal:5ms:0.5:seed=11")
    first, second = spec.build(), spec.build()
    draws = [first.next_service_time_s(1) for _ in range(100)]
    assert draws == [second.next_service_time_s(1) for _ in range(100)]
    rng = random.Random(11)
    assert draws == [rng.lognormvariate(math.log(0.005), 0.5) for _ in range(100)]


def test_lognormal_median_and_spread_match_the_spec() -> None:
    model = parse_synthetic("synthetic:lognormal:5ms:0.5").build()
    draws = sorted(model.next_service_time_s(0) for _ in range(20_000))
    assert draws[len(draws) // 2] == pytest.approx(0.005, rel=0.03)
    # 84.13th percentile of a lognormal is median * exp(sigma)
    assert draws[int(0.8413 * len(draws))] == pytest.approx(0.005 * math.exp(0.5), rel=0.04)


@pytest.mark.parametrize(
    ("spec", "low", "high"),
    [
        ("synthetic:fixed:3ms", 0.003, 0.003),
        ("synthetic:uniform:2ms:8ms", 0.002, 0.008),
    ],
)
def test_bounded_distributions_stay_in_range(spec: str, low: float, high: float) -> None:
    model = parse_synthetic(spec).build()
    draws = [model.next_service_time_s(0) for _ in range(1000)]
    assert min(draws) >= low
    assert max(draws) <= high


def test_exponential_mean_matches_the_spec() -> None:
    model = parse_synthetic("synthetic:exponential:4ms").build()
    draws = [model.next_service_time_s(0) for _ in range(20_000)]
    assert statistics.fmean(draws) == pytest.approx(0.004, rel=0.05)


def test_per_row_cost_adds_to_each_call() -> None:
    model = parse_synthetic("synthetic:fixed:1ms:row=250us").build()
    assert model.next_service_time_s(4) == pytest.approx(0.002)


def test_waiting_model_sleeps_its_service_time_through_the_injected_sleep() -> None:
    slept: list[float] = []
    model = SyntheticModel(
        ServiceTime("fixed", 0.004), name="t", per_row_s=0.001, sleep=slept.append
    )
    assert model.predict([[1.0], [2.0]]) == [0.9, 1.7]
    assert slept == [pytest.approx(0.006)]


async def test_waiting_model_awaits_without_blocking_the_loop() -> None:
    model = load_model("synthetic:fixed:50ms")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.ensure_future(ticker())
    await model.predict_async([[1.0]])
    task.cancel()
    assert ticks > 5  # the loop kept running while the model waited


def test_cpu_model_uses_cpu_for_its_service_time() -> None:
    model = load_model("synthetic:cpu:20ms")
    before = time.thread_time()
    assert model.predict([[1.0, 3.0]]) == [1.7]
    used_s = time.thread_time() - before
    assert 0.020 <= used_s < 0.5


def test_burn_cpu_counts_thread_time() -> None:
    before = time.thread_time()
    burn_cpu_s(0.01)
    assert time.thread_time() - before >= 0.01


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("synthetic", "needs a kind"),
        ("synthetic:gauss:5ms", "unknown synthetic kind 'gauss'"),
        ("synthetic:fixed", "takes 1 parameter(s), got 0"),
        ("synthetic:fixed:5", "'5' is not a duration"),
        ("synthetic:uniform:8ms:2ms", "low must not exceed high"),
        ("synthetic:lognormal:5ms:wide", "sigma must be a number"),
        ("synthetic:lognormal:5ms:-1", "sigma must be between 0 and 10"),
        ("synthetic:fixed:5ms:row=fast", "per-row cost 'fast' is not a duration"),
        ("synthetic:fixed:5ms:seed=-3", "seed must be a non-negative integer"),
        ("synthetic:fixed:5ms:color=red", "unknown option 'color'"),
        ("synthetic:fixed:row=1ms:5ms", "options must come after the parameters"),
        ("not a spec", "expected 'reference'"),
        ("no_such_module_xyz:model", "cannot import 'no_such_module_xyz'"),
        ("tests.targets.sample_models:Missing", "has no attribute 'Missing'"),
        ("tests.targets.sample_models:__doc__", "neither a model nor a function"),
    ],
)
def test_bad_specs_fail_with_one_line_naming_the_problem(spec: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_model(spec)
    message = str(caught.value)
    assert message.startswith(f"bad --model {spec!r}: ")
    assert words in message
    assert "\n" not in message


def test_user_model_from_a_function() -> None:
    model = load_model("tests.targets.sample_models:double_sum")
    assert model.predict([[1.0, 2.0], [4.0]]) == [6.0, 8.0]
    assert model.name == "tests.targets.sample_models:double_sum"


async def test_user_model_from_a_class_with_predict_only() -> None:
    model = load_model("tests.targets.sample_models:SumModel")
    assert model.version == "2.1"
    assert await model.predict_async([[1.0, 2.0]]) == [3.0]


def test_user_model_that_is_a_full_model_is_used_as_is() -> None:
    model = load_model("tests.targets.sample_models:ExplodingModel")
    assert model.name == "exploding"
    with pytest.raises(RuntimeError, match="corrupt"):
        model.predict([[1.0]])


def test_stdlib_model_specs() -> None:
    assert is_stdlib_model("reference")
    assert is_stdlib_model("synthetic:fixed:1ms")
    assert not is_stdlib_model("tests.targets.sample_models:SumModel")


def test_reference_model_survives_the_largest_finite_inputs() -> None:
    """fsum of huge finite values overflows; the mean of them does not (found by fuzzing)."""
    assert ReferenceModel().predict([[1.79e308, 1.79e308]]) == [round(1.79e308 * 0.8 + 0.1, 4)]
    assert reference_prediction([-1.7976931348623157e308] * 3) < 0


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
@pytest.mark.parametrize(("spec", "floor_s"), [("synthetic:fixed:5ms", 0.005),
                                               ("synthetic:uniform:2ms:4ms", 0.002)])  # fmt: skip
def test_waiting_model_never_answers_before_its_time_on_any_loop(
    loop_kind: str, spec: str, floor_s: float
) -> None:
    """uvloop's timers fire early (whole ms, from a cached time); the model sleeps again for any
    remainder. Only a lower bound is asserted: a slow machine can only add time."""
    import uvloop

    model = load_model(spec)
    twin = load_model(spec)  # same seed: the same draws, to know each call's stated time

    async def timed_call() -> tuple[float, float]:
        stated = twin.next_service_time_s(1)  # type: ignore[attr-defined]
        started = time.perf_counter()
        await model.predict_async([[1.0]])
        return time.perf_counter() - started, stated

    async def main() -> list[tuple[float, float]]:
        calls: list[tuple[float, float]] = []
        for _ in range(5):  # 8 at a time, as servelab's own in-process runs load a model
            calls += await asyncio.gather(*(timed_call() for _ in range(8)))
        return calls

    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        calls = runner.run(main())
    assert all(elapsed >= floor_s for elapsed, _ in calls)
    assert all(elapsed >= stated for elapsed, stated in calls)


def test_waiting_model_on_virtual_time_takes_exactly_its_time() -> None:
    from loadtests.engine.clock import run_virtual

    model = load_model("synthetic:fixed:5ms")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await model.predict_async([[1.0]])
        return loop.time() - started

    assert run_virtual(main) == pytest.approx(0.005, abs=1e-12)
