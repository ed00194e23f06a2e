"""A finished recorder as plain data and back, to move it between processes: Locust workers to
their master (msgpack), ``servelab run --processes`` children to their parent (a pipe). Counts
and errors as numbers, the histograms in the standard HDR encoding (exact counts); per-second
rows travel apart (Locust sends only new ones each report). Only ints, strs, lists and dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder

COUNTERS: Final = (
    "requests", "successes", "failures", "expected_rejections", "schema_checked", "schema_ok",
    "predictions", "bytes_sent", "bytes_received",
)  # fmt: skip
HISTOGRAMS: Final = ("latency", "service", "client_queue", "failure_latency", "lateness")


def recorder_to_wire(recorder: Recorder) -> dict[str, Any]:
    """A folded recorder's counts and encoded histograms (its per-second rows travel apart;
    the buckets of each second too, where it kept them: ``Recorder.keep_seconds``)."""
    return {
        "counts": {name: getattr(recorder, name) for name in COUNTERS},
        "errors": dict(recorder.errors),
        "first_sent_ns": recorder.first_sent_ns,
        "last_ended_ns": recorder.last_ended_ns,
        "histograms": {
            name: getattr(recorder, name).encode() if getattr(recorder, name).total else None
            for name in HISTOGRAMS
        },
        "saturated": {name: getattr(recorder, name).saturated for name in HISTOGRAMS},
        "seconds": {
            str(second): [indices.tolist(), counts.tolist()]
            for second, (indices, counts) in recorder.second_counts.items()
        },
    }


def recorder_from_wire(data: Mapping[str, Any], rows: list[dict[str, float]]) -> Recorder:
    """``recorder_to_wire`` undone, with the per-second ``rows``."""
    seconds = data.get("seconds") or {}
    recorder = Recorder(start_ns=0, keep_seconds=bool(seconds))
    for name in COUNTERS:
        setattr(recorder, name, int(data["counts"][name]))
    recorder.errors = {str(k): int(v) for k, v in data["errors"].items()}
    recorder.first_sent_ns = data["first_sent_ns"]
    recorder.last_ended_ns = data["last_ended_ns"]
    for name in HISTOGRAMS:
        encoded = data["histograms"].get(name)
        if encoded:
            histogram = LatencyHistogram.decode(encoded)
            histogram.saturated = int(data["saturated"].get(name, 0))
            setattr(recorder, name, histogram)
    recorder.timeseries = [dict(row) for row in rows]
    recorder.second_counts = {
        int(second): (np.asarray(indices, dtype=np.int64), np.asarray(counts, dtype=np.int64))
        for second, (indices, counts) in seconds.items()
    }
    return recorder
