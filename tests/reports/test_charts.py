"""Every chart is drawn and carries the input's numbers (read back from the Figure's artists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import StepPatch

from reports import charts
from reports.analysis import Analysis, analyse
from reports.buckets import merge_buckets
from reports.landscape import cost_vs_freshness
from reports.load import group_cells, load_runs
from tests.reports.factory import GOLDEN, MIX, drawn, golden, write_document


@pytest.fixture(scope="module")
def analysis() -> Analysis:
    """REST, gRPC and batch under two profiles, plus edge, streaming and an invalid run."""
    return analyse(group_cells(load_runs([str(GOLDEN)]).runs))


def test_percentile_spectrum_has_one_line_per_run_on_the_nines_axis(analysis: Analysis) -> None:
    figure = charts.percentile_spectrum(analysis.cells)
    axes = figure.axes[0]
    runs = [run for cell in analysis.cells for run in [*cell.runs, *cell.invalid]]
    assert len(axes.lines) == len(runs)
    grid = charts.spectrum_percentiles()
    assert grid[0] == pytest.approx(50.0)
    assert grid[-1] == pytest.approx(99.99)
    lines = iter(axes.lines)
    for cell in analysis.cells:
        for run in [*cell.runs, *cell.invalid]:
            line = next(lines)
            assert run.latency is not None
            np.testing.assert_array_equal(line.get_xdata(), charts.nines_x(grid))
            np.testing.assert_array_equal(line.get_ydata(), run.latency.percentiles_ms(grid))
            assert drawn(line.get_ydata())[0] == run.summary["latency_ms"]["p50"]
            assert (line.get_linestyle() == ":") is (not run.valid)
    assert axes.get_xscale() == "log"
    assert [t.get_text() for t in axes.get_xticklabels()] == ["50", "90", "99", "99.9", "99.99"]
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert "inprocess · open 2000/s constant · laptop · overload [INVALID]" in legend
    assert "percentile" in axes.get_xlabel()
    assert "(ms)" in axes.get_ylabel()


def test_latency_over_time_draws_p50_p99_per_second_and_marks_failures(tmp_path: Path) -> None:
    document = golden("rest-laptop.json")
    document["timeseries"] = [
        {"t_s": 0, "requests": 100, "failures": 0, "p50_ms": 2.0, "p99_ms": 9.0},
        {"t_s": 1, "requests": 100, "failures": 7, "p50_ms": 3.0, "p99_ms": 30.0},
        {"t_s": 2, "requests": 90, "failures": 2, "p50_ms": 2.5, "p99_ms": 12.0},
    ]
    runs = load_runs([str(write_document(document, tmp_path / "failing.json"))]).runs
    runs += load_runs([str(GOLDEN / "grpc-laptop.json")]).runs
    figure = charts.latency_over_time(runs)
    panels = [axes for axes in figure.axes if axes.get_title()]
    assert [axes.get_title() for axes in panels] == [run.key.name for run in runs]
    p50, p99 = panels[0].lines
    assert list(drawn(p50.get_xdata())) == [0, 1, 2]
    assert list(drawn(p50.get_ydata())) == [2.0, 3.0, 2.5]
    assert list(drawn(p99.get_ydata())) == [9.0, 30.0, 12.0]
    twins = [a for a in figure.axes if a.get_ylabel() == "failures / s"]
    assert len(twins) == 1  # only the run with failures gets the failures axis
    marks = next(c for c in twins[0].collections if isinstance(c, PathCollection))
    assert drawn(marks.get_offsets()).tolist() == [[1.0, 7.0], [2.0, 2.0]]
    second = runs[1].timeseries
    assert list(drawn(panels[1].lines[1].get_ydata())) == [row["p99_ms"] for row in second]


def test_cdf_and_histogram_are_the_pooled_distribution(analysis: Analysis) -> None:
    valid = analysis.valid_cells
    figure = charts.cdf_and_histogram(valid)
    left, right = figure.axes[:2]
    assert len(left.lines) == len(valid)
    steps = [p for p in right.patches if isinstance(p, StepPatch)]
    assert len(steps) == len(valid)
    for cell, line, step in zip(valid, left.lines, steps, strict=True):
        pooled = merge_buckets([run.latency for run in cell.runs if run.latency is not None])
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        cumulative = np.cumsum(pooled.counts) / pooled.total
        np.testing.assert_array_equal(y, cumulative[np.searchsorted(pooled.upper_ms, x)])
        assert x[-1] == pooled.upper_ms[-1]
        assert y[-1] == pytest.approx(1.0)
        values, _edges, _baseline = step.get_data()  # a StairData: values, edges, baseline
        assert values.sum() == pytest.approx(1.0)
    assert left.get_xscale() == "log"
    assert "ms" in left.get_xlabel()


def test_intended_vs_service_appears_only_where_they_differ(analysis: Analysis) -> None:
    closed = [c for c in analysis.cells if c.key.target in ("rest", "grpc", "batch")]
    assert charts.intended_vs_service(closed) is None
    overloaded = [c for c in analysis.cells if c.key.label == "overload"]
    figure = charts.intended_vs_service(overloaded)
    assert figure is not None
    axes = figure.axes[0]
    assert axes.get_title().endswith("[INVALID]")
    run = overloaded[0].invalid[0]
    assert run.latency is not None
    assert run.service is not None
    grid = charts.spectrum_percentiles()
    intended, served = axes.lines
    np.testing.assert_array_equal(intended.get_ydata(), run.latency.percentiles_ms(grid))
    np.testing.assert_array_equal(served.get_ydata(), run.service.percentiles_ms(grid))
    assert drawn(intended.get_ydata())[-1] > 100 * drawn(served.get_ydata())[-1]


def test_cost_vs_freshness_plots_cpu_per_prediction_against_p99(analysis: Analysis) -> None:
    stats = list(analysis.stats.values())
    figure = cost_vs_freshness(stats)
    assert figure is not None
    axes = figure.axes[0]
    points = sorted(
        tuple(point)
        for c in axes.collections
        if isinstance(c, PathCollection)
        for point in drawn(c.get_offsets()).tolist()
    )
    assert points == sorted((s.p99_ms.value, s.cost_per_1k) for s in stats)
    notes = [t.get_text() for t in axes.texts]
    assert "batch 256 · laptop" in notes
    assert "batch 8 window 2ms · laptop" in notes
    assert "CPU-seconds per 1,000 predictions" in axes.get_ylabel()
    assert cost_vs_freshness([]) is None


def test_every_chart_renders_to_png(analysis: Analysis) -> None:
    figure = charts.percentile_spectrum(analysis.cells)
    assert charts.png_bytes(figure).startswith(b"\x89PNG\r\n\x1a\n")
    assert MIX  # the golden mix exists: REST, gRPC and batch under two profiles
    assert len(charts.OKABE_ITO) == 8
