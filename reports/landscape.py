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

from reports import serverless
from reports.analysis import Analysis, CellStats
from reports.freshness import (
    DURATION_TICKS_MS,
    FreshnessSet,
    cost_claim,
    duration_tick,
    for_context,
    freshness_sets,
    stream_claim,
)
from reports.load import Cell
from reports.offline import is_flaky, offline_claim

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from loadtests.results.freshness import Point

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
        mine = [
            (cell, analysis.stats[cell.key])
            for cell in _cells(analysis, context, pattern)
            if not is_flaky(cell)  # a flaky link's cell is measured for the offline claim
        ]
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
        mine = [cell for cell in _cells(analysis, context, pattern) if not is_flaky(cell)]
        costed = [analysis.stats[cell.key] for cell in mine]
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


def _combined(outcomes: Sequence[str]) -> str:
    if NOT_HELD in outcomes:
        return NOT_HELD
    return INCONCLUSIVE if INCONCLUSIVE in outcomes else HELD


def _fresh_claims(
    analysis: Analysis,
    pattern: Pattern,
    best: dict[str, tuple[Cell, CellStats]],
    found: FreshnessSet | None,
) -> list[tuple[str, str, str]]:
    """(claim, outcome, evidence) that a freshness run settles on real freshness — batch's
    cost efficiency, streaming's low latency — with the request-level evidence after it;
    ``[]`` when there is none (the claim is checked on requests alone)."""
    if found is None or pattern.name not in ("batch", "streaming"):
        return []
    if pattern.name == "batch":
        fresh = cost_claim(found)
        if fresh is None:
            return []
        context = (found.hardware, found.model)
        outcome, evidence = _cost_claim(analysis, context) if "batch" in best else ("", "")
        told = f"{fresh[1]}; requests: {evidence}" if evidence else fresh[1]
        return [(pattern.strength, fresh[0], told)]
    fresh = stream_claim(found)
    if fresh is None:
        return []
    if pattern.name not in best:
        return [(f"{pattern.latency} latency", fresh[0], fresh[1])]
    # a batch job's request latency is not its freshness: the backfills stand in for it
    others = {name: pair for name, pair in best.items() if name != "batch"}
    outcome, evidence = _latency_claim(analysis, pattern, others)
    outcomes = [fresh[0]] if outcome == NOT_MEASURED else [fresh[0], outcome]
    return [(f"{pattern.latency} latency", _combined(outcomes), f"{evidence}; {fresh[1]}")]


def landscape(analysis: Analysis) -> list[Claim]:
    """Every claim of the lesson's table, per hardware profile and model that has pattern
    runs (a pattern missing there gets one "not measured" row); a ``servelab freshness`` run
    there settles batch's cost efficiency and streaming's low latency on real freshness."""
    claims: list[Claim] = []
    targets = {target for pattern in PATTERNS for target in pattern.targets}
    targets |= {"freshness", serverless.TARGET}
    contexts = sorted(
        {(c.key.hardware, c.key.model) for c in analysis.valid_cells if c.key.target in targets}
    )
    sets = freshness_sets(analysis)
    for context in contexts:
        hardware, model = context
        best = _representatives(analysis, context)
        found = for_context(sets, context)
        for pattern in PATTERNS:
            fresh = _fresh_claims(analysis, pattern, best, found)
            if fresh and pattern.name not in best:
                name = found.path if found is not None else ""
                claims += [Claim(hardware, model, pattern.name, *f, name) for f in fresh]
                continue
            if pattern.name not in best:
                what = f"{pattern.latency} latency; {pattern.strength}"
                claims.append(
                    Claim(hardware, model, pattern.name, what, NOT_MEASURED, "no valid run", "")
                )
                continue
            name = best[pattern.name][1].name
            settled = {claim: (outcome, evidence) for claim, outcome, evidence in fresh}
            latency = f"{pattern.latency} latency"
            outcome, evidence = settled.get(latency) or _latency_claim(analysis, pattern, best)
            claims.append(Claim(hardware, model, pattern.name, latency, outcome, evidence, name))
            if pattern.strength in settled:
                outcome, evidence = settled[pattern.strength]
            elif pattern.strength == "cost efficiency":
                outcome, evidence = _cost_claim(analysis, context)
            elif pattern.strength == "offline ready":
                outcome, evidence = offline_claim(_cells(analysis, context, pattern))
            else:
                outcome, evidence = NOT_MEASURED, _UNMEASURABLE[pattern.strength]
            claims.append(
                Claim(hardware, model, pattern.name, pattern.strength, outcome, evidence, name)
            )
        for claim, outcome, evidence, name in serverless.serverless_claims(analysis, context):
            claims.append(
                Claim(hardware, model, serverless.PATTERN, claim, outcome, evidence, name)
            )
    return claims


