"""A plain Locust ``--csv PREFIX`` output as a servelab result file (``servelab import-locust``),
so runs made before servelab enter reports.

Locust keeps response times in ~2-significant-digit buckets (whole milliseconds below 100 ms) and
writes only a few percentiles, so the histograms here are *rebuilt*: each span between two
reported percentiles gets its share of the requests, spread evenly over the span. Every figure
derived from them is approximate, and the result says so: ``extra.bucketed_percentiles = true``
and a verdict warning. What Locust does not know stays unknown (``extra.unknown``): predictions,
schema checks, expected rejections, the target's model and the machine.

Read: ``PREFIX_stats.csv`` (required: its ``Aggregated`` row), ``PREFIX_stats_history.csv``
(optional: window, per-second series, users) and ``PREFIX_failures.csv`` (optional: errors).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Final

from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.errors import ResultFileError
from loadtests.results.document import ResultDocument
from loadtests.results.result import RunInfo, Verdict, build_result

PERCENTILE_COLUMNS: Final = (
    (0.50, "50%"), (0.66, "66%"), (0.75, "75%"), (0.80, "80%"), (0.90, "90%"), (0.95, "95%"),
    (0.98, "98%"), (0.99, "99%"), (0.999, "99.9%"), (0.9999, "99.99%"), (1.0, "100%"),
)  # fmt: skip
REQUIRED: Final = ("Request Count", "Failure Count", "Min Response Time", "Max Response Time")
POINTS_PER_SPAN: Final = 32  # values a span's requests are spread over
TRANSPORT_OF_TYPE: Final = {
    "grpc": "grpc", "grpc-stream": "grpc-stream", "batch": "batch", "edge": "edge",
    "GET": "rest", "POST": "rest", "PUT": "rest", "PATCH": "rest", "DELETE": "rest",
}  # fmt: skip
UNKNOWN_ENVIRONMENT: Final = {
    "hostname": "unknown", "cpu_model": "unknown", "logical_cores": 0, "memory_bytes": 0,
    "os": "unknown", "python": "unknown", "packages": {}, "imported": True,
}  # fmt: skip


def _rows(path: Path, *, required: bool) -> list[dict[str, str]] | None:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        if required:
            raise ResultFileError(
                f"{path}: no such file (expected Locust's --csv output)"
            ) from None
        return None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ResultFileError(f"{path}: cannot read as CSV: {exc}") from None
    return rows


def _number(row: Mapping[str, str], column: str, path: Path) -> float:
    text = row.get(column)
    if text is None:
        raise ResultFileError(f"{path}: missing column {column!r} (not a Locust stats CSV?)")
    try:
        return float(text)
    except ValueError:
        raise ResultFileError(f"{path}: column {column!r} holds {text!r}, not a number") from None


def rebuild_histogram(points_ms: list[tuple[float, float]], total: int) -> LatencyHistogram:
    """A histogram of ``total`` samples whose quantiles pass through ``points_ms`` —
    ``(quantile 0..1, value ms)`` pairs from 0 (min) to 1 (max): each span between neighbours
    holds its share of the samples, spread evenly over ``POINTS_PER_SPAN`` values."""
    histogram = LatencyHistogram()
    hdr = histogram.hdr
    if total:
        hdr.record_value(max(round(points_ms[0][1] * 1e6), 0))  # the minimum, one sample
    for index, ((q_low, low_ms), (q_high, high_ms)) in enumerate(pairwise(points_ms)):
        count = round(total * q_high) - round(total * q_low) - (1 if index == 0 else 0)
        steps = min(count, POINTS_PER_SPAN)
        for step in range(steps):  # (low, high]: a span's top value is its percentile
            share = count // steps + (1 if step < count % steps else 0)
            value_ms = low_ms + (high_ms - low_ms) * (step + 1) / steps
            hdr.record_value(max(round(value_ms * 1e6), 0), share)
    return histogram


def import_locust_csv(prefix: str | Path) -> ResultDocument:
    """The result document for Locust's CSV files at ``prefix``; ``ValueError`` (one line
    naming the file) for anything missing or malformed."""
    base = Path(prefix)
    stats_path = base.with_name(base.name + "_stats.csv")
    history_path = base.with_name(base.name + "_stats_history.csv")
    failures_path = base.with_name(base.name + "_failures.csv")
    stats = _rows(stats_path, required=True) or []
    aggregated = next((row for row in stats if row.get("Name") == "Aggregated"), None)
    if aggregated is None:
        raise ResultFileError(f"{stats_path}: no 'Aggregated' row (not a Locust stats CSV?)")
    for column in REQUIRED:
        _number(aggregated, column, stats_path)
    requests = int(_number(aggregated, "Request Count", stats_path))
    failures = int(_number(aggregated, "Failure Count", stats_path))
    points = [(0.0, _number(aggregated, "Min Response Time", stats_path))]
    if requests:
        for quantile, column in PERCENTILE_COLUMNS:
            points.append((quantile, _number(aggregated, column, stats_path)))
    points[-1] = (1.0, max(points[-1][1], _number(aggregated, "Max Response Time", stats_path)))
    history = [
        row for row in _rows(history_path, required=False) or [] if row.get("Name") == "Aggregated"
    ]
    recorder = Recorder(start_ns=0)
    recorder.requests, recorder.failures = requests, failures
    recorder.successes = requests - failures
    recorder.latency = rebuild_histogram(points, requests)
    recorder.service = rebuild_histogram(points, requests)  # a closed loop: one and the same
    recorder.lateness.add_zeros(requests)
    recorder.errors = _errors(failures_path)
    window_s, users = _history(history, history_path, recorder)
    if window_s is None:
        rps = _number(aggregated, "Requests/s", stats_path) if "Requests/s" in aggregated else 0.0
        window_s = requests / rps if rps > 0 else 0.0
    transports = sorted({TRANSPORT_OF_TYPE.get(row.get("Type") or "", "locust")
                         for row in stats if row.get("Name") != "Aggregated"})  # fmt: skip
    target = transports[0] if len(transports) == 1 else "mixed" if transports else "locust"
    run = RunInfo(
        target=target, transport=target, mode="closed", model="unknown", seed=0,
        concurrency=users, duration_s=window_s or None, tool="locust", label=base.name,
    )  # fmt: skip
    verdict = Verdict(
        True,
        warnings=(
            "percentiles rebuilt from Locust's CSV (~2-significant-digit buckets): latency "
            "figures are approximate",
        ),
    )
    extra = {
        "bucketed_percentiles": True,
        "imported_from": [str(p) for p in (stats_path, history_path, failures_path) if p.exists()],
        "unknown": ["predictions", "schema_success_rate", "expected_rejections", "model"],
        "locust_csv": dict(aggregated),
    }
    return build_result(
        run, recorder, window_s=window_s, verdict=verdict, environment=dict(UNKNOWN_ENVIRONMENT),
        extra=extra,
    )  # fmt: skip


def _history(
    rows: list[dict[str, str]], path: Path, recorder: Recorder
) -> tuple[float | None, int | None]:
    """Window and peak users from the history rows; their per-second series into ``recorder``."""
    if not rows:
        return None, None
    stamps = [int(_number(row, "Timestamp", path)) for row in rows]
    start = stamps[0]
    users = max(int(_number(row, "User Count", path)) for row in rows)
    last_requests = last_failures = 0.0
    for stamp, row in zip(stamps, rows, strict=True):
        total = _number(row, "Total Request Count", path)
        failed = _number(row, "Total Failure Count", path)
        if total > last_requests:
            p50, p99 = row.get("50%", "N/A"), row.get("99%", "N/A")
            recorder.timeseries.append({
                "t_s": stamp - start,
                "requests": total - last_requests,
                "failures": failed - last_failures,
                "p50_ms": float(p50) if p50 not in ("N/A", "") else 0.0,
                "p99_ms": float(p99) if p99 not in ("N/A", "") else 0.0,
            })  # fmt: skip
        last_requests, last_failures = total, failed
    recorder.first_sent_ns, recorder.last_ended_ns = start * 10**9, stamps[-1] * 10**9
    return float(max(stamps[-1] - start, 1)), users


def _errors(path: Path) -> dict[str, int]:
    errors: dict[str, int] = {}
    for row in _rows(path, required=False) or []:
        name = (row.get("Error") or "unknown").strip()[:80]
        errors[name] = errors.get(name, 0) + int(_number(row, "Occurrences", path))
    return errors
