"""Statistics for comparing runs: pure numbers, no I/O (pytest-benchmark's ``stats.py`` split).

A comparison of a *baseline* and a *candidate* — one run each, or groups of repeats — gives, per
metric, the ratio candidate / baseline with a seeded percentile-bootstrap confidence interval and
a verdict: faster / slower (better / worse for rates that are not speeds) / no significant
difference. The interval is significant when it excludes 1.

How each metric is resampled:

* **latency percentiles** (``p50`` … ``p999``, ``service_p50`` …, ``client_queue_p50`` …) from the
  HdrHistograms' bucket counts. Resampling n values from a histogram and taking the k-th smallest is
  the same as taking the empirical quantile function at the k-th order statistic of n uniforms,
  which is Beta(k, n + 1 - k) distributed — so one Beta draw per replicate gives *exactly* the
  bootstrap distribution that multinomial resampling of the bucket counts would give (a test checks
  the two agree), at O(B log K) instead of O(B·K) binomial draws. k follows HdrHistogram's own rule,
  so the point estimate equals the result file's percentile.
* **latency means** by the normal approximation of the resampled mean (n is always large).
* **rates** (``throughput_rps``, ``predictions_per_s``) by resampling the per-second series.
* **proportions** (``success_rate``, ``fail_ratio``, ``schema_success_rate``) binomially.
* anything else (``requests``, ``latency_max`` …) is taken as exact: no interval.

With repeats (several runs of one cell) the bootstrap is hierarchical: each replicate first draws
the repeats with replacement, then resamples within each drawn run, so run-to-run variation widens
the interval as it should. Drawing from only a few repeats understates that variation (by
(R - 1) / R in variance, and a normal quantile where Student's t belongs), which gave 13 % false
positives for A/A groups of 3-5 runs with 3 % run-to-run jitter; so with repeats each group's
log-deviations are scaled by sqrt(R / (R - 1)) and the interval by t(df) / z, df = R_a + R_b - 2.
With one run per side the interval reflects sampling noise within the runs only: run-to-run
variation (caches, noisy neighbours) is invisible — use repeats for decisions that matter.

A percentile read from an HdrHistogram (3 significant figures) is known only to within one
bucket, 1/1024 of its value; resampling on the same bucket grid cannot see that, so percentile
intervals are widened by it. Seeded A/A trials then come out "no significant difference" in
~96 % of trials (p50, 5,000 samples a run) rather than on the 95 % knife-edge.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from loadtests.engine.histogram import PERCENTILES
from loadtests.results.thresholds import lower_is_better, metric_value
from reports.buckets import RELATIVE_RESOLUTION, Buckets, merge_buckets
from reports.resample import percentile_replicates, rate_factors, repeat_weights, widen
from reports.tdist import small_sample_scale

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_RESAMPLES: Final = 2000
DEFAULT_CONFIDENCE: Final = 0.95
DEFAULT_METRICS: Final = ("p50", "p99", "throughput_rps")
RATE_METRICS: Final = ("throughput_rps", "predictions_per_s")
PROPORTIONS: Final = ("success_rate", "fail_ratio", "schema_success_rate")
HIGHER_IS_BETTER: Final = (*RATE_METRICS, "success_rate", "schema_success_rate", "successes")
NO_DIFFERENCE: Final = "no significant difference"
# metric prefix -> the RunSample histogram it is read from (no prefix: latency)
_HISTOGRAMS: Final = {"service_": "service", "client_queue_": "client_queue", "latency_": "latency"}


@dataclass(frozen=True, slots=True)
class RunSample:
    """What the statistics need of one run: its summary, histograms and per-second successes
    (``client_queue`` None where the driver could not see the wire)."""

    summary: Mapping[str, Any]  # a result's summary; a synthetic sample gives what it needs
    latency: Buckets | None = None
    service: Buckets | None = None
    per_second_successes: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    client_queue: Buckets | None = None

    def histogram(self, source: str) -> Buckets | None:
        """``latency``, ``service`` or ``client_queue``."""
        parts = {
            "latency": self.latency,
            "service": self.service,
            "client_queue": self.client_queue,
        }
        return parts.get(source)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A group's value of one metric and its bootstrap replicates (all equal when exact)."""

    metric: str
    value: float
    replicates: FloatArray
    exact: bool
    runs: int = 1


@dataclass(frozen=True, slots=True)
class Comparison:
    """candidate / baseline for one metric, with its confidence interval and verdict."""

    metric: str
    baseline: float
    candidate: float
    ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    verdict: str
    exact: bool

    @property
    def change(self) -> float:
        """Relative change (+0.10 = 10 % higher than the baseline)."""
        return self.ratio - 1.0

    @property
    def significant(self) -> bool:
        return self.verdict != NO_DIFFERENCE


