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

from loadtests.results.server_metrics import server_view_lines
from loadtests.results.verdict import CLIENT_QUEUE_NOTE_NS, QUEUE_KNOB
from reports.buckets import merge_buckets
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
_CLIENT_QUEUE_TOPIC: Final = "client queue p99"  # in loadtests.results.verdict's note and in ours


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
    rows_per_s: Interval | None  # rows scored per second (batch jobs); None: requests carry no rows
    service_p50_ms: float
    service_p99_ms: float
    client_queue_p50_ms: float | None  # None: the driver could not see the wire (never 0)
    client_queue_p99_ms: float | None
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

    queue = client_queue_ms(cell.runs)
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
        # predictions per second of the same window as req/s (extra.rows_per_s divides by busy time)
        rows_per_s=figure("predictions_per_s") if all(r.scores_rows for r in cell.runs) else None,
        service_p50_ms=analysis.estimate(cell, "service_p50").value,
        service_p99_ms=analysis.estimate(cell, "service_p99").value,
        client_queue_p50_ms=queue[0] if queue else None,
        client_queue_p99_ms=queue[1] if queue else None,
        success_rate=analysis.estimate(cell, "success_rate").value,
        schema_success_rate=analysis.estimate(cell, "schema_success_rate").value,
        requests=sum(int(s["requests"]) for s in summaries),
        cost_per_1k=_mean(costs) if costs else None,
        cost_scope=" / ".join(sorted(s for s in scopes if s)),
    )


def client_queue_ms(runs: Sequence[Run]) -> tuple[float, float] | None:
    """(p50, p99) ms of the runs' client queue, pooled from their histograms (the mean of their
    summaries where a histogram is missing). None when any run lacks the figure: a queue the
    driver could not see (gRPC unary, Locust users, v1 files) is absent, never 0."""
    if not runs:
        return None
    parts = [part for part in (run.client_queue for run in runs) if part is not None]
    if len(parts) == len(runs):
        pooled = merge_buckets(parts)
        return pooled.percentile_ms(50.0), pooled.percentile_ms(99.0)
    known = [block for block in (run.client_queue_ms for run in runs) if block is not None]
    if len(known) < len(runs):
        return None
    return _mean([block["p50"] for block in known]), _mean([block["p99"] for block in known])


def client_queue_line(cell: Cell, p99_ms: float) -> str | None:
    """One line when requests queued in the client (p99 over the run verdict's limit), naming
    the option that shortens the queue: more connections where the client has a pool,
    else less load."""
    if p99_ms * 1e6 <= CLIENT_QUEUE_NOTE_NS:
        return None
    knob = QUEUE_KNOB.get(cell.key.transport)
    mode = (cell.runs or cell.invalid)[0].run.get("mode")
    advice = f"raise {knob}" if knob else f"lower {'--rate' if mode == 'open' else '--concurrency'}"
    return (
        f"{cell.key.name}: requests waited in the client before reaching the wire "
        f"(client queue p99 {p99_ms:,.2f} ms): {advice}"
    )


def _said(cell: Cell) -> list[str]:
    """The cell's verdict warnings and notes, each once; a run's own client-queue note gives
    way to the cell's line (one figure, the table's) where the cell has one."""
    runs = (*cell.runs, *cell.invalid)
    warnings = sorted({warning for run in runs for warning in run.warnings})
    notes = sorted({note for run in runs for note in run.notes})
    queue = client_queue_ms(cell.runs or cell.invalid[:1])  # the runs the cell table shows
    line = client_queue_line(cell, queue[1]) if queue else None
    if line is not None:
        notes = [note for note in notes if _CLIENT_QUEUE_TOPIC not in note]
    said = [f"{cell.key.name}: {text}" for text in (*warnings, *notes)]
    return [*said, *([line] if line else []), *_server_view(cell)]


def _server_view(cell: Cell) -> list[str]:
    """A run's ``extra.server_metrics``: the server's mean beside the client's mean (never a
    percentile) and what is outside the server's timer, one line per run that has it."""
    said = []
    for run in cell.runs or cell.invalid:
        block = (run.document.get("extra") or {}).get("server_metrics")
        if isinstance(block, dict):
            mean = run.summary["latency_ms"].get("mean") if run.summary.get("successes") else None
            name = cell.key.name + (f" ({run.path})" if len(cell.runs) > 1 else "")
            said.append(f"{name}: " + "; ".join(server_view_lines(block, mean)))
    return said


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
        analysis.notes += _said(cell)
        if cell.invalid and not cell.runs:
            analysis.notes.append(f"{cell.key.name}: every run is invalid; shown, but not compared")
    analysis.comparisons = pairwise(analysis)
    return analysis
