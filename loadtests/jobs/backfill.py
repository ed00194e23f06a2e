"""Scheduled backfills on virtual time: when each event's prediction comes out.

Events arrive as a seeded Poisson process of rate λ over a horizon (virtual seconds: no one
waits an hour). A schedule of interval ``I`` starts run ``k`` at ``k·I`` — or when run ``k-1``
ends, if that is later (a scheduler does not start a job over one still running) — over every
row that arrived since the previous run started. An event arriving at ``t`` and picked up by
the run starting at ``start`` with makespan ``m`` is fresh after::

    freshness = (start - t) + m

The makespan comes from a ``Makespan`` callable — in ``servelab freshness``, real runs of the
batch target (``jobs.makespan``) — so only the clock is virtual, never the work. Events after
the last run start of the horizon are left out (their run is past it). Pure numbers, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from loadtests.engine.histogram import hdr_ranks
from loadtests.results.freshness import BACKFILL, Point

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class RunCost:
    """One batch run's makespan and target CPU, and whether it was run at its real size
    (``measured``) or scaled from a sample."""

    makespan_s: float
    cpu_s: float
    measured: bool


Makespan = Callable[[int], RunCost]  # rows -> what the run over them costs


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    scheduled_s: float
    start_s: float
    rows: int
    cost: RunCost


@dataclass(frozen=True, slots=True)
class Backfill:
    """One schedule over the horizon: every covered event's freshness (in arrival order) and
    the runs that produced them."""

    interval_s: float
    freshness_s: FloatArray
    runs: tuple[ScheduledRun, ...]


def poisson_arrivals_s(rate_per_s: float, horizon_s: float, seed: int) -> FloatArray:
    """Arrival instants in [0, horizon_s) of a Poisson process of ``rate_per_s``: cumulative
    sums of seeded exponential gaps (same seed, same instants)."""
    if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
        raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
    if not (horizon_s > 0 and math.isfinite(horizon_s)):
        raise ValueError(f"horizon_s must be a positive number, got {horizon_s!r}")
    rng = np.random.default_rng(seed)
    expected = rate_per_s * horizon_s
    chunk = int(expected + 8 * math.sqrt(expected) + 16)  # almost always one draw
    parts, last = [], 0.0
    while last < horizon_s:
        times = last + np.cumsum(rng.exponential(1.0 / rate_per_s, chunk))
        parts.append(times)
        last = float(times[-1])
    arrivals: FloatArray = np.concatenate(parts)
    return arrivals[arrivals < horizon_s]


def backfill(
    arrivals_s: FloatArray, interval_s: float, horizon_s: float, makespan: Makespan
) -> Backfill:
    """Run the schedule of ``interval_s`` over sorted ``arrivals_s`` up to ``horizon_s``
    (``floor(horizon / interval)`` runs; see the module docstring)."""
    if not (interval_s > 0 and math.isfinite(interval_s)):
        raise ValueError(f"interval_s must be a positive number, got {interval_s!r}")
    count = math.floor(horizon_s / interval_s + 1e-9)
    if count < 1:
        raise ValueError(f"horizon {horizon_s:g} s is shorter than the interval {interval_s:g} s")
    freshness = np.empty(arrivals_s.size, dtype=np.float64)
    runs: list[ScheduledRun] = []
    covered, previous_end = 0, 0.0
    for k in range(1, count + 1):
        scheduled = k * interval_s
        start = max(scheduled, previous_end)
        upto = int(np.searchsorted(arrivals_s, start, side="right"))
        rows = upto - covered
        cost = makespan(rows) if rows else RunCost(0.0, 0.0, measured=False)
        freshness[covered:upto] = start + cost.makespan_s - arrivals_s[covered:upto]
        runs.append(ScheduledRun(scheduled, start, rows, cost))
        previous_end, covered = start + cost.makespan_s, upto
    return Backfill(interval_s, freshness[:covered], tuple(runs))


def percentile(values: FloatArray, percent: float) -> float:
    """HdrHistogram's rank rule (``hdr_ranks``) on exact values, so freshness percentiles
    mean what every latency percentile of servelab means; 0.0 without values."""
    if not values.size:
        return 0.0
    rank = int(hdr_ranks(percent, values.size))
    return float(np.partition(values, rank - 1)[rank - 1])


def backfill_point(name: str, outcome: Backfill) -> Point:
    """The schedule's freshness point: percentiles over its events, CPU per 1,000 rows, and
    the makespans behind them."""
    values, runs = outcome.freshness_s, [run for run in outcome.runs if run.rows]
    rows = sum(run.rows for run in runs)
    cpu_s = sum(run.cost.cpu_s for run in runs)
    makespans = np.array([run.cost.makespan_s for run in runs], dtype=np.float64)
    sizes = np.array([run.rows for run in runs], dtype=np.float64)
    detail = {
        "interval_s": outcome.interval_s,
        "runs": len(outcome.runs),
        "runs_with_rows": len(runs),
        "rows": rows,
        "rows_per_run": {
            "mean": float(sizes.mean()) if runs else 0.0,
            "max": int(sizes.max(initial=0)),
        },
        "makespan_s": {"p50": percentile(makespans, 50), "max": float(makespans.max(initial=0.0))},
        "measured_runs": sum(1 for run in runs if run.cost.measured),
        "scaled_runs": sum(1 for run in runs if not run.cost.measured),
        "late_starts": sum(1 for run in outcome.runs if run.start_s > run.scheduled_s),
        "target_cpu_s": cpu_s,
    }
    return Point(
        kind=BACKFILL,
        name=name,
        events=int(values.size),
        p50_s=percentile(values, 50),
        p99_s=percentile(values, 99),
        mean_s=float(values.mean()) if values.size else 0.0,
        max_s=float(values.max(initial=0.0)),
        cpu_s_per_1k=cpu_s / rows * 1000 if rows else None,
        detail=detail,
    )
