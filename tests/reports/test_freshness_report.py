"""A freshness result in a report: its backfill and streaming points in the cost-vs-freshness
chart (batch jobs' request p99 replaced), and the batch and streaming claims on real freshness."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from matplotlib.collections import PathCollection

from loadtests.jobs.freshness_result import freshness_document
from loadtests.results.document import ResultDocument
from loadtests.results.freshness import BACKFILL, STREAM, Point
from loadtests.results.result import RunInfo
from reports.analysis import Analysis, analyse
from reports.freshness import duration_tick, freshness_sets
from reports.landscape import HELD, NOT_HELD, Claim, cost_vs_freshness, landscape
from reports.load import group_cells, load_runs
from tests.reports.factory import GOLDEN, drawn, golden, write_document

HOUR = 3600.0


def _point(kind: str, name: str, p50_s: float, p99_s: float, cost: float) -> Point:
    return Point(
        BACKFILL if kind == BACKFILL else STREAM,
        name, 1000, p50_s, p99_s, p50_s, p99_s * 1.01, cost, {},
    )  # fmt: skip


POINTS = (
    _point(BACKFILL, "15m", 450.0, 891.0, 0.011),
    _point(BACKFILL, "1h", 1800.0, 3564.0, 0.010),
    _point(BACKFILL, "24h", 43200.0, 85536.0, 0.009),
    _point(STREAM, "2ms", 0.0025, 0.0045, 1.7),
    _point(STREAM, "20ms", 0.020, 0.024, 1.6),
)


def freshness_result(points: tuple[Point, ...] = POINTS) -> dict[str, Any]:
    """A freshness document as the job writes one, over the golden open-loop stream run."""
    stream = golden("stream-open-laptop.json")
    run = RunInfo(
        target="freshness", transport="freshness", mode="open", model=stream["run"]["model"],
        seed=42, rate_per_s=50.0, arrival="poisson", profile="laptop",
    )  # fmt: skip
    streams = [cast("ResultDocument", stream)]
    document = freshness_document(run, streams, points, setup={"rate_per_s": 50.0})
    return dict(document)


def _analysis(tmp_path: Path, points: tuple[Point, ...] = POINTS) -> Analysis:
    write_document(freshness_result(points), tmp_path / "freshness.json")
    paths = [str(tmp_path / "freshness.json"), *(str(p) for p in sorted(GOLDEN.glob("*.json")))]
    return analyse(group_cells(load_runs(paths).runs))


def _claims(analysis: Analysis) -> dict[tuple[str, str, str], Claim]:
    return {(c.hardware, c.pattern, c.claim): c for c in landscape(analysis)}


def test_the_points_survive_the_result_file(tmp_path: Path) -> None:
    (found,) = freshness_sets(_analysis(tmp_path))
    assert found.points == POINTS
    assert (found.hardware, found.model) == ("laptop", "synthetic:lognormal:2ms:0.5")


def test_the_chart_draws_backfills_and_windows_at_their_real_freshness(tmp_path: Path) -> None:
    analysis = _analysis(tmp_path)
    stats = [analysis.stats[cell.key] for cell in analysis.valid_cells]
    figure = cost_vs_freshness(stats, freshness_sets(analysis))
    assert figure is not None
    axes = figure.axes[0]
    drawn_points = {
        tuple(point)
        for c in axes.collections
        if isinstance(c, PathCollection)
        for point in drawn(c.get_offsets()).tolist()
    }
    for point in POINTS:  # at p99 in ms, a line back to p50
        assert (pytest.approx(point.p99_s * 1e3), pytest.approx(point.cpu_s_per_1k)) in [
            (x, y) for x, y in drawn_points
        ]
    lines = [
        (tuple(drawn(line.get_xdata())), tuple(drawn(line.get_ydata()))) for line in axes.lines
    ]
    assert ((450e3, 891e3), (0.011, 0.011)) in lines
    batch = [s for s in stats if s.key.target == "batch"]
    assert batch
    assert not [s for s in batch if (s.p99_ms.value, s.cost_per_1k) in drawn_points]
    others = [s for s in stats if s.key.target not in ("batch", "freshness") and s.cost_per_1k]
    assert others
    assert all((s.p99_ms.value, s.cost_per_1k) in drawn_points for s in others)
    notes = {text.get_text() for text in axes.texts}
    names = ("15m backfill", "1h backfill", "24h backfill", "stream 2ms", "stream 20ms")
    assert {f"{name} · laptop" for name in names} <= notes  # two profiles: each point says which
    assert [duration_tick(v) for v in (2.0, 1e3, 15 * 60e3, 24 * HOUR * 1e3)] == [
        "2 ms", "1 s", "15 min", "24 h",
    ]  # fmt: skip
    assert "freshness p99" in axes.get_xlabel()


def test_batch_cost_and_streaming_latency_are_judged_on_real_freshness(tmp_path: Path) -> None:
    claims = _claims(_analysis(tmp_path))
    cost = claims["laptop", "batch", "cost efficiency"]
    assert cost.outcome == HELD  # 0.009 CPU-s/1k nightly, against 1.6 for the cheapest window
    assert cost.evidence.startswith("real freshness (")
    assert "24h backfill 0.009 CPU-s/1k at freshness p50 12 h, p99 23.8 h" in cost.evidence
    assert "; requests: batch " in cost.evidence  # the request-level comparison follows
    stream = claims["laptop", "streaming", "low latency"]
    assert "stream 2ms p50 2.5 ms, p99 4.5 ms" in stream.evidence
    assert "vs the freshest backfill (15m) p50 7.5 min" in stream.evidence
    assert "vs batch" not in stream.evidence  # a batch job's request latency is not freshness


def test_streaming_slower_than_a_backfill_did_not_hold(tmp_path: Path) -> None:
    slow = (
        _point(BACKFILL, "15m", 450.0, 891.0, 0.01),
        _point(STREAM, "20ms", 600.0, 900.0, 0.005),
    )
    claims = _claims(_analysis(tmp_path, slow))
    assert claims["laptop", "streaming", "low latency"].outcome == NOT_HELD
    assert claims["laptop", "batch", "cost efficiency"].outcome == NOT_HELD  # streaming cheaper


def test_a_freshness_run_alone_still_settles_both_claims(tmp_path: Path) -> None:
    write_document(freshness_result(), tmp_path / "freshness.json")
    claims = _claims(analyse(group_cells(load_runs([str(tmp_path)]).runs)))
    assert claims["laptop", "batch", "cost efficiency"].outcome == HELD
    assert claims["laptop", "streaming", "low latency"].outcome == HELD
    assert claims["laptop", "REST", "medium latency; ubiquitous clients"].evidence == "no valid run"


def test_a_mangled_points_block_is_noted_not_drawn(tmp_path: Path) -> None:
    document = freshness_result()
    document["extra"]["freshness"]["points"][0]["p99_s"] = "soon"
    write_document(document, tmp_path / "freshness.json")
    analysis = analyse(group_cells(load_runs([str(tmp_path)]).runs))
    assert freshness_sets(analysis) == []
    assert any("extra.freshness.points[0].p99_s" in note for note in analysis.notes)
