"""The landscape's "serverless" row: what a function behind a scale-to-zero front costs in
latency and CPU, read from ``--target function`` runs (``summary.cold_starts`` and the
``cold_latency`` / ``warm_latency`` histograms).

Two claims per function cell: "cold starts in the tail" — warm p50 against the p99 with cold
starts, held when the cell had cold starts, a cold request's p50 is above the warm p50, and the
p99 with cold starts reaches it (the tail is cold-start latency: the cold requests themselves,
and the warm ones that queued behind a starting instance); and the cost per 1,000 predictions with
scale-to-zero (the instances' CPU while alive, their starts included), a figure set beside the
always-on REST target's where one was measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from loadtests.engine.histogram import LatencyHistogram
from reports.analysis import Analysis
from reports.load import Cell

TARGET: Final = "function"
PATTERN: Final = "serverless"
TAIL_CLAIM: Final = "cold starts in the tail"
COST_CLAIM: Final = "cost per 1k predictions with scale-to-zero"


def _merged(cell: Cell, name: str) -> LatencyHistogram:
    merged = LatencyHistogram()
    for run in cell.runs:
        encoded = run.document["histograms"].get(name)
        if isinstance(encoded, str):
            merged.merge(LatencyHistogram.decode(encoded))
    return merged


def _cold_counts(cell: Cell) -> tuple[int, int]:
    """(cold starts, judged requests) over the cell's runs."""
    cold = judged = 0
    for run in cell.runs:
        summary = run.document["summary"]
        block = summary.get("cold_starts")
        if isinstance(block, dict):
            cold += int(block.get("count") or 0)
        judged += int(summary["requests"]) - int(summary["expected_rejections"])
    return cold, judged


def _tail(analysis: Analysis, cell: Cell) -> tuple[str, str]:
    cold_count, judged = _cold_counts(cell)
    warm, cold = _merged(cell, "warm_latency"), _merged(cell, "cold_latency")
    p99_ms = analysis.stats[cell.key].p99_ms.value
    warm_p50_ms, warm_p99_ms = (value / 1e6 for value in warm.percentiles_ns([50, 99]))
    share = cold_count / judged if judged else 0.0
    evidence = (
        f"p50 warm {warm_p50_ms:.3g} ms vs p99 {p99_ms:.3g} ms with cold starts; "
        f"{cold_count} cold start(s) in {judged} requests ({share:.1%}); warm p99 "
        f"{warm_p99_ms:.3g} ms"
    )
    if not cold.total:
        return "inconclusive", evidence + "; not exercised: no request started an instance"
    cold_p50_ms = cold.percentile_ns(50) / 1e6
    evidence += f", cold p50 {cold_p50_ms:.3g} ms"
    held = p99_ms >= cold_p50_ms > warm_p50_ms
    return ("held" if held else "did not hold"), evidence


def _cost(analysis: Analysis, cell: Cell, rest: Sequence[Cell]) -> tuple[str, str]:
    cost = analysis.stats[cell.key].cost_per_1k
    if cost is None:
        return "not measured", "no CPU figure for the function's instances"
    evidence = f"{cost:.3g} CPU-s/1k (the instances' CPU while alive, cold starts included)"
    costs = [c for c in (analysis.stats[r.key].cost_per_1k for r in rest) if c is not None]
    if costs:
        evidence += f"; always-on REST {min(costs):.3g} CPU-s/1k at its load"
    return "measured", evidence


def serverless_claims(analysis: Analysis, context: tuple[str, str]) -> list[tuple[str, ...]]:
    """(claim, outcome, evidence, cell) rows for the function cells on one (hardware, model)."""
    cells = [
        cell for cell in analysis.valid_cells
        if (cell.key.hardware, cell.key.model) == context
    ]  # fmt: skip
    rest = [cell for cell in cells if cell.key.target == "rest"]
    rows: list[tuple[str, ...]] = []
    for cell in (cell for cell in cells if cell.key.target == TARGET):
        name = analysis.stats[cell.key].name
        rows.append((TAIL_CLAIM, *_tail(analysis, cell), name))
        rows.append((COST_CLAIM, *_cost(analysis, cell, rest), name))
    return rows
