"""Exact, mergeable latency histograms: HdrHistogram (ns, 1 ns .. 2 h, 3 significant digits)
filled vectorised.

``HdrHistogram.record_value`` costs ~1 µs a sample, so samples are never recorded one by one:
``record_many`` computes every sample's counts index with numpy (the same arithmetic as
``HdrHistogram._counts_index_for``), bincounts them and adds the counts in place.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

LOWEST_NS: Final = 1
HIGHEST_NS: Final = 2 * 3600 * 10**9  # 2 h: anything slower is clamped and counted as saturated
SIGNIFICANT_FIGURES: Final = 3

IntArray = npt.NDArray[np.int64]
SparseCounts = tuple[IntArray, IntArray]  # (counts indices, counts) of a histogram's used buckets

# The latency percentiles servelab reports, by the name a summary block and a threshold use.
PERCENTILES: Final[Mapping[str, float]] = MappingProxyType(
    {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
)
LATENCY_KEYS: Final = ("min", "mean", *PERCENTILES, "max")  # a summary latency block's keys


def hdr_ranks(percentiles: npt.ArrayLike, total: npt.ArrayLike) -> IntArray:
    """HdrHistogram's percentile rule: the value at percentile ``p`` of ``total`` values is the
    k-th smallest, k = max(round-half-up(p·total/100), 1), with ``p`` capped at 100. Every
    reader of a histogram (this module, ``reports``) ranks with it, so figures agree."""
    capped = np.minimum(np.asarray(percentiles, dtype=np.float64), 100.0)
    ranks: IntArray = np.maximum(np.floor(capped * total / 100 + 0.5), 1).astype(np.int64)
    return ranks


@dataclass(slots=True)
class Prepared:
    """Samples reduced to counts indices, ready to add to histograms of the standard layout.
    ``counted`` caches what adding them all takes (first bucket, counts), so adding the same
    samples to several histograms (latency, service time, their second) counts them once."""

    indices: IntArray
    low_ns: int
    high_ns: int
    saturated: int
    counted: tuple[int, npt.NDArray[np.uint64]] | None = None


def _span_counts(indices: IntArray) -> tuple[int, npt.NDArray[np.uint64]]:
    """(first index, counts of each index from it): a bincount over the span touched."""
    first = int(indices.min())
    return first, np.bincount(indices - first).astype(np.uint64)


class LatencyHistogram:
    """An ``HdrHistogram`` of nanoseconds with a vectorised bulk record."""

    def __init__(self, histogram: HdrHistogram | None = None) -> None:
        self.hdr = histogram or HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)
        self._counts = np.ctypeslib.as_array(self.hdr.counts)
        self._shift = self.hdr.sub_bucket_half_count_magnitude
        self.saturated = 0  # samples above HIGHEST_NS, recorded as HIGHEST_NS

    @property
    def total(self) -> int:
        return int(self.hdr.get_total_count())

    def counts_indices(self, values_ns: IntArray) -> IntArray:
        """Counts-array index of each value (vectorised ``_counts_index_for``)."""
        hdr = self.hdr
        masked = values_ns | hdr.sub_bucket_mask
        # bit length of each (positive) value: frexp's exponent, exact below 2**53
        bit_length = np.frexp(masked.astype(np.float64))[1].astype(np.int64)
        bucket = bit_length - hdr.unit_magnitude - (self._shift + 1)
        sub_bucket = values_ns >> (bucket + hdr.unit_magnitude)
        indices: IntArray = ((bucket + 1) << self._shift) + sub_bucket - hdr.sub_bucket_half_count
        return indices

    def prepare(self, values_ns: IntArray) -> Prepared:
        """Counts indices and extremes of ``values_ns`` (ns; negatives count as 0, values over
        2 h as 2 h) — computed once, addable to several histograms of the same layout."""
        values = np.asarray(values_ns, dtype=np.int64)
        if values.size == 0:
            return Prepared(values, 0, 0, 0)
        low, high = int(values.min()), int(values.max())
        saturated = 0
        if low < 0 or high > HIGHEST_NS:
            saturated = int((values > HIGHEST_NS).sum())
            values = np.clip(values, 0, HIGHEST_NS)
            low, high = max(low, 0), min(high, HIGHEST_NS)
        return Prepared(self.counts_indices(values), low, high, saturated)

    def add(self, prepared: Prepared, subset: np.ndarray | None = None) -> None:
        """Add prepared samples (or the ``subset`` mask of them)."""
        indices = prepared.indices if subset is None else prepared.indices[subset]
        if indices.size == 0:
            return
        if subset is None:
            if prepared.counted is None:
                prepared.counted = _span_counts(indices)
            first, counts = prepared.counted
            self._counts[first : first + counts.size] += counts
        else:
            self._add_counts(indices)
        hdr = self.hdr
        hdr.total_count += int(indices.size)
        if subset is None:
            low, high = prepared.low_ns, prepared.high_ns
            self.saturated += prepared.saturated
        else:  # extremes of a subset: read back from the bucket values (HDR precision)
            low = int(hdr.get_value_from_index(int(indices.min())))
            high = int(
                hdr.get_highest_equivalent_value(hdr.get_value_from_index(int(indices.max())))
            )
        hdr.min_value = min(hdr.min_value, low)
        hdr.max_value = max(hdr.max_value, high)

    def reset(self) -> None:
        """Empty, for reuse (HdrHistogram's own ``reset`` loops over every bucket in Python)."""
        self._counts[:] = 0
        hdr = self.hdr
        hdr.total_count = 0
        hdr.min_value = sys.maxsize
        hdr.max_value = 0
        hdr.start_time_stamp_msec = sys.maxsize
        hdr.end_time_stamp_msec = 0
        self.saturated = 0

    def _add_counts(self, indices: IntArray) -> None:
        """Count each index. Only the span of buckets touched is written: a bincount over all
        34,816 buckets would cost ~0.2 ms however few the samples, and small folds are what keep
        the event loop from stalling under open-loop load."""
        first, last = int(indices.min()), int(indices.max())
        if last - first + 1 <= 8 * indices.size:
            first, counts = _span_counts(indices)
            self._counts[first : first + counts.size] += counts
        else:  # few samples spread wide: count the distinct ones
            unique, repeats = np.unique(indices, return_counts=True)
            self._counts[unique] += repeats.astype(np.uint64)

    def add_zeros(self, count: int) -> None:
        """Record ``count`` zero values (sends exactly on schedule) without any array work."""
        if count:
            self._counts[0] += np.uint64(count)
            self.hdr.total_count += count
            self.hdr.min_value = 0
            self.hdr.max_value = max(self.hdr.max_value, 0)

    def record_many(self, values_ns: IntArray) -> None:
        """Record every value (ns; negatives count as 0, values over 2 h as 2 h)."""
        self.add(self.prepare(values_ns))

    def merge(self, other: LatencyHistogram) -> None:
        self.hdr.add(other.hdr)
        self.saturated += other.saturated

    def sparse_counts(self) -> SparseCounts:
        """The non-zero buckets, as (counts indices, counts): a second's few hundred buckets,
        kept so that seconds of several processes merge exactly (``Recorder.keep_seconds``)."""
        indices = np.flatnonzero(self._counts).astype(np.int64)
        return indices, self._counts[indices].astype(np.int64)

    @classmethod
    def from_sparse(cls, *parts: SparseCounts) -> LatencyHistogram:
        """A histogram holding the counts of every part (``sparse_counts``), for percentiles."""
        histogram = cls()
        for indices, counts in parts:
            if indices.size:
                np.add.at(histogram._counts, indices, counts.astype(np.uint64))
                histogram.hdr.total_count += int(counts.sum())
        return histogram

    def share_above(self, value_ns: int) -> float:
        """Share of the recorded values above ``value_ns`` (to the histogram's precision)."""
        total = int(self._counts.sum())
        if not total:
            return 0.0
        index = int(self.counts_indices(np.array([value_ns], dtype=np.int64))[0])
        return float(self._counts[index + 1 :].sum()) / total

    def percentiles_ns(self, percentiles: list[float]) -> list[int]:
        """Values at ``percentiles`` exactly as HdrHistogram's ``get_value_at_percentile`` gives
        them, found with one cumulative sum instead of its Python loop over every bucket
        (~5 ms a call: a progress tick must not stall the loop that long)."""
        total = self.total
        if not total:
            return [0] * len(percentiles)
        hdr = self.hdr
        cumulative = np.cumsum(self._counts)
        indices = np.searchsorted(cumulative, hdr_ranks(percentiles, total)).tolist()
        values = []
        for percentile, index in zip(percentiles, indices, strict=True):
            value = hdr.get_value_from_index(int(index))
            equivalent = (
                hdr.get_highest_equivalent_value if percentile else hdr.get_lowest_equivalent_value
            )
            values.append(int(equivalent(value)))
        return values

    def percentile_ns(self, percentile: float) -> int:
        return self.percentiles_ns([percentile])[0]

    def mean_ns(self) -> float:
        """The mean exactly as HdrHistogram's ``get_mean_value`` gives it — each bucket's count
        times its median-equivalent value, summed as exact integers — from the used buckets
        alone, not its Python iterator over every bucket (~1 s on a long run's histogram)."""
        total = self.total
        if not total:
            return 0.0
        hdr = self.hdr
        indices = np.flatnonzero(self._counts).astype(np.int64)
        half = hdr.sub_bucket_half_count
        bucket = (indices >> self._shift) - 1
        sub_bucket = (indices & (half - 1)) + half
        first = bucket < 0  # the first bucket spans the whole sub-bucket range
        sub_bucket[first] -= half
        bucket[first] = 0
        lowest = sub_bucket << (bucket + hdr.unit_magnitude)
        median = lowest + ((np.int64(1) << (bucket + hdr.unit_magnitude)) >> 1)
        counts = self._counts[indices].astype(np.int64)
        # object dtype: exact integers, as counts times values can pass 2**63 on a long run
        weighted = int(np.dot(counts.astype(object), median.astype(object)))
        return float(weighted) / total

    def summary_ms(self) -> dict[str, float]:
        """``LATENCY_KEYS`` (min, mean, the ``PERCENTILES``, max) in milliseconds (zeros when
        empty)."""
        if not self.total:
            return dict.fromkeys(LATENCY_KEYS, 0.0)
        hdr = self.hdr
        values_ns = self.percentiles_ns(list(PERCENTILES.values()))
        summary = {"min": hdr.get_min_value() / 1e6, "mean": self.mean_ns() / 1e6}
        summary.update(
            (name, value / 1e6) for name, value in zip(PERCENTILES, values_ns, strict=True)
        )
        summary["max"] = hdr.get_max_value() / 1e6
        return summary

    def encode(self) -> str:
        """The standard compressed, base64 HdrHistogram encoding (readable by any HDR port)."""
        encoded = self.hdr.encode()
        return encoded.decode("ascii") if isinstance(encoded, bytes) else str(encoded)

    @classmethod
    def decode(cls, encoded: str) -> LatencyHistogram:
        return cls(HdrHistogram.decode(encoded))
