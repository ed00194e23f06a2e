"""The measured serving landscape: the lesson's table of deployment patterns, checked against
the runs at hand instead of asserted.

The lesson says: REST — medium latency, ubiquitous clients; gRPC — low latency, typed contracts;
batch — high latency, cost efficiency; streaming — low latency, event-driven; edge — ultra-low
latency, offline ready. Per hardware profile and model (patterns serving different models are
never compared), each pattern is represented by its best measured cell (lowest p50 among its
valid cells: "even at its best"), latency claims are checked with the
bootstrap comparison of p50 against every pattern on another rung of the ladder ultra-low < low <
medium < high, and "cost efficiency" against CPU-seconds per 1,000 predictions. Claims no load
test can measure (clients, contracts, event-driven) say so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from reports.analysis import Analysis, CellStats
from reports.load import Cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HELD: Final = "held"
NOT_HELD: Final = "did not hold"
INCONCLUSIVE: Final = "inconclusive"
NOT_MEASURED: Final = "not measured"
LEVELS: Final = {"ultra-low": 0, "low": 1, "medium": 2, "high": 3}


@dataclass(frozen=True, slots=True)
class Pattern:
    """One row of the lesson's table: the targets that serve it and what it claims."""

    name: str
    targets: tuple[str, ...]
    latency: str
    strength: str


PATTERNS: Final = (
    Pattern("REST", ("rest",), "medium", "ubiquitous clients"),
    Pattern("gRPC", ("grpc", "grpc-stream"), "low", "typed contracts"),
    Pattern("batch", ("batch",), "high", "cost efficiency"),
    Pattern("streaming", ("stream",), "low", "event-driven"),
    Pattern("edge", ("edge",), "ultra-low", "offline ready"),
)
_UNMEASURABLE: Final = {
    "ubiquitous clients": "a property of the ecosystem (any HTTP client speaks it), not of a run",
    "typed contracts": "a property of the interface (protobuf), not of a run",
    "event-driven": "a property of the architecture, not of a run",
}


@dataclass(frozen=True, slots=True)
class Claim:
    """One claim of the lesson's table on one hardware profile, and whether it held."""

    hardware: str
    model: str
    pattern: str
    claim: str
    outcome: str
    evidence: str
    cell: str


def _cells(analysis: Analysis, context: tuple[str, str], pattern: Pattern) -> list[Cell]:
    """Valid cells of ``pattern`` on one (hardware, model): patterns are only compared serving
    the same model on the same hardware."""
    return [
        cell
        for cell in analysis.valid_cells
        if (cell.key.hardware, cell.key.model) == context and cell.key.target in pattern.targets
    ]


def _representatives(
    analysis: Analysis, context: tuple[str, str]
) -> dict[str, tuple[Cell, CellStats]]:
    chosen: dict[str, tuple[Cell, CellStats]] = {}
    for pattern in PATTERNS:
        mine = [(cell, analysis.stats[cell.key]) for cell in _cells(analysis, context, pattern)]
        if mine:
            chosen[pattern.name] = min(mine, key=lambda pair: pair[1].p50_ms.value)
    return chosen


def _latency_claim(
    analysis: Analysis, pattern: Pattern, best: dict[str, tuple[Cell, CellStats]]
) -> tuple[str, str]:
    cell, mine = best[pattern.name]
    level = LEVELS[pattern.latency]
    parts, outcomes = [f"p50 {mine.p50_ms.value:.3g} ms"], []
    for other in PATTERNS:
        if other.name not in best or LEVELS[other.latency] == level:
            continue
        rival, theirs = best[other.name]
        found = analysis.compare(rival, cell, "p50")
        expected = "faster" if level < LEVELS[other.latency] else "slower"
        if found.verdict == expected:
            outcomes.append(HELD)
        elif found.significant:
            outcomes.append(NOT_HELD)
        else:
            outcomes.append(INCONCLUSIVE)
        parts.append(
            f"vs {other.name} {theirs.p50_ms.value:.3g} ms: ratio {found.ratio:.3g} "
            f"[{found.ci_low:.3g}, {found.ci_high:.3g}] {found.verdict}"
        )
    if not outcomes:
        return NOT_MEASURED, parts[0] + "; no pattern on another latency rung to compare with"
    if NOT_HELD in outcomes:
        return NOT_HELD, "; ".join(parts)
    outcome = INCONCLUSIVE if INCONCLUSIVE in outcomes else HELD
    return outcome, "; ".join(parts)


