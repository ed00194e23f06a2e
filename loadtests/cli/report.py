"""``servelab report RESULT... --out DIR``: HTML/Markdown/CSV/JSON report of result files.
Nothing of ``reports`` (matplotlib least of all) is imported until the command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from loadtests.options import SEED, Subcommands, examples

COMMANDS: Final = ("report",)


def add_parser(commands: Subcommands) -> None:
    report = commands.add_parser(
        "report", help="HTML/Markdown/CSV/JSON report of result files",
        epilog=examples(
            "servelab report results/ --out report/",
            "servelab report 'results/run-*.json' r.json --out report/ --title 'REST vs gRPC'",
        ),
    )  # fmt: skip
    report.add_argument("results", nargs="+", metavar="RESULT", help="files, directories, globs")
    report.add_argument(
        "--out", required=True, metavar="DIR",
        help="index.html, summary.md, comparison.csv, comparison.json and the charts",
    )  # fmt: skip
    report.add_argument("--title", default="servelab report", help="the report's heading")
    report.add_argument("--seed", type=SEED, default=0, help="bootstrap seed (default 0)")


def main(args: argparse.Namespace) -> int:
    """Write the report; exit 2 (via ``NoUsableInput``, a ValueError) when nothing was usable."""
    from reports.build import build_report

    def warn(message: str) -> None:
        print(f"servelab: skipped {message}", file=sys.stderr)

    report = build_report(args.results, args.out, title=args.title, seed=args.seed, warn=warn)
    cells = report.analysis.cells
    runs = sum(len(cell.runs) + len(cell.invalid) for cell in cells)
    print(
        f"report: {runs} run(s) in {len(cells)} cell(s), {len(report.warnings)} skipped → "
        f"{Path(args.out) / 'index.html'}, summary.md, comparison.csv, comparison.json, "
        f"{sum(chart.png is not None for chart in report.charts)} chart(s)"
    )
    return 0
