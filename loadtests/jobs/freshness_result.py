"""The ``servelab freshness`` result: one servelab result document whose ``extra.freshness``
holds a point per backfill schedule and per streaming window.

Its ``summary``, ``histograms``, ``errors`` and ``timeseries`` are the streaming windows' real
events pooled (histograms merged, counts summed, per-second rows laid end to end): every
request in the file was measured, arrival to output, and thresholds (``p99<50ms``) and the
default success gate judge those. Backfill freshness is on virtual time and lives in the
points only (it spans hours, past the 2 h latency histograms). Its cost block is the streaming
windows' too; each point carries its own CPU per 1,000 predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from loadtests.engine.histogram import LatencyHistogram
from loadtests.results.document import HistogramsBlock, ResultDocument, SummaryBlock
from loadtests.results.freshness import Point
from loadtests.results.result import KIND, SCHEMA_VERSION, RunInfo, Verdict

_HISTOGRAMS = ("latency", "service_latency", "failure_latency", "client_queue", "send_lateness")
_SUMMARY_OF = {  # summary block -> the histogram it summarises
    "latency_ms": "latency",
    "service_latency_ms": "service_latency",
    "failure_latency_ms": "failure_latency",
    "client_queue_ms": "client_queue",
    "send_lateness_ms": "send_lateness",
}
_COUNTS = ("requests", "successes", "failures", "expected_rejections")


def _merged(documents: Sequence[ResultDocument], name: str) -> LatencyHistogram | None:
    encoded = [cast("dict[str, Any]", d["histograms"] or {}).get(name) for d in documents]
    parts = [LatencyHistogram.decode(text) for text in encoded if isinstance(text, str)]
    if not parts:
        return None
    merged = LatencyHistogram()
    for part in parts:
        merged.merge(part)
    return merged


def pooled_blocks(
    documents: Sequence[ResultDocument],
) -> tuple[SummaryBlock, HistogramsBlock, dict[str, int], list[dict[str, float]]]:
    """(summary, histograms, errors, timeseries) of the runs taken together."""
    merged = {name: _merged(documents, name) for name in _HISTOGRAMS}
    summaries = [d["summary"] for d in documents]
    plain = [cast("dict[str, Any]", s) for s in summaries]
    counts = {name: sum(int(s[name]) for s in plain) for name in _COUNTS}
    window_s = sum(float(s["window_s"]) for s in summaries)
    judged = counts["requests"] - counts["expected_rejections"]
    schema_weight = sum(s["schema_success_rate"] * s["successes"] for s in summaries)
    summary: dict[str, Any] = {
        **counts,
        "success_rate": counts["successes"] / judged if judged else 0.0,
        "schema_success_rate": schema_weight / counts["successes"] if counts["successes"] else 0.0,
        "throughput_rps": counts["successes"] / window_s if window_s > 0 else 0.0,
        "predictions_per_s": (
            sum(s["predictions_per_s"] * s["window_s"] for s in summaries) / window_s
            if window_s > 0
            else 0.0
        ),
        "window_s": window_s,
        "latency_scope": "successes",
    }
    for block, name in _SUMMARY_OF.items():
        histogram = merged[name]
        summary[block] = histogram.summary_ms() if histogram is not None else None
    all_latency = [h for h in (merged["latency"], merged["failure_latency"]) if h is not None]
    summary["all_latency_ms"] = _pooled_summary_ms(all_latency)
    histograms = {name: h.encode() if h is not None else None for name, h in merged.items()}
    errors: dict[str, int] = {}
    for document in documents:
        for name, count in (document.get("errors") or {}).items():
            errors[name] = errors.get(name, 0) + int(count)
    return (
        cast("SummaryBlock", summary),
        cast("HistogramsBlock", histograms),
        dict(sorted(errors.items())),
        _laid_end_to_end(documents),
    )


def _pooled_summary_ms(parts: Sequence[LatencyHistogram]) -> dict[str, float] | None:
    if not parts:
        return None
    pooled = LatencyHistogram()
    for part in parts:
        pooled.merge(part)
    return pooled.summary_ms()


def _laid_end_to_end(documents: Sequence[ResultDocument]) -> list[dict[str, float]]:
    rows, offset = [], 0.0
    for document in documents:
        series = [row for row in document.get("timeseries") or [] if "t_s" in row]
        rows += [{**row, "t_s": row["t_s"] + offset} for row in series]
        offset += max((row["t_s"] for row in series), default=-1.0) + 1.0
    return rows


def freshness_document(
    run: RunInfo,
    streams: Sequence[ResultDocument],
    points: Sequence[Point],
    *,
    setup: dict[str, Any],
    notes: Sequence[str] = (),
) -> ResultDocument:
    """The result document (see the module docstring); ``setup``: how the points were made
    (rate, horizon, makespan scaling), kept beside them in ``extra.freshness``."""
    summary, histograms, errors, timeseries = pooled_blocks(streams)
    reasons = [
        f"stream window {d['run']['window_ms']:g}ms: {reason}"
        for d in streams
        for reason in d["verdict"]["reasons"]
    ]
    warnings = [
        f"stream window {d['run']['window_ms']:g}ms: {warning}"
        for d in streams
        for warning in d["verdict"]["warnings"]
    ]
    cpu = [d["cost"].get("target_cpu_s") for d in streams]
    known = [float(c) for c in cpu if isinstance(c, int | float)]
    predictions = summary["predictions_per_s"] * summary["window_s"]
    target_cpu_s = sum(known) if len(known) == len(cpu) else None
    verdict = Verdict(not reasons, tuple(reasons), tuple(warnings), tuple(notes))
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "run": run.block(),
        "environment": streams[0]["environment"] if streams else {},
        "cost": {
            "target_cpu_s": target_cpu_s,
            "cpu_s_per_1k_predictions": (
                target_cpu_s / predictions * 1000
                if target_cpu_s is not None and predictions
                else None
            ),
            "scope": "this process (in-process targets: the stream consumer and the batch job)",
            "source": "in-process",
        },
        "verdict": verdict.block(),
        "summary": summary,
        "errors": errors,
        "histograms": histograms,
        "timeseries": timeseries,
        "extra": {"freshness": {**setup, "points": [point.block() for point in points]}},
    }
