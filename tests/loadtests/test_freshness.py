"""Backfill freshness on virtual time (the formula, by hand), seeded arrivals, and makespans
measured on the real batch target."""

from __future__ import annotations

import numpy as np
import pytest

from loadtests.errors import LoadOptionError
from loadtests.jobs.backfill import (
    RunCost,
    backfill,
    backfill_point,
    percentile,
    poisson_arrivals_s,
)
from loadtests.jobs.freshness_spec import FreshnessSpec, durations_s, interval_name
from loadtests.jobs.makespan import BatchMakespans, Scaling
from loadtests.results.freshness import BACKFILL, point_of
from targets.spec import load_model

HOUR = 3600.0


def fixed(makespan_s: float, cpu_s: float = 0.0) -> RunCost:
    return RunCost(makespan_s, cpu_s, measured=True)


def test_hourly_freshness_is_the_wait_for_the_next_run_plus_its_makespan() -> None:
    # 10 min, 30 min and 1 h 30 min in; hourly runs of makespan 60 s each
    arrivals = np.array([600.0, 1800.0, 5400.0])
    sizes: list[int] = []

    def makespan(rows: int) -> RunCost:
        sizes.append(rows)
        return fixed(60.0, cpu_s=rows * 0.5)

    outcome = backfill(arrivals, HOUR, 2 * HOUR, makespan)
    np.testing.assert_array_equal(outcome.freshness_s, [3600 - 600 + 60, 3600 - 1800 + 60, 1860])
    assert sizes == [2, 1]  # each run scores the rows since the previous one, at their real size
    assert [(run.scheduled_s, run.start_s, run.rows) for run in outcome.runs] == [
        (HOUR, HOUR, 2),
        (2 * HOUR, 2 * HOUR, 1),
    ]
    point = backfill_point("1h", outcome)
    assert (point.kind, point.events, point.p50_s, point.max_s) == (BACKFILL, 3, 1860.0, 3060.0)
    assert point.cpu_s_per_1k == pytest.approx(1.5 / 3 * 1000)
    assert point.detail["measured_runs"] == 2


def test_a_run_longer_than_the_interval_delays_the_next_one() -> None:
    arrivals = np.array([600.0, 5400.0, 8000.0])
    outcome = backfill(arrivals, HOUR, 2 * HOUR, lambda rows: fixed(5000.0))
    # run 1: 3600 → 8600; run 2 is due at 7200 but starts at 8600, over (3600, 8600]
    assert [run.start_s for run in outcome.runs] == [HOUR, 8600.0]
    np.testing.assert_array_equal(outcome.freshness_s, [8000.0, 8200.0, 5600.0])
    assert backfill_point("1h", outcome).detail["late_starts"] == 1


def test_events_after_the_last_run_start_are_left_out() -> None:
    arrivals = np.array([100.0, 3700.0])
    outcome = backfill(arrivals, HOUR, 1.5 * HOUR, lambda rows: fixed(1.0))
    assert outcome.freshness_s.tolist() == [3501.0]
    assert len(outcome.runs) == 1


def test_the_horizon_must_hold_one_interval() -> None:
    with pytest.raises(ValueError, match="shorter than the interval"):
        backfill(np.array([1.0]), HOUR, 10.0, lambda rows: fixed(1.0))


def test_percentiles_follow_the_hdr_rank_rule() -> None:
    values = np.arange(1.0, 101.0)
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (
        50.0,
        99.0,
        100.0,
    )
    assert percentile(np.array([]), 50) == 0.0


def test_arrivals_are_seeded_poisson() -> None:
    first = poisson_arrivals_s(50.0, HOUR, seed=7)
    again = poisson_arrivals_s(50.0, HOUR, seed=7)
    other = poisson_arrivals_s(50.0, HOUR, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[:100], other[:100])
    expected = 50 * HOUR
    assert abs(first.size - expected) < 5 * np.sqrt(expected)
    assert first.min() >= 0
    assert first.max() < HOUR
    assert np.all(np.diff(first) >= 0)
    gaps = np.diff(first)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.02)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.03)  # exponential: std = mean


def test_a_seeded_schedule_gives_the_same_point_twice() -> None:
    def point() -> dict[str, object]:
        arrivals = poisson_arrivals_s(5.0, 6 * HOUR, seed=42)
        outcome = backfill(arrivals, 900.0, 6 * HOUR, lambda rows: fixed(rows / 1e4, rows / 1e5))
        return backfill_point("15m", outcome).block()

    first = point()
    assert first == point()
    assert point_of(first, "x").p99_s == first["p99_s"]
    assert first["detail"]["runs"] == 24  # type: ignore[index]


def test_the_scaling_is_the_line_through_the_two_samples() -> None:
    scaling = Scaling.fit((100, 400), (0.2, 0.5), (0.1, 0.4))
    assert scaling.rows_per_s == pytest.approx(1000.0)
    assert scaling.fixed_s == pytest.approx(0.1)
    cost = scaling.cost(1000)
    assert cost.makespan_s == pytest.approx(1.1)
    assert cost.cpu_s == pytest.approx(1.0)
    assert not cost.measured
    noisy = Scaling.fit((100, 400), (0.5, 0.4), (0.1, 0.4))  # the larger sample came out faster
    assert noisy.rows_per_s == pytest.approx(1000.0)
    assert noisy.fixed_s == 0.0
    assert scaling.method == "line"
    assert noisy.block()["fit"] == "large sample's rate"


def test_makespans_are_measured_on_the_batch_target() -> None:
    rows = [[0.5, 1.5, -2.0, 3.0]] * 7
    with BatchMakespans(
        load_model("reference"), rows, batch_size=64, bound_rows=200, budget_rows=300, repeats=1
    ) as meter:
        makespan = meter.for_schedule()
        real = [makespan(150), makespan(150)]
        over_budget, over_bound = makespan(150), makespan(1000)
        assert meter.jobs == 2 + 2  # two real runs, then one sample of 50 and one of 200 rows
        assert meter.scaled is not None
        assert meter.scaled.sample_rows == (50, 200)
        assert all(cost.measured and cost.makespan_s > 0 for cost in real)
        assert not over_budget.measured
        assert not over_bound.measured
        assert over_bound.makespan_s == pytest.approx(meter.scaled.cost(1000).makespan_s)
        assert meter.for_schedule()(150).measured  # each schedule has its own budget


def test_spec_refusals_name_the_option() -> None:
    assert durations_s("1h,15m,1h", "--schedules") == (900.0, 3600.0)
    assert [interval_name(s) for s in (900.0, 3600.0, 86400.0, 90.0)] == ["15m", "1h", "24h", "90s"]
    names = {k: f"<{k}>" for k in ("schedules", "windows", "horizon", "rate", "bound_rows")}
    spec = FreshnessSpec(schedules_s=(900.0, 86400.0), windows_ms=(2.0,))
    assert spec.horizon == 86400.0
    spec.check(50.0, names=names)
    with pytest.raises(LoadOptionError, match="<rate>: 200/s over 24h"):
        spec.check(200.0, names=names)
    with pytest.raises(LoadOptionError, match="<horizon>"):
        FreshnessSpec((HOUR,), (2.0,), horizon_s=60.0).check(1.0, names=names)
    with pytest.raises(LoadOptionError, match="--windows"):
        durations_s("2ms,fast", "--windows")
