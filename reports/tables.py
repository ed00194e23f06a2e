"""The report's tables as plain rows, and the text outputs built from them: ``summary.md``
(GitHub-flavoured), ``comparison.csv`` and ``comparison.json``. The HTML page (``render.py``)
renders the same rows, so every output says the same thing.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from reports.analysis import Analysis, CellStats, Interval
from reports.conditions import RUN_HEADERS, conditions_line, run_records, run_rows
from reports.landscape import Claim
from reports.load import Cell, Run

REPORT_KIND: Final = "servelab-report"
REPORT_SCHEMA_VERSION: Final = 1
CELL_HEADERS: Final = (
    "cell",
    "model",
    "runs",
    "p50 ms [95% CI]",
    "p99 ms [95% CI]",
    "service p50 / p99 ms",
    "client queue p50 / p99 ms",
    "throughput req/s [95% CI]",
    "success",
    "schema success",
    "CPU-s / 1k pred.",
    "status",
)
COMPARISON_HEADERS: Final = (
    "compared",
    "context",
    "metric",
    "baseline",
    "candidate",
    "change [95% CI]",
    "verdict",
)
CSV_COLUMNS: Final = (
    "dimension",
    "context",
    "baseline",
    "candidate",
    "metric",
    "baseline_value",
    "candidate_value",
    "ratio",
    "change_pct",
    "ci_low",
    "ci_high",
    "confidence",
    "verdict",
)
INVALID_HEADERS: Final = (
    "file", "cell", "reasons", "p50 ms", "p99 ms", "service p50 / p99 ms",
    "client queue p50 / p99 ms", "throughput req/s",
)  # fmt: skip
CELL_LEGEND: Final = (
    "p50 and p99 are latency from the intended start; service latency runs from the wire to "
    "the answer (from the dispatch where the driver cannot see the wire); client queue is the "
    "wait from dispatch to the wire, for a free connection, stream or worker. “—”: the driver "
    "could not see the wire (gRPC unary, Locust users, v1 result files), which is not 0."
)
ABSENT: Final = "—"  # a figure that was not measured: never shown as 0
LANDSCAPE_HEADERS: Final = (
    "hardware", "model", "pattern", "claim", "on this hardware", "evidence",
)  # fmt: skip


def number(value: float | None, unit: str = "") -> str:
    """Three significant figures without scientific notation for everyday magnitudes."""
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    magnitude = abs(value)
    if magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 0.01 or magnitude == 0:
        text = f"{value:.3g}" if magnitude < 1 else f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return text + unit


def p50_p99(p50: float | None, p99: float | None) -> str:
    """``p50 / p99`` in ms; ``ABSENT`` when the figure was not measured (never 0)."""
    return ABSENT if p50 is None or p99 is None else f"{number(p50)} / {number(p99)}"


def block_p50_p99(block: Mapping[str, float] | None) -> str:
    """``p50_p99`` of a summary latency block (``None``: absent)."""
    return ABSENT if block is None else p50_p99(block["p50"], block["p99"])


def with_interval(figure: Interval) -> str:
    if figure.low == figure.high == figure.value:
        return number(figure.value)
    return f"{number(figure.value)} [{number(figure.low)}, {number(figure.high)}]"


def percent(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:.2f} %" if value < 1 else "100 %"


def change(ratio: float) -> str:
    if not math.isfinite(ratio):
        return "+∞"
    return f"{100 * (ratio - 1):+.1f} %"


def throughput_text(stats: CellStats) -> str:
    """Requests per second; rows per second beside it for a cell that scores rows (batch)."""
    text = with_interval(stats.throughput_rps)
    rows = stats.rows_per_s
    return text if rows is None else f"{text} · {with_interval(rows)} rows/s"


def cell_rows(analysis: Analysis) -> list[list[str]]:
    """One row per cell; cells whose runs are all invalid show their raw figures, marked."""
    rows = []
    for cell in analysis.cells:
        stats = analysis.stats.get(cell.key)
        if stats is not None:
            status = "valid" + (
                f", {stats.invalid_runs} invalid run(s) left out" if stats.invalid_runs else ""
            )
            rows.append(
                [
                    cell.key.name,
                    cell.key.model,
                    _runs(stats),
                    with_interval(stats.p50_ms),
                    with_interval(stats.p99_ms),
                    p50_p99(stats.service_p50_ms, stats.service_p99_ms),
                    p50_p99(stats.client_queue_p50_ms, stats.client_queue_p99_ms),
                    throughput_text(stats),
                    percent(stats.success_rate),
                    percent(stats.schema_success_rate),
                    number(stats.cost_per_1k),
                    status,
                ]
            )
        else:
            run = cell.invalid[0]
            first = run.summary
            rows.append(
                [
                    cell.key.name,
                    cell.key.model,
                    f"{len(cell.invalid)} (all invalid)",
                    number(first["latency_ms"]["p50"]),
                    number(first["latency_ms"]["p99"]),
                    block_p50_p99(first["service_latency_ms"]),
                    block_p50_p99(run.client_queue_ms),
                    number(first["throughput_rps"]),
                    percent(float(first["success_rate"])),
                    percent(float(first.get("schema_success_rate") or 0.0)),
                    "n/a",
                    "INVALID — not compared",
                ]
            )
    return rows


def _runs(stats: CellStats) -> str:
    if stats.runs == 1:
        return "1"
    return f"{stats.runs} (repeats {', '.join(str(r) for r in stats.repeats)})"


def comparison_rows(analysis: Analysis) -> list[list[str]]:
    rows = []
    for pair in analysis.comparisons:
        for found in pair.metrics:
            rows.append(
                [
                    f"{pair.dimension}: {pair.candidate} vs {pair.baseline}",
                    pair.context,
                    found.metric,
                    number(found.baseline),
                    number(found.candidate),
                    f"{change(found.ratio)} [{change(found.ci_low)}, {change(found.ci_high)}]"
                    + (" (exact)" if found.exact else ""),
                    found.verdict,
                ]
            )
    return rows


def invalid_rows(runs: Sequence[Run]) -> list[list[str]]:
    return [
        [
            run.path,
            run.key.name,
            "; ".join(run.reasons) or "(no reason recorded)",
            number(run.summary["latency_ms"]["p50"]),
            number(run.summary["latency_ms"]["p99"]),
            block_p50_p99(run.summary["service_latency_ms"]),
            block_p50_p99(run.client_queue_ms),
            number(run.summary["throughput_rps"]),
        ]
        for run in runs
    ]


def landscape_rows(claims: Sequence[Claim]) -> list[list[str]]:
    return [[c.hardware, c.model, c.pattern, c.claim, c.outcome, c.evidence] for c in claims]


def md_escape(text: str) -> str:
    """Markdown-safe table cell: no HTML, no pipes, no line breaks."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(md_escape(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    analysis: Analysis, claims: Sequence[Claim], warnings: Sequence[str], charts: Sequence[str]
) -> str:
    """``summary.md``: fit for ``$GITHUB_STEP_SUMMARY`` (tables only; charts are in the HTML)."""
    runs = sum(len(c.runs) + len(c.invalid) for c in analysis.cells)
    invalid = analysis.invalid_runs
    parts = [
        "# servelab report",
        f"{runs} run(s) in {len(analysis.cells)} cell(s); {len(invalid)} invalid; "
        f"{len(warnings)} input(s) skipped. Intervals: 95 % bootstrap.",
        md_escape(conditions_line(analysis)),
        "## Runs",
        markdown_table(RUN_HEADERS, run_rows(analysis)),
        "## Cells",
        md_escape(CELL_LEGEND),
        markdown_table(CELL_HEADERS, cell_rows(analysis)),
    ]
    if invalid:
        parts += [
            "## ⚠ Invalid runs (shown, never compared)",
            markdown_table(INVALID_HEADERS, invalid_rows(invalid)),
        ]
    parts.append("## Comparisons")
    rows = comparison_rows(analysis)
    parts.append(
        markdown_table(COMPARISON_HEADERS, rows)
        if rows
        else "_No two cells differ in only transport, hardware profile or label._"
    )
    parts += [
        "## The measured serving landscape",
        markdown_table(LANDSCAPE_HEADERS, landscape_rows(claims))
        if claims
        else "_No REST, gRPC, batch, streaming or edge runs._",
    ]
    if analysis.notes or warnings:
        parts.append("## Notes")
        parts += [f"- {md_escape(line)}" for line in [*analysis.notes, *warnings]]
    if charts:
        parts.append(
            "Charts: "
            + ", ".join(f"`{md_escape(c)}`" for c in charts)
            + " (embedded in `index.html`)."
        )
    return "\n\n".join(parts) + "\n"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def comparison_records(analysis: Analysis) -> list[dict[str, Any]]:
    return [
        {
            "dimension": pair.dimension,
            "context": pair.context,
            "baseline": pair.baseline,
            "candidate": pair.candidate,
            "metric": f.metric,
            "baseline_value": f.baseline,
            "candidate_value": f.candidate,
            "ratio": _finite(f.ratio),
            "change_pct": _finite(100 * (f.ratio - 1)),
            "ci_low": _finite(f.ci_low),
            "ci_high": _finite(f.ci_high),
            "confidence": f.confidence,
            "verdict": f.verdict,
            "exact": f.exact,
        }
        for pair in analysis.comparisons
        for f in pair.metrics
    ]