def _latency_source(metric: str) -> tuple[str, float] | None:
    """(histogram, percentile) for a bootstrappable latency percentile."""
    name, source = metric, "latency"
    for prefix, histogram in _HISTOGRAMS.items():
        if metric.startswith(prefix):
            name, source = metric.removeprefix(prefix), histogram
            break
    return (source, PERCENTILES[name]) if name in PERCENTILES else None


def _mean_source(metric: str) -> str | None:
    return {f"{prefix}mean": source for prefix, source in _HISTOGRAMS.items()}.get(metric)


def _rate_factors(sample: RunSample, rng: np.random.Generator, resamples: int) -> FloatArray:
    successes = float(sample.summary.get("successes") or 0)
    return rate_factors(sample.per_second_successes, successes, rng, resamples)


def _proportion(sample: RunSample, metric: str) -> tuple[float, int]:
    """(proportion, trials) of a run; schema success is judged on the successful answers."""
    summary = sample.summary
    if metric == "schema_success_rate":
        return float(summary["schema_success_rate"]), int(summary.get("successes") or 0)
    judged = int(summary.get("requests") or 0) - int(summary.get("expected_rejections") or 0)
    return float(summary["success_rate"]), max(judged, 0)


def _exact(group: Sequence[RunSample], metric: str, resamples: int) -> Estimate:
    values = [metric_value(s.summary, metric) for s in group]
    if metric in {f"{prefix}min" for prefix in _HISTOGRAMS}:
        value = min(values)
    elif metric in {f"{prefix}max" for prefix in _HISTOGRAMS}:
        value = max(values)
    else:
        value = float(np.mean(values))
    return Estimate(metric, value, np.full(resamples, value), exact=True)


def fingerprint(group: Sequence[RunSample]) -> int:
    """A checksum of a group's data: seeds its bootstrap, so a group always gets the same
    replicates (estimates can be reused) while two different groups draw independently."""
    crc = 0
    for sample in group:
        for part in (sample.latency, sample.service, sample.client_queue):
            if part is not None:
                crc = zlib.crc32(part.counts.tobytes(), zlib.crc32(part.upper_ms.tobytes(), crc))
        crc = zlib.crc32(sample.per_second_successes.tobytes(), crc)
        numbers = sorted((k, v) for k, v in sample.summary.items() if isinstance(v, int | float))
        crc = zlib.crc32(repr(numbers).encode(), crc)
    return crc


