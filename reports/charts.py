"""Latency charts (matplotlib). Every function returns a ``Figure`` so tests can read its series.

Figures are built on ``matplotlib.figure.Figure`` with an explicit Agg canvas — never pyplot, so
there is no global figure registry or display backend, and nothing happens at import time of
``reports`` (this module is imported only when a report is drawn). Colours are Okabe-Ito, safe for
the common colour-vision deficiencies.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

from reports.buckets import Buckets, merge_buckets
from reports.load import Cell, Run

OKABE_ITO: Final = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#56B4E9",
    "#CC79A7",
    "#F0E442",
    "#000000",
)
LINE_STYLES: Final = ("-", "--", "-.")  # ":" is reserved for invalid runs
NINES: Final = (50.0, 90.0, 99.0, 99.9, 99.99)
SPECTRUM_POINTS: Final = 200
MAX_LEGEND: Final = 16
MAX_PANELS: Final = 12
MAX_CDF_POINTS: Final = 1500
FAILURE_COLOUR: Final = "#D55E00"


def colour(index: int) -> str:
    return OKABE_ITO[index % len(OKABE_ITO)]


def style(index: int) -> str:
    """Line style that keeps lines apart once the eight colours repeat."""
    return LINE_STYLES[(index // len(OKABE_ITO)) % len(LINE_STYLES)]


def new_figure(width: float, height: float) -> Figure:
    """A figure on an explicit Agg canvas (no pyplot state, no display)."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def nines_x(percentiles: Sequence[float] | np.ndarray) -> np.ndarray:
    """Position on the "nines" axis: 1 / (1 - p/100), drawn on a log scale (50 → 2, 99 → 100)."""
    return 1.0 / (1.0 - np.asarray(percentiles, dtype=np.float64) / 100.0)


def spectrum_percentiles() -> np.ndarray:
    """50 … 99.99, evenly spaced in nines."""
    return 100.0 * (1.0 - 10.0 ** -np.linspace(math.log10(2.0), 4.0, SPECTRUM_POINTS))


def _nines_axis(axes: Axes) -> None:
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(list(nines_x(NINES))))
    axes.xaxis.set_minor_locator(NullLocator())
    labels = {round(float(x), 6): f"{p:g}" for x, p in zip(nines_x(NINES), NINES, strict=True)}
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: labels.get(round(x, 6), "")))
    axes.set_xlim(nines_x([50.0])[0], nines_x([99.99])[0])
    axes.set_xlabel("percentile (%)")
    axes.grid(True, which="major", alpha=0.3)


def _latency_scale(axes: Axes, values: Sequence[float]) -> None:
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 20:
        plain_log_axis(axes, "y")


def _legend(figure: Figure, entries: int) -> None:
    """Below the plot, where it can never hide a line; left out when it would not fit."""
    if 0 < entries <= MAX_LEGEND:
        figure.legend(fontsize="small", loc="outside lower center", ncols=2, frameon=False)


def plain_log_axis(axes: Axes, which: str = "x") -> None:
    """Log scale with plain numbers (2, 5, 10, 20 …) instead of 2e0-style labels."""
    axis = axes.xaxis if which == "x" else axes.yaxis
    (axes.set_xscale if which == "x" else axes.set_yscale)("log")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    low, high = axis.get_view_interval()
    if low > 0 and high / low <= 1000:  # 2s and 5s too, while they fit
        axis.set_minor_formatter(
            FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else "")
        )
    else:
        axis.set_minor_formatter(NullFormatter())