def _cost_claim(analysis: Analysis, context: tuple[str, str]) -> tuple[str, str]:
    """Batch's cheapest configuration against every other pattern's cheapest (no interval:
    one CPU reading per run)."""
    cheapest: dict[str, CellStats] = {}
    for pattern in PATTERNS:
        costed = [analysis.stats[cell.key] for cell in _cells(analysis, context, pattern)]
        costed = [s for s in costed if s.cost_per_1k is not None]
        if costed:
            cheapest[pattern.name] = min(costed, key=lambda s: s.cost_per_1k or 0.0)
    if "batch" not in cheapest or len(cheapest) < 2:
        return NOT_MEASURED, "needs CPU cost for batch and at least one other pattern"
    batch = cheapest.pop("batch")
    parts = [f"batch {batch.cost_per_1k:.3g} CPU-s/1k ({batch.key.load})"]
    outcome = HELD
    for name, other in cheapest.items():
        parts.append(f"{name} {other.cost_per_1k:.3g}")
        if (other.cost_per_1k or 0.0) <= (batch.cost_per_1k or 0.0):
            outcome = NOT_HELD
    scopes = {s.cost_scope for s in (batch, *cheapest.values()) if s.cost_scope}
    if len(scopes) > 1:
        parts.append("note: cost scopes differ (" + "; ".join(sorted(scopes)) + ")")
    return outcome, "; ".join(parts)


def _offline_claim(cells: Sequence[Cell]) -> tuple[str, str]:
    local = answers = 0
    for run in (run for cell in cells for run in cell.runs):
        extra = run.document.get("extra") or {}
        local += int(((extra.get("sources") or {}).get("local") or {}).get("count") or 0)
        answers += int(extra.get("answers") or 0)
    if not answers:
        return NOT_MEASURED, "no edge run with a source split"
    if local:
        return HELD, f"{local} of {answers} answers computed on the device (local fallback)"
    return INCONCLUSIVE, f"not exercised: all {answers} answers came from the remote or cache"


def landscape(analysis: Analysis) -> list[Claim]:
    """Every claim of the lesson's table, per hardware profile and model that has pattern
    runs (a pattern missing there gets one "not measured" row)."""
    claims: list[Claim] = []
    targets = {target for pattern in PATTERNS for target in pattern.targets}
    contexts = sorted(
        {(c.key.hardware, c.key.model) for c in analysis.valid_cells if c.key.target in targets}
    )
    for context in contexts:
        hardware, model = context
        best = _representatives(analysis, context)
        for pattern in PATTERNS:
            if pattern.name not in best:
                what = f"{pattern.latency} latency; {pattern.strength}"
                claims.append(
                    Claim(hardware, model, pattern.name, what, NOT_MEASURED, "no valid run", "")
                )
                continue
            name = best[pattern.name][1].name
            outcome, evidence = _latency_claim(analysis, pattern, best)
            latency = f"{pattern.latency} latency"
            claims.append(Claim(hardware, model, pattern.name, latency, outcome, evidence, name))
            if pattern.strength == "cost efficiency":
                outcome, evidence = _cost_claim(analysis, context)
            elif pattern.strength == "offline ready":
                outcome, evidence = _offline_claim(_cells(analysis, context, pattern))
            else:
                outcome, evidence = NOT_MEASURED, _UNMEASURABLE[pattern.strength]
            claims.append(
                Claim(hardware, model, pattern.name, pattern.strength, outcome, evidence, name)
            )
    return claims


def cost_vs_freshness(cells: Sequence[CellStats]) -> Figure | None:
    """Target CPU-seconds per 1,000 predictions against p99, one point per cell (batch sizes
    and micro-batch windows are separate points); None without cost figures."""
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D

    from reports.charts import colour, new_figure, plain_log_axis

    costed = [(s, s.cost_per_1k) for s in cells if s.cost_per_1k is not None]
    points = [(s, cost) for s, cost in costed if cost is not None and s.p99_ms.value > 0]
    if not points:
        return None
    figure = new_figure(9, 5.5)
    axes = figure.add_subplot()
    targets = sorted({s.key.target for s, _ in points})
    hardware = sorted({s.key.hardware for s, _ in points})
    markers = "os^Dvp*h"
    for s, cost in points:
        marker = markers[hardware.index(s.key.hardware) % len(markers)]
        axes.scatter(
            [s.p99_ms.value], [cost], color=colour(targets.index(s.key.target)), s=60, marker=marker
        )
        note = " ".join(re.findall(r"batch \d+|window [\d.]+ms", s.key.load))
        if len(hardware) > 1:
            note = f"{note} · {s.key.hardware}".strip(" ·")
        if note:
            axes.annotate(
                note,
                (s.p99_ms.value, cost),
                fontsize="x-small",
                xytext=(5, 4),
                textcoords="offset points",
            )
    handles: list[Artist] = [
        Line2D([], [], color=colour(i), marker="o", linestyle="", label=name)
        for i, name in enumerate(targets)
    ]
    if len(hardware) > 1:
        handles += [
            Line2D(
                [], [], color="#555555", marker=markers[i % len(markers)], linestyle="", label=name
            )
            for i, name in enumerate(hardware)
        ]
    axes.legend(handles=handles, title="pattern / hardware", fontsize="small", frameon=False)
    plain_log_axis(axes, "x")
    plain_log_axis(axes, "y")
    axes.set_xlabel("p99 latency from intended start (ms) — freshness")
    axes.set_ylabel("target CPU-seconds per 1,000 predictions — cost")
    axes.set_title("Cost vs freshness: each point one configuration (lower left is better)")
    axes.grid(True, which="both", alpha=0.3)
    return figure
