"""The vectorised HDR fold is exactly ``record_value``, and quantiles are within HDR precision."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from loadtests.engine.histogram import HIGHEST_NS, LOWEST_NS, SIGNIFICANT_FIGURES, LatencyHistogram


def _values() -> np.ndarray:
    rng = np.random.default_rng(7)
    edges = [0, 1, 2, 1023, 1024, 2047, 2048, 2049, 4095, 4096, 10**6, HIGHEST_NS - 1, HIGHEST_NS]
    return np.concatenate(
        [
            rng.integers(0, 5000, 20_000),
            rng.lognormal(15, 3, 50_000).astype(np.int64).clip(0, HIGHEST_NS),
            np.array(edges, dtype=np.int64),
        ]
    )


def test_bulk_fold_equals_record_value_one_by_one() -> None:
    values = _values()
    bulk = LatencyHistogram()
    bulk.record_many(values)
    reference = HdrHistogram(LOWEST_NS, HIGHEST_NS, SIGNIFICANT_FIGURES)
    for value in values.tolist():
        reference.record_value(value)
    assert np.array_equal(
        np.ctypeslib.as_array(bulk.hdr.counts), np.ctypeslib.as_array(reference.counts)
    )
    assert bulk.total == reference.get_total_count() == values.size
    assert bulk.hdr.get_min_value() == reference.get_min_value()
    assert bulk.hdr.get_max_value() == reference.get_max_value()
    for percentile in (50, 90, 99, 99.9, 100):
        assert bulk.percentile_ns(percentile) == reference.get_value_at_percentile(percentile)


def test_quantiles_are_within_hdr_precision_of_exact_ones() -> None:
    values = np.random.default_rng(3).lognormal(np.log(5e6), 0.5, 100_000).astype(np.int64)
    histogram = LatencyHistogram()
    histogram.record_many(values)
    ordered = np.sort(values)
    for percentile in (50, 90, 99, 99.9):
        rank = int(percentile * values.size / 100 + 0.5)  # HdrHistogram's rank definition
        exact = ordered[rank - 1]
        assert histogram.percentile_ns(percentile) == pytest.approx(exact, rel=1e-3)


def test_values_beyond_the_range_are_clamped_and_counted() -> None:
    histogram = LatencyHistogram()
    histogram.record_many(np.array([-5, HIGHEST_NS * 3], dtype=np.int64))
    assert histogram.total == 2
    assert histogram.saturated == 1
    assert histogram.hdr.get_min_value() == 0


def test_encoding_round_trips_and_merges() -> None:
    first, second = LatencyHistogram(), LatencyHistogram()
    first.record_many(np.arange(1, 1001, dtype=np.int64))
    second.record_many(np.arange(1001, 2001, dtype=np.int64))
    decoded = LatencyHistogram.decode(first.encode())
    assert decoded.total == 1000
    decoded.merge(LatencyHistogram.decode(second.encode()))
    assert decoded.total == 2000
    assert decoded.percentile_ns(50) == pytest.approx(1000, rel=1e-3)
    assert decoded.hdr.get_max_value() == pytest.approx(2000, rel=1e-3)


def test_empty_summary_is_zeros() -> None:
    assert set(LatencyHistogram().summary_ms().values()) == {0.0}


PERCENTILES = [0.0, 0.001, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0, 150.0]


@pytest.mark.parametrize("size", [1, 2, 7, 1000, None])
def test_vectorised_percentiles_equal_hdrh_exactly(size: int | None) -> None:
    values = _values()[:size] if size else _values()
    ours = LatencyHistogram()
    ours.record_many(values)
    expected = [ours.hdr.get_value_at_percentile(p) for p in PERCENTILES]  # hdrh's own loop
    assert ours.percentiles_ns(PERCENTILES) == expected
    assert [ours.percentile_ns(p) for p in PERCENTILES] == expected
    points = ours.hdr.get_percentile_to_value_dict([50, 90, 95, 99, 99.9])
    summary = ours.summary_ms()
    assert [summary[k] for k in ("p50", "p90", "p95", "p99", "p999")] == [
        points[p] / 1e6 for p in (50, 90, 95, 99, 99.9)
    ]


@pytest.mark.parametrize("size", [1, 2, 7, 1000, None])
def test_vectorised_mean_equals_hdrh_exactly(size: int | None) -> None:
    values = _values()[:size] if size else _values()
    ours = LatencyHistogram()
    ours.record_many(values)
    assert ours.mean_ns() == ours.hdr.get_mean_value()  # hdrh's own loop over every bucket
    assert ours.summary_ms()["mean"] == ours.hdr.get_mean_value() / 1e6


def test_mean_is_exact_past_int64_sums() -> None:
    # 10**8 samples of 2 h sum to ~7e20 ns, past int64: the sum must stay an exact integer
    ours = LatencyHistogram()
    ours.hdr.record_value(HIGHEST_NS, 10**8)
    ours.hdr.record_value(3, 5)
    assert ours.hdr.get_mean_value() * ours.total > 2**63  # an int64 sum would wrap
    assert ours.mean_ns() == ours.hdr.get_mean_value()


def test_empty_histogram_percentiles_are_zero() -> None:
    assert LatencyHistogram().percentiles_ns([50, 99]) == [0, 0]


def test_a_reset_histogram_is_as_good_as_new() -> None:
    used = LatencyHistogram()
    used.record_many(_values())
    used.reset()
    assert used.total == 0
    assert used.percentiles_ns([50, 99]) == [0, 0]
    fresh = LatencyHistogram()
    values = _values()[:5000]
    used.record_many(values)
    fresh.record_many(values)
    assert used.encode() == fresh.encode()
    assert used.summary_ms() == fresh.summary_ms()
