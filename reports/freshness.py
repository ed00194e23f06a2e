"""Freshness results in a report: the points of ``servelab freshness`` runs, per hardware profile
and model, and the two landscape claims they settle on real freshness — batch's cost
efficiency (what a backfill's CPU per 1,000 predictions buys, and how stale its predictions
are) and streaming's low latency (its measured arrival-to-output freshness against the
freshest backfill's). Backfill freshness is on virtual time with measured makespans; each point
is one exact figure, so these comparisons carry no interval and say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from loadtests.errors import ResultFileError
from loadtests.results.freshness import (
    BACKFILL,
    STREAM,
    TARGET,
    Point,
    duration_text,
    points_of,
)
from reports.analysis import Analysis

HELD: Final = "held"  # the landscape's words (reports.landscape imports this module)
NOT_HELD: Final = "did not hold"
INCONCLUSIVE: Final = "inconclusive"


@dataclass(frozen=True, slots=True)
class FreshnessSet:
    """One freshness run's points, with where it ran."""

    hardware: str
    model: str
    path: str
    points: tuple[Point, ...]

    def of(self, kind: str) -> list[Point]:
        return [point for point in self.points if point.kind == kind]


def freshness_sets(analysis: Analysis) -> list[FreshnessSet]:
    """The first valid run of every freshness cell (a mangled points block is noted, and that
    run left out)."""
    sets = []
    for cell in analysis.valid_cells:
        if cell.key.target != TARGET:
            continue
        run = cell.runs[0]
        try:
            points = tuple(points_of(run.document, run.path))
        except ResultFileError as exc:
            note = f"{cell.key.name}: freshness points skipped: {exc}"
            if note not in analysis.notes:  # the chart and the landscape both ask
                analysis.notes.append(note)
            continue
        sets.append(FreshnessSet(cell.key.hardware, cell.key.model, run.path, points))
    return sets


def for_context(sets: Sequence[FreshnessSet], context: tuple[str, str]) -> FreshnessSet | None:
    """The freshness run on (hardware, model), if any (the first)."""
    return next((s for s in sets if (s.hardware, s.model) == context), None)


def _cost(point: Point) -> str:
    return "n/a" if point.cpu_s_per_1k is None else f"{point.cpu_s_per_1k:.3g}"


def _said(point: Point) -> str:
    return (
        f"{point.label} {_cost(point)} CPU-s/1k at freshness p50 {duration_text(point.p50_s)}, "
        f"p99 {duration_text(point.p99_s)}"
    )


def cost_claim(found: FreshnessSet) -> tuple[str, str] | None:
    """Batch's cost efficiency on real freshness: held when the cheapest backfill costs less
    CPU per 1,000 predictions than every streaming window; None without both kinds costed."""
    backfills = [p for p in found.of(BACKFILL) if p.cpu_s_per_1k is not None]
    streams = [p for p in found.of(STREAM) if p.cpu_s_per_1k is not None]
    if not backfills or not streams:
        return None
    cheapest = min(backfills, key=lambda p: p.cpu_s_per_1k or 0.0)
    beaten = all((cheapest.cpu_s_per_1k or 0.0) < (s.cpu_s_per_1k or 0.0) for s in streams)
    parts = [_said(p) for p in (*found.of(BACKFILL), *found.of(STREAM))]
    return (HELD if beaten else NOT_HELD), (
        f"real freshness ({found.path}; one exact figure each, no interval): " + "; ".join(parts)
    )


def stream_claim(found: FreshnessSet) -> tuple[str, str] | None:
    """Streaming's low latency against backfills on real freshness: held when every window's
    p99 is below the freshest backfill's p50, not held when the best window's p50 is not,
    inconclusive between; None without both kinds."""
    backfills, streams = found.of(BACKFILL), found.of(STREAM)
    if not backfills or not streams:
        return None
    freshest = min(backfills, key=lambda p: p.p50_s)
    if max(s.p99_s for s in streams) < freshest.p50_s:
        outcome = HELD
    elif min(s.p50_s for s in streams) >= freshest.p50_s:
        outcome = NOT_HELD
    else:
        outcome = INCONCLUSIVE
    windows = "; ".join(
        f"{s.label} p50 {duration_text(s.p50_s)}, p99 {duration_text(s.p99_s)}" for s in streams
    )
    return outcome, (
        f"real freshness ({found.path}): {windows} vs the freshest backfill ({freshest.name}) "
        f"p50 {duration_text(freshest.p50_s)}, p99 {duration_text(freshest.p99_s)}"
    )


# Where a ms-to-hours axis is labelled: durations people schedule by, not decades of ms.
DURATION_TICKS_MS: Final = (
    1.0, 10.0, 100.0, 1e3, 10e3, 60e3, 15 * 60e3, 3600e3, 6 * 3600e3, 24 * 3600e3,
)  # fmt: skip


def duration_tick(value_ms: float, _: object = None) -> str:
    """``10 ms``, ``1 s``, ``15 min``, ``24 h`` for a tick at ``value_ms``."""
    seconds = value_ms / 1e3
    if seconds < 1:
        return f"{value_ms:g} ms"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
