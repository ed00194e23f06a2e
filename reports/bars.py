"""The summary chart: p50, p99, throughput and schema success of every valid cell, side by side.

One horizontal bar per cell, the four panels sharing the rows: labels are read left to right, each
at its own height, so they cannot overlap however many cells there are (the figure grows a row per
cell and long labels wrap). Latency and throughput are on log axes, so an in-process target
(0.01 ms, ~90 k req/s) and a batch job (20 ms, ~100 req/s) stay visible beside the network
targets; every bar carries its value. A cell that scores rows (a batch job) has a second, hatched
throughput bar: rows/s beside its requests (batches)/s.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from reports.analysis import CellStats, Interval
from reports.charts import colour, new_figure, plain_log_axis
from reports.tables import number, percent

TITLES: Final = (
    "p50 latency (ms, log scale)",
    "p99 latency (ms, log scale)",
    "throughput (per s, log scale)",
    "schema success (%)",
)
XLABELS: Final = ("ms", "ms", "req/s · rows/s", "%")
ROWS_HATCH: Final = "///"
LABEL_WIDTH: Final = 24  # characters per line of a wrapped cell label
ROW_PITCH_IN: Final = 0.36  # height of one bar row; more when its label wraps
LINE_IN: Final = 0.16  # one line of a small tick label, with its leading
CHROME_IN: Final = 1.9  # title, axis labels and legend around the rows
GROUP_GAP: Final = 0.6  # rows between transports


@dataclass(frozen=True, slots=True)
class Rows:
    """Where each cell's bar sits (row numbers, top to bottom) and the ticks naming them: one
    per transport, or one per bar when several cells share a transport and a profile."""

    cells: list[CellStats]
    positions: list[float]
    ticks: list[float]
    labels: list[str]

    @property
    def pitch_in(self) -> float:
        lines = max((label.count("\n") + 1 for label in self.labels), default=1)
        return max(ROW_PITCH_IN, LINE_IN * lines + 0.1)


def _variants(cells: Sequence[CellStats]) -> list[str]:
    """Per cell, the parts of its key that differ between cells (load, label, model)."""
    fields = [
        name
        for name in ("load", "label", "model")
        if len({getattr(s.key, name) for s in cells}) > 1
    ]
    return [
        " · ".join(getattr(s.key, name) for name in fields if getattr(s.key, name)) for s in cells
    ]


def layout_rows(cells: Sequence[CellStats]) -> Rows:
    ordered = sorted(cells, key=lambda s: (s.key.target, s.key.hardware, s.key.load, s.key.label))
    pairs = [(s.key.target, s.key.hardware) for s in ordered]
    crowded = len(set(pairs)) < len(pairs)  # several cells share a transport and a profile
    positions: list[float] = []
    groups: dict[str, list[float]] = {}
    position = 0.0
    for index, s in enumerate(ordered):
        if index and s.key.target != ordered[index - 1].key.target:
            position += GROUP_GAP
        positions.append(position)
        groups.setdefault(s.key.target, []).append(position)
        position += 1.0
    if crowded:
        labels = [
            textwrap.fill(f"{s.key.target} · {v}" if v else s.key.target, LABEL_WIDTH)
            for s, v in zip(ordered, _variants(ordered), strict=True)
        ]
        return Rows(ordered, positions, positions, labels)
    ticks = [sum(p) / len(p) for p in groups.values()]
    return Rows(ordered, positions, ticks, [textwrap.fill(t, LABEL_WIDTH) for t in groups])


def _known(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def _whiskers(figures: Sequence[Interval]) -> np.ndarray:
    return np.array(
        [
            [_known(max(f.value - f.low, 0.0)) for f in figures],
            [_known(max(f.high - f.value, 0.0)) for f in figures],
        ]
    )


def _draw(
    axes: Axes,
    y: Sequence[float],
    figures: Sequence[Interval],
    colours: Sequence[str],
    height: float | Sequence[float],
    texts: Sequence[str],
    *,
    hatch: str | None = None,
) -> None:
    """Bars with their whiskers, each labelled with its value just past the whisker."""
    widths = [_known(f.value) for f in figures]
    plain = hatch is None  # else hatched in the profile's colour on white: another unit
    axes.barh(
        y,
        widths,
        height=height,
        color=colours if plain else "white",
        edgecolor=None if plain else colours,
        hatch=hatch,
        xerr=_whiskers(figures),
        capsize=3,
        ecolor="#333333",
    )
    for row, f, text in zip(y, figures, texts, strict=True):
        end = max(_known(f.high), _known(f.value))
        axes.annotate(
            text,
            (end, row),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize="x-small",
        )


def log_limits(values: Sequence[float], room: float) -> tuple[float, float]:
    """From a decade at least half a decade below the smallest positive value (so the shortest
    bar is still a bar) to ``room`` times the span past the largest, for the value labels."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return 0.1, 10.0
    low = 10.0 ** math.floor(math.log10(min(positive)) - 0.5)
    top = math.log10(max(positive))
    return low, 10.0 ** (top + room * max(top - math.log10(low), 1.0))