def percentile_spectrum(cells: Sequence[Cell]) -> Figure:
    """Latency against percentile on the nines axis, one line per run (invalid runs dashed
    and marked), one colour per cell."""
    figure = new_figure(10, 5.5)
    axes = figure.add_subplot()
    percentiles = spectrum_percentiles()
    x = nines_x(percentiles)
    every: list[float] = []
    labelled = 0
    for index, cell in enumerate(cells):
        lines = [(run, cell.key.name if n == 0 else None) for n, run in enumerate(cell.runs)]
        lines += [
            (run, f"{cell.key.name} [INVALID]" if n == 0 else None)
            for n, run in enumerate(cell.invalid)
        ]
        for run, label in lines:
            if run.latency is None:
                continue
            values = run.latency.percentiles_ms(percentiles)
            every.extend(values.tolist())
            linestyle = style(index) if run.valid else ":"
            axes.plot(
                x, values, color=colour(index), linewidth=1.4, linestyle=linestyle, label=label
            )
            labelled += label is not None
    _nines_axis(axes)
    _latency_scale(axes, every)
    axes.set_ylabel("latency from intended start (ms)")
    axes.set_title("Percentile spectrum (HdrHistogram): latency by percentile, one line per run")
    _legend(figure, labelled)
    return figure


def latency_over_time(runs: Sequence[Run]) -> Figure:
    """p50 and p99 per second for up to ``MAX_PANELS`` runs, failures marked per second."""
    shown = list(runs)[:MAX_PANELS]
    columns = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure = new_figure(4.2 * columns, 2.8 * rows + 0.6)
    figure.suptitle("Latency over time: p50 and p99 per second (failures marked ✕)")
    for index, run in enumerate(shown):
        axes = figure.add_subplot(rows, columns, index + 1)
        series = run.timeseries
        seconds = [float(row["t_s"]) for row in series]
        axes.plot(
            seconds,
            [float(r.get("p50_ms", 0)) for r in series],
            color=OKABE_ITO[0],
            marker="o",
            markersize=3,
            label="p50",
        )
        axes.plot(
            seconds,
            [float(r.get("p99_ms", 0)) for r in series],
            color=OKABE_ITO[1],
            marker="o",
            markersize=3,
            label="p99",
        )
        failed = [(float(r["t_s"]), int(r.get("failures", 0))) for r in series]
        failed = [(t, count) for t, count in failed if count > 0]
        if failed:
            twin = axes.twinx()
            twin.scatter(
                [t for t, _ in failed],
                [c for _, c in failed],
                marker="x",
                color=FAILURE_COLOUR,
                label="failures",
            )
            twin.set_ylabel("failures / s", fontsize="small", color=FAILURE_COLOUR)
            twin.set_ylim(bottom=0)
        else:
            axes.text(
                0.98,
                0.04,
                "no failures",
                transform=axes.transAxes,
                ha="right",
                fontsize="x-small",
                color="#555555",
            )
        axes.set_title(run.key.name + ("" if run.valid else " [INVALID]"), fontsize="small")
        axes.set_xlabel("time (s)")
        axes.set_ylabel("latency (ms)")
        axes.set_ylim(bottom=0)
        if index == 0:
            axes.legend(fontsize="x-small", loc="upper left", frameon=False)
    return figure


def cdf_points(buckets: Buckets) -> tuple[np.ndarray, np.ndarray]:
    """(latency ms, cumulative fraction) at the buckets' upper values, thinned to a readable
    number of points (every kept point is an exact point of the CDF)."""
    cumulative = np.cumsum(buckets.counts) / max(buckets.total, 1)
    keep = np.unique(
        np.linspace(0, buckets.counts.size - 1, min(buckets.counts.size, MAX_CDF_POINTS))
        .round()
        .astype(np.int64)
    )
    return buckets.upper_ms[keep], cumulative[keep]


