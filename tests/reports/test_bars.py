"""The summary chart stays readable: log axes, labels apart, batch rows/s beside its req/s.

Every assertion reads the drawn Figure (its bars, whiskers, texts and, once rendered, where its
labels landed), so the checks are about the picture, not about the code that made it."""

from __future__ import annotations

import dataclasses
import math
from itertools import combinations

import orjson
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from reports import bars
from reports.analysis import Analysis, CellStats, analyse
from reports.load import group_cells, load_runs
from reports.tables import number, render_json, throughput_text, with_interval
from tests.reports.factory import BENCH, GOLDEN


@pytest.fixture(scope="module")
def mix() -> Analysis:
    """REST, gRPC and batch under two profiles, plus edge, streaming and an invalid run."""
    return analyse(group_cells(load_runs([str(GOLDEN)]).runs))


@pytest.fixture(scope="module")
def bench() -> Analysis:
    """``servelab bench --quick``: in-process (0.01 ms, ~90 k req/s), REST, batch (20 ms)."""
    return analyse(group_cells(load_runs([str(BENCH)]).runs))


def panels(figure: Figure) -> list[Axes]:
    return [axes for axes in figure.axes if axes.get_title()]


def solid(axes: Axes) -> list[Rectangle]:
    return [p for p in axes.patches if isinstance(p, Rectangle) and not p.get_hatch()]


def hatched(axes: Axes) -> list[Rectangle]:
    return [p for p in axes.patches if isinstance(p, Rectangle) and p.get_hatch()]


def ordered(stats: list[CellStats]) -> list[CellStats]:
    return sorted(stats, key=lambda s: (s.key.target, s.key.hardware, s.key.load, s.key.label))


def shown_labels(axes: Axes) -> list[Text]:
    """Tick labels drawn inside the axis' view (log locators also place some beyond it)."""
    labels: list[Text] = []
    for axis in (axes.xaxis, axes.yaxis):
        low, high = sorted(axis.get_view_interval())
        for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
            label = tick.label1
            if label.get_visible() and label.get_text() and low <= tick.get_loc() <= high:
                labels.append(label)
    return labels


def assert_apart(texts: list[Text], figure: Figure) -> None:
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for (first, a), (second, b) in combinations(boxes, 2):
        assert not a.overlaps(b), f"{first!r} overlaps {second!r}"
    frame = figure.bbox
    for text, box in boxes:
        assert frame.x0 <= box.x0, f"{text!r} is cut off on the left"
        assert box.x1 <= frame.x1 + 1, f"{text!r} is cut off on the right"


def test_summary_bars_show_each_cell_by_transport_and_profile(mix: Analysis) -> None:
    stats = list(mix.stats.values())
    figure = bars.summary_bars(stats)
    cells = ordered(stats)
    p50, p99, throughput, schema = panels(figure)
    assert [a.get_title() for a in (p50, p99, throughput, schema)] == list(bars.TITLES)
    expected = [[s.p50_ms for s in cells], [s.p99_ms for s in cells]]
    expected.append([s.throughput_rps for s in cells])
    for axes, figures in zip((p50, p99, throughput), expected, strict=True):
        assert [bar.get_width() for bar in solid(axes)] == [f.value for f in figures]
        whiskers = next(c for c in axes.collections if isinstance(c, LineCollection))
        segments = whiskers.get_segments()[: len(figures)]
        ends = [end for seg in segments for end in (seg[0][0], seg[1][0])]
        assert ends == pytest.approx([end for f in figures for end in (f.low, f.high)])
    assert [bar.get_width() for bar in solid(schema)] == [
        100 * s.schema_success_rate for s in cells
    ]
    ticks = [t.get_text().replace("\n", " ") for t in p50.get_yticklabels()]
    # two REST cells share the laptop profile (labels "mix" and the hostile one): one tick a bar
    assert "rest · closed c=4 · mix" in ticks
    assert [tick.split(" · ")[0] for tick in ticks] == [s.key.target for s in cells]
    alone = bars.summary_bars([s for s in stats if s.key.label == "mix"])
    assert [t.get_text() for t in alone.axes[0].get_yticklabels()] == sorted(
        {s.key.target for s in stats}
    )  # otherwise one tick per transport
    colours = {bar.get_facecolor() for bar in solid(p50)}
    assert len(colours) == len({s.key.hardware for s in stats})  # one colour per profile
    legend = [t.get_text() for t in figure.legends[0].get_texts()]
    assert legend == ["laptop", "server", "rows/s (batch)"]