def compact(value: float, _position: object = None) -> str:
    """Tick label for a rate: 100, 1k, 10k, 1M (short enough that decades never collide)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _bounds(figures: Sequence[Interval]) -> list[float]:
    return [v for f in figures for v in (f.value, f.low, f.high)]


def summary_bars(cells: Sequence[CellStats]) -> Figure:
    """p50 / p99 / throughput / schema success per cell: grouped by transport, coloured by
    hardware profile; whiskers are the bootstrap intervals."""
    rows = layout_rows(cells)
    ordered, y = rows.cells, rows.positions
    hardware = sorted({s.key.hardware for s in ordered})
    colours = [colour(hardware.index(s.key.hardware)) for s in ordered]
    figure = new_figure(15.0, CHROME_IN + rows.pitch_in * (y[-1] + 1.0 if y else 1.0))
    figure.suptitle(
        "Per valid cell, by transport and hardware profile "
        "(latency and throughput on log axes; whiskers: 95 % bootstrap interval)"
    )
    panels = figure.subplots(1, 4, sharey=True)
    p50, p99, throughput, schema = (panels[i] for i in range(4))
    p99.sharex(p50)
    _latency_panels(p50, p99, ordered, y, colours)
    scored = _throughput_panel(throughput, ordered, y, colours)
    _schema_panel(schema, ordered, y, colours)
    for axes, title, unit in zip((p50, p99, throughput, schema), TITLES, XLABELS, strict=True):
        if axes is not schema:
            plain_log_axis(axes)
        axes.set_title(title)
        axes.set_xlabel(unit)
        axes.grid(True, axis="x", which="major", alpha=0.3)
        axes.set_axisbelow(True)
        axes.tick_params(labelsize="small")
    throughput.xaxis.set_major_formatter(FuncFormatter(compact))
    throughput.xaxis.set_minor_formatter(NullFormatter())
    p50.set_yticks(rows.ticks, rows.labels)
    p50.set_ylim(-0.7, (y[-1] if y else 0.0) + 0.7)
    p50.invert_yaxis()  # first cell on top, as in the tables

    handles = [Patch(color=colour(i), label=name) for i, name in enumerate(hardware)]
    if scored:
        handles.append(
            Patch(facecolor="white", edgecolor="#555555", hatch=ROWS_HATCH, label="rows/s (batch)")
        )
    figure.legend(
        handles=handles, title="hardware profile", loc="outside right upper", fontsize="small"
    )
    return figure


def _latency_panels(
    p50: Axes, p99: Axes, ordered: Sequence[CellStats], y: Sequence[float], colours: list[str]
) -> None:
    """p50 and p99 bars on one shared log axis."""
    for axes, figures in ((p50, [s.p50_ms for s in ordered]), (p99, [s.p99_ms for s in ordered])):
        _draw(axes, y, figures, colours, 0.8, [number(f.value) for f in figures])
    latencies = [*_bounds([s.p50_ms for s in ordered]), *_bounds([s.p99_ms for s in ordered])]
    p50.set_xscale("log")
    p50.set_xlim(*log_limits(latencies, 0.25))


def _throughput_panel(
    throughput: Axes, ordered: Sequence[CellStats], y: Sequence[float], colours: list[str]
) -> bool:
    """Requests per second; a cell that scores rows shares its row: requests above, rows
    (hatched) below. True when some cell scores rows."""
    requests = [s.throughput_rps for s in ordered]
    scored = {i: f for i, s in enumerate(ordered) if (f := s.rows_per_s) is not None}
    _draw(
        throughput,
        [row - 0.2 if i in scored else row for i, row in enumerate(y)],
        requests,
        colours,
        [0.4 if i in scored else 0.8 for i in range(len(y))],
        [f"{number(f.value)} req/s" for f in requests],
    )
    rates = list(scored.values())
    if scored:
        _draw(
            throughput,
            [y[i] + 0.2 for i in scored],
            rates,
            [colours[i] for i in scored],
            0.4,
            [f"{number(f.value)} rows/s" for f in rates],
            hatch=ROWS_HATCH,
        )
    throughput.set_xscale("log")
    throughput.set_xlim(*log_limits([*_bounds(requests), *_bounds(rates)], 0.4))
    return bool(scored)


def _schema_panel(
    schema: Axes, ordered: Sequence[CellStats], y: Sequence[float], colours: list[str]
) -> None:
    """Schema success in %, the axis starting just below the lowest share."""
    shares = [100 * s.schema_success_rate for s in ordered]
    _draw(
        schema,
        y,
        [Interval(v, v, v) for v in shares],
        colours,
        0.8,
        [percent(s.schema_success_rate) for s in ordered],
    )
    low = min([*(v for v in shares if math.isfinite(v)), 100.0]) * 0.98
    schema.set_xlim(low, 100 + 0.4 * (100 - low))
