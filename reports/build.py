"""``servelab report``: result files in, ``index.html``, ``summary.md``, ``comparison.csv``,
``comparison.json`` and ``charts/*.png`` out (every file written atomically)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadtests.errors import ResultFileError
from reports.analysis import Analysis, analyse
from reports.freshness import freshness_sets
from reports.landscape import Claim, cost_vs_freshness, landscape
from reports.load import group_cells, load_runs
from reports.render import Chart, render_html
from reports.tables import render_csv, render_json, render_markdown
from targets.files import user_path, write_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTPUTS = ("index.html", "summary.md", "comparison.csv", "comparison.json")


class NoUsableInput(ResultFileError):
    """Nothing readable among the inputs (the CLI turns it into one line and exit 2)."""


@dataclass(frozen=True, slots=True)
class Report:
    analysis: Analysis
    claims: list[Claim]
    charts: list[Chart]
    warnings: list[str]
    files: list[Path]


def draw_charts(analysis: Analysis) -> list[tuple[str, str, str, Figure | None, str]]:
    """(slug, title, caption, figure or None, note when None) for every chart of a report."""
    from reports import bars, charts

    cells = analysis.cells
    valid = analysis.valid_cells
    stats = [analysis.stats[cell.key] for cell in valid]
    first_runs = [cell.runs[0] if cell.runs else cell.invalid[0] for cell in cells]
    shown = min(len(first_runs), charts.MAX_PANELS)
    return [
        (
            "percentile-spectrum",
            "Percentile spectrum",
            "Latency from intended start against percentile on a log 'nines' axis, one line per "
            "run, one colour per cell; invalid runs dotted and marked.",
            charts.percentile_spectrum(cells),
            "",
        ),
        (
            "latency-over-time",
            "Latency over time",
            f"p50 and p99 per second of the first run of {shown} of {len(first_runs)} cell(s); "
            "failures per second as ✕ on the right axis.",
            charts.latency_over_time(first_runs),
            "",
        ),
        (
            "cdf-histogram",
            "Distribution",
            "CDF and histogram of latency per valid cell.",
            charts.cdf_and_histogram(valid) if valid else None,
            "no valid runs",
        ),
        (
            "summary-bars",
            "p50, p99, throughput and schema success",
            "Per valid cell, grouped by transport and coloured by hardware profile; latency "
            "and throughput on log axes, each bar labelled with its value; a batch cell's "
            "hatched bar is rows/s beside its requests (batches)/s.",
            bars.summary_bars(stats) if stats else None,
            "no valid runs",
        ),
        (
            "intended-vs-service",
            "Intended start vs service time",
            "Where the two differ, the gap is queueing a closed-loop or send-time measurement "
            "would hide (coordinated omission); the client-queue line, where the driver saw the "
            "wire, is the part spent waiting in the client for a connection, stream or worker.",
            charts.intended_vs_service(cells),
            "service time and intended-start latency agree in every cell (no queueing to show)",
        ),
        (
            "cost-vs-freshness",
            "Cost vs freshness",
            "Target CPU-seconds per 1,000 predictions against p99, one point per configuration "
            "(batch sizes and micro-batch windows apart); with a freshness run, backfill "
            "schedules and streaming windows at their real freshness p99 (line back to p50).",
            cost_vs_freshness(stats, freshness_sets(analysis)),
            "no run recorded the target's CPU cost",
        ),
    ]


def build_report(
    inputs: Sequence[str],
    out_dir: str | Path,
    *,
    title: str = "servelab report",
    seed: int = 0,
    warn: Callable[[str], None] | None = None,
) -> Report:
    """Read, analyse, draw and write. Unusable inputs are skipped (``warn`` is told about each);
    ``NoUsableInput`` when none is left."""
    from reports.charts import png_bytes

    loaded = load_runs(inputs)
    for warning in loaded.warnings:
        if warn is not None:
            warn(warning)
    if not loaded.runs:
        raise NoUsableInput(f"no readable result file among {len(inputs)} input(s)")
    analysis = analyse(group_cells(loaded.runs), seed=seed)
    claims = landscape(analysis)
    charts = []
    for slug, name, caption, figure, note in draw_charts(analysis):
        charts.append(Chart(slug, name, caption, png_bytes(figure) if figure else None, note))
    out = Path(out_dir)
    generated_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    drawn = [chart.filename for chart in charts if chart.png is not None]
    written = {
        "index.html": render_html(
            analysis, claims, charts, loaded.warnings, title=title, generated_at=generated_at
        ).encode(),
        "summary.md": render_markdown(analysis, claims, loaded.warnings, drawn).encode(),
        "comparison.csv": render_csv(analysis).encode(),
        "comparison.json": render_json(analysis, claims, loaded.warnings, drawn, generated_at),
    }
    for chart in charts:
        if chart.png is not None:
            written[chart.filename] = chart.png
    files = []
    with user_path("write", "--out", out):
        for name, data in written.items():
            write_atomic(out / name, data)
            files.append(out / name)
    return Report(analysis, claims, charts, loaded.warnings, files)