def test_latency_and_throughput_are_log_axes_on_which_every_bar_shows(bench: Analysis) -> None:
    stats = list(bench.stats.values())
    figure = bars.summary_bars(stats)
    p50, p99, throughput, schema = panels(figure)
    assert [a.get_xscale() for a in (p50, p99, throughput, schema)] == [
        "log", "log", "log", "linear",
    ]  # fmt: skip
    assert p50.get_xlim() == p99.get_xlim()  # one latency scale: p50 and p99 side by side
    inprocess = next(s for s in stats if s.key.target == "inprocess")
    batch = next(s for s in stats if s.key.target == "batch")
    assert inprocess.p50_ms.value < 0.05  # the spread in question
    assert batch.p50_ms.value > 10
    assert inprocess.throughput_rps.value > 100 * batch.throughput_rps.value
    for axes in (p50, p99, throughput):
        low, high = axes.get_xlim()
        for bar in axes.patches:
            assert isinstance(bar, Rectangle)
            share = math.log(bar.get_width() / low) / math.log(high / low)
            assert share > 0.15, f"{axes.get_title()}: a bar {bar.get_width():g} is a sliver"
            assert bar.get_width() < high  # and its value label fits to its right
    values = [t.get_text() for t in p50.texts]
    assert values == [number(s.p50_ms.value) for s in ordered(stats)]


def test_batch_shows_rows_per_s_beside_its_requests_per_s(bench: Analysis) -> None:
    stats = list(bench.stats.values())
    batch = next(s for s in stats if s.key.target == "batch")
    run = next(c for c in bench.cells if c.key.target == "batch").runs[0]
    assert batch.rows_per_s is not None
    assert batch.rows_per_s.value == run.summary["predictions_per_s"]
    assert batch.rows_per_s.value == pytest.approx(run.document["extra"]["rows_per_s"], rel=0.05)
    assert [s.rows_per_s for s in stats if s.key.target != "batch"] == [None, None]
    throughput = panels(bars.summary_bars(stats))[2]
    (rows,) = hatched(throughput)
    assert rows.get_width() == batch.rows_per_s.value
    requests = solid(throughput)[[s.key for s in ordered(stats)].index(batch.key)]
    assert requests.get_width() == batch.throughput_rps.value
    # the two bars share the batch row, side by side
    assert requests.get_height() == pytest.approx(0.4)
    assert rows.get_height() == pytest.approx(0.4)
    assert rows.get_y() == pytest.approx(requests.get_y() + requests.get_height())
    texts = [t.get_text() for t in throughput.texts]
    assert f"{number(batch.rows_per_s.value)} rows/s" in texts
    assert f"{number(batch.throughput_rps.value)} req/s" in texts
    # the cell table and comparison.json say it too
    both = f"{with_interval(batch.throughput_rps)} · {with_interval(batch.rows_per_s)} rows/s"
    assert throughput_text(batch) == both
    rest = next(s for s in stats if s.key.target == "rest")
    assert throughput_text(rest) == with_interval(rest.throughput_rps)
    cells = orjson.loads(render_json(bench, [], [], [], "now"))["cells"]
    rates = {cell["target"]: cell["rows_per_s"] for cell in cells}
    assert rates["batch"]["value"] == batch.rows_per_s.value
    assert rates["rest"] is None


def crowd(stats: list[CellStats], copies: int) -> list[CellStats]:
    """``copies`` variants of every cell, told apart by long labels (the crowded layout)."""
    return [
        dataclasses.replace(s, key=dataclasses.replace(s.key, label=f"{s.key.label} variant {n}"))
        for s in stats
        for n in range(copies)
    ]


@pytest.mark.parametrize(
    ("kind", "copies"), [("per transport", 0), ("per bar", 0), ("per bar", 1), ("per bar", 4)]
)
def test_no_two_labels_overlap_and_none_is_cut_off(mix: Analysis, kind: str, copies: int) -> None:
    stats = list(mix.stats.values())
    if kind == "per transport":  # each transport and profile once: one tick per transport
        stats = [s for s in stats if s.key.label == "mix"]
    stats = crowd(stats, copies) if copies else stats
    figure = bars.summary_bars(stats)
    figure.canvas.draw()
    for axes in panels(figure):
        assert_apart(shown_labels(axes), figure)
        assert_apart(list(axes.texts), figure)  # the value labels beside the bars
    ticks = panels(figure)[0].get_yticklabels()
    labels = [t.get_text() for t in ticks]
    expected = len({s.key.target for s in stats}) if kind == "per transport" else len(stats)
    assert len(labels) == expected
    assert all(len(line) <= bars.LABEL_WIDTH for label in labels for line in label.split("\n"))
    assert any("\n" in label for label in labels) is (kind == "per bar")  # long ones wrap
    assert all(t.get_rotation() == 0 for t in ticks)  # read left to right, never tilted