def histogram_bins(buckets: Buckets, bins: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(edges ms, share of requests) on log-spaced bins over the buckets' range."""
    low, high = float(buckets.upper_ms[0]), float(buckets.upper_ms[-1])
    edges = np.geomspace(max(low, 1e-6) * 0.999, max(high, low * 1.01) * 1.001, bins + 1)
    shares, _ = np.histogram(buckets.upper_ms, bins=edges, weights=buckets.counts)
    return edges, shares / max(buckets.total, 1)


def cdf_and_histogram(cells: Sequence[Cell]) -> Figure:
    """Cumulative distribution and histogram of latency, one line per cell (repeats pooled)."""
    figure = new_figure(12, 4.8)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    drawn = 0
    for index, cell in enumerate(cells):
        parts = [run.latency for run in cell.runs if run.latency is not None]
        if not parts:
            continue
        pooled = merge_buckets(parts)
        x, y = cdf_points(pooled)
        left.plot(
            x,
            y,
            drawstyle="steps-post",
            color=colour(index),
            linestyle=style(index),
            label=cell.key.name,
        )
        edges, shares = histogram_bins(pooled)
        right.stairs(shares, edges, color=colour(index), linestyle=style(index))
        drawn += 1
    for axes in (left, right):
        plain_log_axis(axes)
        axes.set_xlabel("latency from intended start (ms)")
        axes.grid(True, alpha=0.3)
    left.set_ylabel("fraction of requests ≤ latency")
    left.set_ylim(0, 1.01)
    left.set_title("CDF (valid runs, repeats pooled)")
    right.set_ylabel("share of requests per bin")
    right.set_title("Histogram (log-spaced bins)")
    _legend(figure, drawn)
    return figure


def intended_vs_service(
    cells: Sequence[Cell], *, min_gap: float = 1.05, min_gap_ms: float = 0.05
) -> Figure | None:
    """Service time next to latency from intended start for cells where they differ (p99 or
    p99.9 more than ``min_gap`` times and ``min_gap_ms`` apart): the queueing that coordinated
    omission would hide. Where the driver saw the wire, the client queue (dispatch to wire) is
    drawn too: the part of the gap spent waiting for a free connection, stream or worker.
    None when every cell agrees (closed loop without queueing). A cell with only invalid runs
    is drawn from those, marked: an overloaded generator is exactly where the gap shows."""
    percentiles = spectrum_percentiles()
    differing: list[tuple[float, Cell, Buckets, Buckets, Buckets | None]] = []
    for cell in cells:
        runs = cell.runs or cell.invalid
        latency = [r.latency for r in runs if r.latency is not None]
        service = [r.service for r in runs if r.service is not None]
        if not latency or len(latency) != len(service):
            continue
        queued = [r.client_queue for r in runs if r.client_queue is not None]
        queue = merge_buckets(queued) if len(queued) == len(runs) else None  # all, or absent
        intended, served = merge_buckets(latency), merge_buckets(service)
        ends = [(intended.percentile_ms(p), served.percentile_ms(p)) for p in (99.0, 99.9)]
        gap = max(
            (top / max(bottom, 1e-9) for top, bottom in ends if top - bottom > min_gap_ms),
            default=1.0,
        )
        if gap > min_gap:
            differing.append((gap, cell, intended, served, queue))
    if not differing:
        return None
    differing.sort(key=lambda item: -item[0])
    shown = differing[: MAX_PANELS // 2]
    figure = new_figure(max(8.0, 5 * len(shown)), 4.4)
    figure.suptitle("Intended-start latency vs service time (the gap is queueing delay)")
    for index, (_, cell, intended, served, queue) in enumerate(shown):
        axes = figure.add_subplot(1, len(shown), index + 1)
        x = nines_x(percentiles)
        top = intended.percentiles_ms(percentiles)
        axes.plot(x, top, color=OKABE_ITO[3], label="from intended start")
        bottom = served.percentiles_ms(percentiles)
        start = "from the wire" if queue is not None else "from dispatch"
        axes.plot(x, bottom, color=OKABE_ITO[0], linestyle="--", label=f"service ({start})")
        every = [*top.tolist(), *bottom.tolist()]
        if queue is not None:
            waited = queue.percentiles_ms(percentiles)
            axes.plot(
                x, waited, color=OKABE_ITO[2], linestyle="-.", label="client queue (to the wire)"
            )
            every += waited.tolist()
        _nines_axis(axes)
        _latency_scale(axes, every)
        axes.set_ylabel("latency (ms)")
        marked = "" if cell.runs else " [INVALID]"
        axes.set_title(cell.key.name + marked, fontsize="small")
        axes.legend(fontsize="x-small", loc="upper left", frameon=False)
    return figure
