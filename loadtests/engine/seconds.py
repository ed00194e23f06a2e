"""The per-second series: one second's figures while it is open, and rows of several recorders
(workers, generator processes) merged.

Counts merge by summing. Percentiles of parts cannot be merged from the percentiles alone: where
both sides kept a second's latency buckets (``Recorder(keep_seconds=True)``, as the processes
of ``servelab run --processes`` do) the merged second's p50/p99 are recomputed from the summed
buckets, exactly; otherwise (Locust workers) the worse of the two is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from loadtests.engine.histogram import LatencyHistogram, SparseCounts

Rows = list[dict[str, float]]
Seconds = tuple[Rows, dict[int, SparseCounts]]  # the rows, and the buckets kept by second


@dataclass(slots=True)
class SecondStats:
    """One second of the per-second series (by end time, relative to the run start). Its
    latencies go into a histogram of its own, so memory per open second is constant."""

    t_s: int
    requests: int = 0
    failures: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def close(self) -> dict[str, float]:
        p50_ns, p99_ns = self.latency.percentiles_ns([50, 99])
        return {
            "t_s": self.t_s,
            "requests": self.requests,
            "failures": self.failures,
            "p50_ms": p50_ns / 1e6,
            "p99_ms": p99_ns / 1e6,
        }


def merged_seconds(mine: Seconds, other: Seconds, *, keep: bool) -> Seconds:
    """``other``'s seconds added to ``mine`` (whose rows are updated in place); ``keep``: the
    result keeps buckets too, for the next merge."""
    rows, counts = mine
    other_rows, other_counts = other
    by_second = {int(row["t_s"]): row for row in rows}
    for row in other_rows:
        second = int(row["t_s"])
        have, theirs = by_second.get(second), other_counts.get(second)
        if have is None:
            by_second[second] = dict(row)
            if theirs is not None and keep:
                counts[second] = theirs
            continue
        have["requests"] += row["requests"]
        have["failures"] += row["failures"]
        kept = counts.get(second)
        if kept is None or theirs is None:
            have["p50_ms"] = max(have["p50_ms"], row["p50_ms"])
            have["p99_ms"] = max(have["p99_ms"], row["p99_ms"])
            continue
        counts[second] = added(kept, theirs)
        p50_ns, p99_ns = LatencyHistogram.from_sparse(kept, theirs).percentiles_ns([50, 99])
        have["p50_ms"], have["p99_ms"] = p50_ns / 1e6, p99_ns / 1e6
    return [by_second[second] for second in sorted(by_second)], counts


def added(first: SparseCounts, second: SparseCounts) -> SparseCounts:
    """Two sparse bucket counts as one."""
    indices = np.concatenate([first[0], second[0]])
    unique, where = np.unique(indices, return_inverse=True)
    counts = np.zeros(unique.size, dtype=np.int64)
    np.add.at(counts, where, np.concatenate([first[1], second[1]]))
    return unique.astype(np.int64), counts
