"""A latency histogram as its non-empty buckets: what the statistics resample and the charts
draw. ``buckets_of`` reads them out of an HdrHistogram vectorised (one numpy pass instead of a
Python call per bucket); the percentile rule is HdrHistogram's, so figures match result files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from loadtests.engine.histogram import SIGNIFICANT_FIGURES, LatencyHistogram, hdr_ranks

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

# A bucket's width relative to its values: at most 1 / (half the sub-bucket count), 1/1024 for
# three significant figures. A percentile read from the histogram is known to within this.
RELATIVE_RESOLUTION: Final = 1 / 2 ** (math.ceil(math.log2(2 * 10**SIGNIFICANT_FIGURES)) - 1)


@dataclass(frozen=True, slots=True)
class Buckets:
    """A latency histogram reduced to its non-empty buckets, ascending.

    ``upper_ms`` is each bucket's highest equivalent value (what HdrHistogram reports for a
    percentile), ``middle_ms`` its median equivalent value (what it uses for the mean).
    """

    upper_ms: FloatArray
    middle_ms: FloatArray
    counts: IntArray

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def percentiles_ms(self, percentiles: Sequence[float] | FloatArray) -> FloatArray:
        """Values at ``percentiles`` (0..100) by HdrHistogram's rule (``hdr_ranks``): the bucket
        holding the k-th smallest value."""
        wanted = np.asarray(percentiles, dtype=np.float64)
        if self.counts.size == 0:
            return np.zeros_like(wanted)
        cumulative = np.cumsum(self.counts)
        index = np.minimum(
            np.searchsorted(cumulative, hdr_ranks(wanted, self.total)), cumulative.size - 1
        )
        values: FloatArray = self.upper_ms[index]
        return values

    def percentile_ms(self, percentile: float) -> float:
        return float(self.percentiles_ms([percentile])[0])

    def mean_ms(self) -> float:
        total = self.total
        return float(self.counts @ self.middle_ms / total) if total else 0.0

    def std_ms(self) -> float:
        total = self.total
        if total < 2:
            return 0.0
        mean = self.mean_ms()
        return math.sqrt(float(self.counts @ (self.middle_ms - mean) ** 2) / (total - 1))


def merge_buckets(parts: Sequence[Buckets]) -> Buckets:
    """One histogram of several (same HDR layout, so equal upper values are the same bucket)."""
    if len(parts) == 1:
        return parts[0]
    upper, where = np.unique(np.concatenate([p.upper_ms for p in parts]), return_inverse=True)
    middle = np.zeros_like(upper)
    middle[where] = np.concatenate([p.middle_ms for p in parts])
    counts = np.bincount(where, weights=np.concatenate([p.counts for p in parts]))
    return Buckets(upper, middle, counts.astype(np.int64))


def buckets_of(histogram: LatencyHistogram) -> Buckets:
    """The non-empty buckets of an HdrHistogram (vectorised ``get_value_from_index`` and
    ``get_highest_equivalent_value``; a test pins it against hdrh for every bucket)."""
    hdr = histogram.hdr
    counts = np.ctypeslib.as_array(hdr.counts)[: hdr.counts_len].astype(np.int64)
    index = np.flatnonzero(counts)
    half = int(hdr.sub_bucket_half_count)
    bucket = (index >> int(hdr.sub_bucket_half_count_magnitude)) - 1
    sub_bucket = (index & (half - 1)) + half
    first = bucket < 0  # the first bucket uses both halves of its sub-buckets
    sub_bucket = np.where(first, sub_bucket - half, sub_bucket)
    shift = np.where(first, 0, bucket) + int(hdr.unit_magnitude)
    lowest = sub_bucket << shift
    size = np.left_shift(np.int64(1), shift)
    return Buckets((lowest + size - 1) / 1e6, (lowest + (size >> 1)) / 1e6, counts[index])


def decode_buckets(encoded: object) -> Buckets | None:
    """Buckets of an encoded histogram; None when absent, empty or undecodable."""
    if not isinstance(encoded, str) or not encoded:
        return None
    try:
        buckets = buckets_of(LatencyHistogram.decode(encoded))
    except Exception:  # hdrh raises assorted errors (zlib, base64, struct) on a mangled string
        return None
    return buckets if buckets.total else None