def cost_vs_freshness(
    cells: Sequence[CellStats], freshness: Sequence[FreshnessSet] = ()
) -> Figure | None:
    """Target CPU-seconds per 1,000 predictions against p99, one point per cell (batch sizes
    and micro-batch windows are separate points); None without cost figures. With freshness
    runs, their backfill schedules and streaming windows are points at their real freshness
    p99 (a line back to p50), replacing batch jobs' request p99, on a ms-to-hours axis."""
    from matplotlib.artist import Artist
    from matplotlib.lines import Line2D

    from reports.charts import colour, new_figure

    fresh = [(found, p) for found in freshness for p in found.points if p.cpu_s_per_1k]
    dropped = {"batch", "freshness"} if fresh else {"freshness"}
    costed = [(s, s.cost_per_1k) for s in cells if s.key.target not in dropped]
    points = [(s, cost) for s, cost in costed if cost is not None and s.p99_ms.value > 0]
    if not points and not fresh:
        return None
    figure = new_figure(9, 5.5)
    axes = figure.add_subplot()
    kinds = {f"{point.kind} (freshness)" for _, point in fresh}
    targets = sorted({s.key.target for s, _ in points} | kinds)
    hardware = sorted({s.key.hardware for s, _ in points} | {f.hardware for f, _ in fresh})
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
    for index, (found, point) in enumerate(fresh):
        shape = markers[hardware.index(found.hardware) % len(markers)]
        tint = colour(targets.index(f"{point.kind} (freshness)"))
        _draw_fresh(axes, found, point, (tint, shape), len(hardware) > 1, below=index % 2 == 1)
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
    _cost_axes(axes, bool(fresh))
    return figure


def _cost_axes(axes: Axes, fresh: bool) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter

    from reports.charts import plain_log_axis

    plain_log_axis(axes, "x")
    plain_log_axis(axes, "y")
    axes.set_xlabel("p99 latency from intended start (ms) — freshness")
    if fresh:  # ms to hours: durations, not millisecond counts
        axes.xaxis.set_major_locator(FixedLocator(DURATION_TICKS_MS))
        axes.xaxis.set_major_formatter(FuncFormatter(duration_tick))
        axes.set_xlabel(
            "freshness p99, arrival to prediction (a line back to p50); other patterns: "
            "request p99 from intended start"
        )
    axes.set_ylabel("target CPU-seconds per 1,000 predictions — cost")
    axes.set_title("Cost vs freshness: each point one configuration (lower left is better)")
    axes.grid(True, which="both", alpha=0.3)


def _draw_fresh(
    axes: Axes,
    found: FreshnessSet,
    point: Point,
    look: tuple[str, str],
    named: bool,
    *,
    below: bool,
) -> None:
    """One freshness point at its p99 (ms), a line back to its p50, named above or below it
    (neighbours alternate, so 15-minute and hourly labels do not overlap)."""
    colour, marker = look
    cost, p50_ms, p99_ms = point.cpu_s_per_1k or 0.0, point.p50_s * 1e3, point.p99_s * 1e3
    axes.plot([p50_ms, p99_ms], [cost, cost], color=colour, linewidth=1, alpha=0.6)
    axes.scatter([p99_ms], [cost], color=colour, s=60, marker=marker)
    note = point.label + (f" · {found.hardware}" if named else "")
    axes.annotate(note, (p99_ms, cost), fontsize="x-small", xytext=(5, -11 if below else 4),
                  textcoords="offset points")  # fmt: skip
