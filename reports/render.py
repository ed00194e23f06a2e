"""``index.html``: one self-contained page — styles inline, charts as base64 PNG ``data:`` URIs,
no script, no external reference — so it opens from a CI artifact or an e-mail with no network.

Every string that came from a result file or the command line (labels, models, paths, reasons,
warnings) goes through ``esc``; the page also carries a Content-Security-Policy that forbids
scripts and any fetch, so a missed escape still could not run code or phone home.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from reports.analysis import Analysis
from reports.conditions import RUN_HEADERS, conditions_line, run_rows
from reports.landscape import HELD, NOT_HELD, Claim
from reports.tables import (
    CELL_HEADERS,
    CELL_LEGEND,
    COMPARISON_HEADERS,
    INVALID_HEADERS,
    LANDSCAPE_HEADERS,
    cell_rows,
    comparison_rows,
    invalid_rows,
    landscape_rows,
)

CSP: Final = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE: Final = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1280px;padding:0 1rem;color:#1b1b1b;background:#fff}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.meta{color:#555}table{border-collapse:collapse;margin:.6rem 0;font-size:13px;width:100%}
th,td{border:1px solid #d6d6d6;padding:.3rem .45rem;text-align:left;vertical-align:top}
th{background:#f2f4f7}td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
tr.invalid td{background:#fff1ec}.badge{display:inline-block;padding:0 .4rem;border-radius:.3rem;
font-size:12px;font-weight:600}.bad{background:#D55E00;color:#fff}.good{background:#009E73;
color:#fff}.neutral{background:#e3e6ea;color:#222}figure{margin:1.2rem 0}
figure img{max-width:100%;height:auto;border:1px solid #e3e3e3}figcaption{color:#444;font-size:13px}
ul.warnings li{color:#8a3b00}nav a{margin-right:1rem}
"""
_STATUS_COLUMN: Final = CELL_HEADERS.index("status")
_NUMERIC_CELL_COLUMNS: Final = set(range(3, _STATUS_COLUMN))
_VERDICT_CLASS: Final = {
    "faster": "good",
    "better": "good",
    "slower": "bad",
    "worse": "bad",
    HELD: "good",
    NOT_HELD: "bad",
}


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart of the report: its PNG (None when there is nothing to draw, with ``note``)."""

    slug: str
    title: str
    caption: str
    png: bytes | None
    note: str = ""

    @property
    def filename(self) -> str:
        return f"charts/{self.slug}.png"


def esc(text: object) -> str:
    """HTML-escape anything user-supplied (quotes too: it may land in an attribute)."""
    return html.escape(str(text), quote=True)


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: set[int] | frozenset[int] = frozenset(),
    badge_column: int | None = None,
    invalid: Sequence[bool] = (),
) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        cells = []
        for column, value in enumerate(row):
            text = esc(value)
            if column == badge_column:
                kind = _VERDICT_CLASS.get(value, "bad" if "INVALID" in value else "neutral")
                text = f'<span class="badge {kind}">{text}</span>'
            css = ' class="num"' if column in numeric else ""
            cells.append(f"<td{css}>{text}</td>")
        marked = ' class="invalid"' if index < len(invalid) and invalid[index] else ""
        body.append(f"<tr{marked}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(chart: Chart) -> str:
    if chart.png is None:
        return (
            f'<figure id="{esc(chart.slug)}"><figcaption><strong>{esc(chart.title)}</strong>: '
            f"{esc(chart.note)}</figcaption></figure>"
        )
    data = base64.b64encode(chart.png).decode("ascii")
    return (
        f'<figure id="{esc(chart.slug)}"><img alt="{esc(chart.title)}" '
        f'src="data:image/png;base64,{data}"><figcaption><strong>{esc(chart.title)}</strong>. '
        f"{esc(chart.caption)}</figcaption></figure>"
    )


def render_html(
    analysis: Analysis,
    claims: Sequence[Claim],
    charts: Sequence[Chart],
    warnings: Sequence[str],
    *,
    title: str,
    generated_at: str,
) -> str:
    parts = [
        *_head(analysis, warnings, title=title, generated_at=generated_at),
        '<h2 id="runs">Runs</h2>',
        _table(RUN_HEADERS, run_rows(analysis), numeric={3, 4}),
    ]
    if warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in warnings)
        parts.append(f'<h2 id="skipped">Skipped inputs</h2><ul class="warnings">{items}</ul>')
    parts += _cells(analysis)
    parts += _comparisons(analysis)
    parts += _landscape(claims, charts)
    if analysis.notes:
        items = "".join(f"<li>{esc(note)}</li>" for note in analysis.notes)
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _head(
    analysis: Analysis, warnings: Sequence[str], *, title: str, generated_at: str
) -> list[str]:
    """The document head, the title, what the report covers and the navigation."""
    runs = sum(len(c.runs) + len(c.invalid) for c in analysis.cells)
    return [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">{runs} run(s) in {len(analysis.cells)} cell(s) · '
        f"{len(analysis.invalid_runs)} invalid · {len(warnings)} input(s) skipped · generated "
        f"{esc(generated_at)} · intervals are 95 % bootstrap intervals (seeded)</p>",
        f'<p class="meta">{esc(conditions_line(analysis))}</p>',
        '<nav><a href="#runs">Runs</a><a href="#cells">Cells</a>'
        '<a href="#comparisons">Comparisons</a><a href="#landscape">Landscape</a>'
        '<a href="#charts">Charts</a></nav>',
    ]


def _cells(analysis: Analysis) -> list[str]:
    """The cell table, then the invalid runs (shown, never compared)."""
    parts = [
        '<h2 id="cells">Cells</h2>',
        "<p>A cell is one configuration (target, model, load, hardware profile, label); "
        "its repeats are pooled. Invalid runs are never pooled or compared.</p>",
        f"<p>{esc(CELL_LEGEND)}</p>",
        _table(
            CELL_HEADERS,
            cell_rows(analysis),
            numeric=_NUMERIC_CELL_COLUMNS,
            badge_column=_STATUS_COLUMN,
            invalid=[not cell.valid for cell in analysis.cells],
        ),
    ]
    invalid = analysis.invalid_runs
    if invalid:
        parts += [
            '<h2 id="invalid">Invalid runs <span class="badge bad">INVALID</span></h2>',
            "<p>Shown for the record; left out of every comparison, interval and bar.</p>",
            _table(
                INVALID_HEADERS,
                invalid_rows(invalid),
                numeric=set(range(3, len(INVALID_HEADERS))),
                invalid=[True] * len(invalid),
            ),
        ]
    return parts


def _comparisons(analysis: Analysis) -> list[str]:
    comparisons = comparison_rows(analysis)
    return [
        '<h2 id="comparisons">Comparisons</h2>',
        _table(COMPARISON_HEADERS, comparisons, numeric={3, 4, 5}, badge_column=6)
        if comparisons
        else "<p>No two cells differ in only transport, hardware profile or label.</p>",
    ]


def _landscape(claims: Sequence[Claim], charts: Sequence[Chart]) -> list[str]:
    """The lesson's claims with the cost chart beside them, then every other chart."""
    cost_chart = [c for c in charts if c.slug == "cost-vs-freshness"]
    other_charts = [c for c in charts if c.slug != "cost-vs-freshness"]
    return [
        '<h2 id="landscape">The measured serving landscape</h2>',
        "<p>The lesson's table of deployment patterns, checked on the runs at hand: each "
        "pattern at its best measured configuration per hardware profile.</p>",
        _table(LANDSCAPE_HEADERS, landscape_rows(claims), badge_column=4)
        if claims
        else "<p>No REST, gRPC, batch, streaming or edge runs to check the claims with.</p>",
        *(_figure(chart) for chart in cost_chart),
        '<h2 id="charts">Charts</h2>',
        *(_figure(chart) for chart in other_charts),
    ]
