"""Drawing bootstrap replicates: the resampling primitives ``reports.stats`` builds estimates from.

Pure numbers on numpy arrays and histogram buckets, seeded by the caller's generator. A latency
percentile is resampled from the bucket counts without expanding them: resampling n values and
taking the k-th smallest is taking the empirical quantile function at the k-th order statistic of
n uniforms, which is Beta(k, n + 1 - k) distributed, so one Beta draw per replicate gives exactly
the bootstrap distribution multinomial resampling would (``tests/reports/test_stats.py`` checks
the two agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from loadtests.engine.histogram import hdr_ranks
from reports.buckets import Buckets, merge_buckets

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CHUNK_CELLS: Final = 2_000_000  # replicate-by-bucket matrix cells per chunk (~16 MB of floats)


def repeat_weights(runs: int, rng: np.random.Generator, resamples: int) -> IntArray:
    """How often each repeat is drawn in each replicate (the top level of the bootstrap)."""
    if runs == 1:
        return np.ones((resamples, 1), dtype=np.int64)
    weights: IntArray = rng.multinomial(runs, np.full(runs, 1.0 / runs), size=resamples)
    return weights


def percentile_replicates(
    parts: Sequence[Buckets], percentile: float, weights: IntArray, rng: np.random.Generator
) -> FloatArray:
    """Bootstrap replicates of a percentile of the (re-weighted) union of ``parts``.

    Each replicate's CDF is a mixture of the parts' CDFs weighted by how often it drew each
    repeat; replicates that drew the same repeats share one (5 repeats allow only 126 draws),
    and one ``searchsorted`` over the stacked CDFs (row r shifted by 2r) finds every index."""
    grid = merge_buckets(parts).upper_ms
    cumulative = np.zeros((len(parts), grid.size))
    for row, part in enumerate(parts):
        cumulative[row, np.searchsorted(grid, part.upper_ms)] = part.counts
    cumulative = np.cumsum(cumulative, axis=1)
    totals = np.array([p.total for p in parts], dtype=np.float64)
    draws, which = np.unique(weights, axis=0, return_inverse=True)
    which = which.reshape(-1)
    sizes = draws @ totals
    ranks = hdr_ranks(percentile, sizes[which])
    uniforms = rng.beta(ranks, sizes[which] + 1 - ranks)  # k-th order statistic of n uniforms
    index = np.empty(uniforms.size, dtype=np.int64)
    step = max(1, CHUNK_CELLS // grid.size)
    for start in range(0, len(draws), step):  # chunks of distinct draws bound the memory
        rows = np.arange(start, min(start + step, len(draws)))
        cdf = (draws[rows] @ cumulative) / sizes[rows, None] + 2.0 * rows[:, None]
        mine = (which >= rows[0]) & (which <= rows[-1])
        found = np.searchsorted(cdf.ravel(), uniforms[mine] + 2.0 * which[mine])
        index[mine] = found - (which[mine] - rows[0]) * grid.size
    replicates: FloatArray = grid[np.clip(index, 0, grid.size - 1)]
    return replicates


def rate_factors(
    per_second_successes: IntArray, successes: float, rng: np.random.Generator, resamples: int
) -> FloatArray:
    """Replicates of (resampled rate / observed rate) for one run, from its per-second series.

    The last second is usually partial, so it is dropped when there are at least three; with
    fewer than two seconds, the run's ``successes`` are taken as Poisson."""
    seconds = per_second_successes.astype(np.float64)
    if seconds.size >= 3:
        seconds = seconds[:-1]
    if seconds.size >= 2 and seconds.mean() > 0:
        picks = rng.integers(0, seconds.size, size=(resamples, seconds.size))
        factors: FloatArray = seconds[picks].mean(axis=1) / seconds.mean()
        return factors
    if successes > 0:
        poisson: FloatArray = rng.poisson(successes, size=resamples) / successes
        return poisson
    return np.ones(resamples)


def widen(value: float, replicates: FloatArray, factor: float) -> FloatArray:
    """Scale replicates' log-deviations from ``value`` by ``factor`` (positive values only)."""
    if factor == 1.0 or not value > 0 or not math.isfinite(value) or np.any(replicates <= 0):
        return replicates
    widened: FloatArray = value * np.exp(factor * np.log(replicates / value))
    return widened