def render_csv(analysis: Analysis) -> str:
    """``comparison.csv``: one row per (comparison, metric)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for record in comparison_records(analysis):
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue()


def _interval(figure: Interval) -> dict[str, float]:
    return {"value": figure.value, "low": figure.low, "high": figure.high}


def render_json(
    analysis: Analysis,
    claims: Sequence[Claim],
    warnings: Sequence[str],
    charts: Sequence[str],
    generated_at: str,
) -> bytes:
    """``comparison.json``: versioned, everything the other outputs show, numbers unrounded."""
    document = {
        "kind": REPORT_KIND,
        "schema_version": REPORT_SCHEMA_VERSION,
        "generated_at": generated_at,
        "confidence": 0.95,
        "skipped_inputs": list(warnings),
        "notes": list(analysis.notes),
        "runs": run_records(analysis),
        "cells": [cell_record(cell, analysis.stats.get(cell.key)) for cell in analysis.cells],
        "invalid_runs": [
            {"file": run.path, "cell": run.key.name, "reasons": run.reasons}
            for run in analysis.invalid_runs
        ],
        "comparisons": comparison_records(analysis),
        "landscape": [
            {
                "hardware": c.hardware,
                "model": c.model,
                "pattern": c.pattern,
                "claim": c.claim,
                "outcome": c.outcome,
                "evidence": c.evidence,
                "cell": c.cell,
            }
            for c in claims
        ],
        "charts": list(charts),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def cell_record(cell: Cell, stats: CellStats | None) -> dict[str, Any]:
    """One cell of ``comparison.json``: its key and files, and its figures when it has any."""
    key = cell.key
    entry: dict[str, Any] = {
        "name": key.name,
        "target": key.target,
        "transport": key.transport,
        "model": key.model,
        "load": key.load,
        "hardware": key.hardware,
        "label": key.label,
        "valid": cell.valid,
        "files": [run.path for run in cell.runs],
        "invalid_files": [run.path for run in cell.invalid],
    }
    if stats is None:
        return entry
    return entry | {
        "repeats": list(stats.repeats),
        "p50_ms": _interval(stats.p50_ms),
        "p99_ms": _interval(stats.p99_ms),
        "throughput_rps": _interval(stats.throughput_rps),
        "rows_per_s": None if stats.rows_per_s is None else _interval(stats.rows_per_s),
        "service_p50_ms": stats.service_p50_ms,
        "service_p99_ms": stats.service_p99_ms,
        "client_queue_p50_ms": stats.client_queue_p50_ms,  # null: not seen, not 0
        "client_queue_p99_ms": stats.client_queue_p99_ms,
        "success_rate": stats.success_rate,
        "schema_success_rate": stats.schema_success_rate,
        "requests": stats.requests,
        "cpu_s_per_1k_predictions": stats.cost_per_1k,
        "cost_scope": stats.cost_scope,
    }
