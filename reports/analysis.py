"""From cells to what a report says: per-cell figures with intervals, and pairwise comparisons.

Comparisons are made along one dimension at a time — transport (target), hardware profile,
label — between cells equal in every other dimension, each against that dimension's baseline
(``rest`` for transports when present, else the first in sort order). Cells at different load
levels or with different models are never compared: "faster" would not mean anything. Only valid
runs enter a comparison; a cell whose runs are all invalid is listed, marked, and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from reports.load import Cell, CellKey, Run
from reports.stats import (
    DEFAULT_METRICS,
    DEFAULT_RESAMPLES,
    Comparison,
    Estimate,
    compare_estimates,
    estimate,
    interval_of,
)

DIMENSIONS: Final = ("target", "hardware", "label")
PREFERRED_BASELINE: Final = {"target": "rest"}


@dataclass(frozen=True, slots=True)
class Interval:
    """A value with its bootstrap interval (low == high == value when exact)."""

    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class CellStats:
    """What the report shows for one cell."""

    key: CellKey
    runs: int
    repeats: tuple[int, ...]
    invalid_runs: int
    p50_ms: Interval
    p99_ms: Interval
    throughput_rps: Interval
    service_p99_ms: float
    success_rate: float
    schema_success_rate: float
    requests: int
    cost_per_1k: float | None
    cost_scope: str

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(frozen=True, slots=True)
class PairComparison:
    """One candidate cell against its baseline along one dimension."""

    dimension: str
    context: str
    baseline: str
    candidate: str
    metrics: tuple[Comparison, ...]


@dataclass
class Analysis:
    """Everything computed from the runs, before any rendering."""

    cells: list[Cell]
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES
    stats: dict[CellKey, CellStats] = field(default_factory=dict)
    comparisons: list[PairComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _estimates: dict[tuple[CellKey, str], Estimate] = field(default_factory=dict, repr=False)

    def estimate(self, cell: Cell, metric: str) -> Estimate:
        """A cell's bootstrap estimate, computed once (cell figures, comparisons and the
        landscape all reuse it)."""
        key = (cell.key, metric)
        if key not in self._estimates:
            self._estimates[key] = estimate(
                cell.samples, metric, resamples=self.resamples, seed=self.seed
            )
        return self._estimates[key]

    def compare(self, baseline: Cell, candidate: Cell, metric: str) -> Comparison:
        return compare_estimates(self.estimate(baseline, metric), self.estimate(candidate, metric))

    @property
    def valid_cells(self) -> list[Cell]:
        return [cell for cell in self.cells if cell.valid]

    @property
    def invalid_runs(self) -> list[Run]:
        return [run for cell in self.cells for run in cell.invalid]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def cell_stats(analysis: Analysis, cell: Cell) -> CellStats:
    """Pooled figures of a cell's valid runs (intervals across repeats when there are any)."""

    def figure(metric: str) -> Interval:
        return Interval(*interval_of(analysis.estimate(cell, metric)))

    costs = [c for c in (run.cost_per_1k for run in cell.runs) if c is not None]
    scopes = {str((run.document.get("cost") or {}).get("scope") or "") for run in cell.runs}
    summaries = [run.summary for run in cell.runs]
    return CellStats(
        key=cell.key,
        runs=len(cell.runs),
        repeats=tuple(run.repeat for run in cell.runs),
        invalid_runs=len(cell.invalid),
        p50_ms=figure("p50"),
        p99_ms=figure("p99"),
        throughput_rps=figure("throughput_rps"),
        service_p99_ms=analysis.estimate(cell, "service_p99").value,
        success_rate=analysis.estimate(cell, "success_rate").value,
        schema_success_rate=analysis.estimate(cell, "schema_success_rate").value,
        requests=sum(int(s["requests"]) for s in summaries),
        cost_per_1k=_mean(costs) if costs else None,
        cost_scope=" / ".join(sorted(s for s in scopes if s)),
    )


def _without(key: CellKey, dimension: str) -> CellKey:
    return replace(key, **{dimension: ""})


def _context(key: CellKey, dimension: str) -> str:
    parts = {
        "target": key.target,
        "model": key.model,
        "load": key.load,
        "hardware": key.hardware,
        "label": key.label,
    }
    parts.pop(dimension)
    return " · ".join(value for value in parts.values() if value)


def _baseline(cells: Sequence[Cell], dimension: str) -> Cell:
    preferred = PREFERRED_BASELINE.get(dimension)
    for cell in cells:
        if preferred is not None and getattr(cell.key, dimension) == preferred:
            return cell
    return cells[0]


def pairwise(
    analysis: Analysis, *, metrics: Sequence[str] = DEFAULT_METRICS
) -> list[PairComparison]:
    """Each cell against its dimension's baseline among cells equal in all other dimensions.

    The transport dimension also ignores ``transport`` (it follows the target)."""
    results: list[PairComparison] = []
    for dimension in DIMENSIONS:
        groups: dict[CellKey, list[Cell]] = {}
        for cell in analysis.valid_cells:
            rest = _without(cell.key, dimension)
            if dimension == "target":
                rest = replace(rest, transport="")
            groups.setdefault(rest, []).append(cell)
        for members in groups.values():
            if len(members) < 2:
                continue
            base = _baseline(members, dimension)
            for other in members:
                if other is base:
                    continue
                results.append(
                    PairComparison(
                        dimension=dimension,
                        context=_context(base.key, dimension),
                        baseline=getattr(base.key, dimension) or "(none)",
                        candidate=getattr(other.key, dimension) or "(none)",
                        metrics=tuple(analysis.compare(base, other, m) for m in metrics),
                    )
                )
    return results


def analyse(cells: list[Cell], *, seed: int = 0, resamples: int = DEFAULT_RESAMPLES) -> Analysis:
    """Figures for every cell with valid runs, and the pairwise comparisons between them."""
    analysis = Analysis(cells, seed=seed, resamples=resamples)
    for cell in cells:
        if cell.valid:
            analysis.stats[cell.key] = cell_stats(analysis, cell)
        repeats = [run.repeat for run in cell.runs]
        if len(set(repeats)) < len(repeats):
            analysis.notes.append(
                f"{cell.key.name}: {len(repeats)} runs share repeat numbers "
                f"{sorted(repeats)}; pooled as repeats all the same"
            )
        for warning in sorted({w for run in (*cell.runs, *cell.invalid) for w in run.warnings}):
            analysis.notes.append(f"{cell.key.name}: {warning}")
        if cell.invalid and not cell.runs:
            analysis.notes.append(f"{cell.key.name}: every run is invalid; shown, but not compared")
    analysis.comparisons = pairwise(analysis)
    return analysis