def estimate(
    group: Sequence[RunSample],
    metric: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """The group's value of ``metric`` (repeats pooled) and its bootstrap replicates, their
    spread corrected by sqrt(R / (R - 1)) for R > 1 repeats. Seeded by ``seed``, the metric
    and the group's data: the same inputs always give the same replicates."""
    if not group:
        raise ValueError("estimate: group is empty")
    if resamples < 100:
        raise ValueError(f"resamples must be at least 100, got {resamples}")
    rng = np.random.default_rng((seed, zlib.crc32(metric.encode()), fingerprint(group)))
    raw = _estimate(group, metric, rng, resamples)
    if len(group) < 2 or raw.exact:
        return raw
    factor = math.sqrt(len(group) / (len(group) - 1))
    widened = widen(raw.value, raw.replicates, factor)
    return Estimate(metric, raw.value, widened, exact=False, runs=len(group))


def _estimate(
    group: Sequence[RunSample], metric: str, rng: np.random.Generator, resamples: int
) -> Estimate:
    weights = repeat_weights(len(group), rng, resamples)
    chosen = weights.sum(axis=1).astype(np.float64)
    latency, mean_source = _latency_source(metric), _mean_source(metric)
    source = latency[0] if latency is not None else mean_source
    if source is not None:
        parts = [s.histogram(source) for s in group]
        if any(part is None or part.total == 0 for part in parts):
            return _exact(group, metric, resamples)  # no histogram: no interval
        buckets = [p for p in parts if p is not None]
        if latency is not None:
            value = merge_buckets(buckets).percentile_ms(latency[1])
            replicates = percentile_replicates(buckets, latency[1], weights, rng)
            return Estimate(metric, value, replicates, exact=False)
        sizes = np.array([b.total for b in buckets], dtype=np.float64)
        means = np.array([b.mean_ms() for b in buckets])
        errors = np.array([b.std_ms() for b in buckets]) / np.sqrt(sizes)
        drawn = means + errors * rng.standard_normal((resamples, len(buckets)))
        replicates = (weights * drawn) @ sizes / (weights @ sizes)
        return Estimate(metric, float(means @ sizes / sizes.sum()), replicates, exact=False)
    if metric in RATE_METRICS:
        rates = np.array([metric_value(s.summary, metric) for s in group])
        factors = np.column_stack([_rate_factors(s, rng, resamples) for s in group])
        replicates = (weights * factors) @ rates / chosen
        return Estimate(metric, float(rates.mean()), replicates, exact=False)
    if metric in PROPORTIONS:
        base = "schema_success_rate" if metric == "schema_success_rate" else "success_rate"
        pairs = [_proportion(s, base) for s in group]
        trials = np.array([n for _, n in pairs], dtype=np.float64)
        if any(math.isnan(p) for p, _ in pairs):  # unknown (an imported run): no estimate
            return Estimate(metric, math.nan, np.full(resamples, math.nan), exact=True)
        if trials.sum() == 0:
            return _exact(group, metric, resamples)
        hits = np.column_stack([rng.binomial(int(n), p, size=resamples) for p, n in pairs])
        rate = float(sum(p * n for p, n in pairs) / trials.sum())
        replicates = (weights * hits).sum(axis=1) / np.maximum(weights @ trials, 1)
        if metric == "fail_ratio":
            return Estimate(metric, 1.0 - rate, 1.0 - replicates, exact=False)
        return Estimate(metric, rate, replicates, exact=False)
    return _exact(group, metric, resamples)


def _bounds(
    point: float, replicates: FloatArray, confidence: float, df: int, resolution: float = 0.0
) -> tuple[float, float]:
    """Percentile interval, widened for few repeats and for the histograms' resolution."""
    tail = (1 - confidence) / 2
    low = float(np.quantile(replicates, tail, method="lower"))
    high = float(np.quantile(replicates, 1 - tail, method="higher"))
    scale = small_sample_scale(confidence, df)
    if scale != 1.0 and low > 0 and math.isfinite(high) and 0 < point < math.inf:
        low, high = point * (low / point) ** scale, point * (high / point) ** scale
    return low / (1 + resolution), high * (1 + resolution)


def _resolution(metric: str, exact: bool) -> float:
    """A percentile read from a histogram is only known to within one bucket (the bootstrap,
    resampling on the same bucket grid, cannot see that), so its interval is widened by it."""
    return RELATIVE_RESOLUTION if _latency_source(metric) is not None and not exact else 0.0


def _ratio(candidate: FloatArray, baseline: FloatArray) -> FloatArray:
    """candidate / baseline, with 0/0 = 1 and x/0 = inf (no warnings)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = candidate / baseline
    ratio = np.where((baseline == 0) & (candidate == 0), 1.0, ratio)
    return np.where((baseline == 0) & (candidate != 0), np.inf, ratio)


def verdict_for(metric: str, ci_low: float, ci_high: float) -> str:
    """faster / slower for latencies and rates, better / worse for other scored metrics,
    higher / lower for neutral counts; no significant difference when the CI holds 1."""
    if ci_low <= 1.0 <= ci_high:
        return NO_DIFFERENCE
    higher = ci_low > 1.0
    speed = _latency_source(metric) is not None or metric in RATE_METRICS or "latency" in metric
    if lower_is_better(metric):
        return ("slower" if higher else "faster") if speed else ("worse" if higher else "better")
    if metric in HIGHER_IS_BETTER:
        return ("faster" if higher else "slower") if speed else ("better" if higher else "worse")
    return "higher" if higher else "lower"


def compare_estimates(
    before: Estimate, after: Estimate, *, confidence: float = DEFAULT_CONFIDENCE
) -> Comparison:
    """after / before for one metric: point ratio, interval, verdict."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if before.metric != after.metric:
        raise ValueError(f"cannot compare {before.metric!r} with {after.metric!r}")
    metric = before.metric
    ratios = _ratio(after.replicates, before.replicates)
    point = float(_ratio(np.array([after.value]), np.array([before.value]))[0])
    exact = before.exact and after.exact
    df = before.runs + after.runs - 2
    low, high = _bounds(point, ratios, confidence, df, _resolution(metric, exact))
    verdict = verdict_for(metric, low, high)
    return Comparison(
        metric, before.value, after.value, point, low, high, confidence, verdict, exact
    )


def compare_groups(
    baseline: Sequence[RunSample],
    candidate: Sequence[RunSample],
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[Comparison]:
    """Compare two runs or groups of repeats on each metric (seeded: same inputs, same CIs)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return [
        compare_estimates(
            estimate(baseline, metric, resamples=resamples, seed=seed),
            estimate(candidate, metric, resamples=resamples, seed=seed),
            confidence=confidence,
        )
        for metric in metrics
    ]


def interval_of(
    result: Estimate, *, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float, float]:
    """(value, low, high) of one estimate."""
    resolution = _resolution(result.metric, result.exact)
    low, high = _bounds(result.value, result.replicates, confidence, result.runs - 1, resolution)
    return result.value, low, high


def interval(
    group: Sequence[RunSample],
    metric: str,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float, float]:
    """(value, low, high): one group's value of ``metric`` with its bootstrap interval."""
    result = estimate(group, metric, resamples=resamples, seed=seed)
    return interval_of(result, confidence=confidence)
