"""Student's t for the small-sample correction of bootstrap intervals over a few repeats.

numpy has no t quantile and scipy is not a dependency; for integer degrees of freedom the
two-sided coverage has a closed form (Abramowitz & Stegun 26.7.3-4), so bisection on it is
exact to float precision.
"""

from __future__ import annotations

import math
import statistics


def _t_coverage(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3-4, exact)."""
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:
        term, total = 1.0, 0.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    term, total = 1.0, 0.0
    for k in range(1, df // 2 + 1):
        total += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


def t_quantile(confidence: float, df: int) -> float:
    """The two-sided ``confidence`` critical value of Student's t (bisection; numpy has none)."""
    low, high = 0.0, 1e7
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_coverage(middle, df) < confidence else (low, middle)
    return (low + high) / 2


def small_sample_scale(confidence: float, df: int) -> float:
    """t(df) / z: how much wider a bootstrap interval from df + 2 repeats must be."""
    if df < 1:
        return 1.0
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    return t_quantile(confidence, df) / z
