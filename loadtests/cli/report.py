"""The ``report`` and ``compare`` commands of ``servelab``: parsers and handlers.

``loadtests.cli.commands`` registers the parsers (``add_report_commands``) and dispatches to the handlers
by name, so nothing here — matplotlib least of all — is imported until a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loadtests.cli.app import OPEN_FRACTION, SEED, Range, examples

if TYPE_CHECKING:
    from loadtests.cli.app import Subcommands

COMMANDS = {"report": "loadtests.cli.report:report_main", "compare": "reports.compare:main"}


_RESAMPLES = Range("int", low=100)  # fewer makes the bootstrap interval noise


def add_report_commands(commands: Subcommands) -> None:
    """``report RESULT... --out DIR`` and ``compare BASELINE CANDIDATE``."""
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

    compare = commands.add_parser(
        "compare", help="compare two runs (or groups); exit 1 on a significant regression",
        epilog=examples(
            "servelab compare baseline.json candidate.json",
            "servelab compare results/base/ results/new/ --threshold 'p99:+5%' --markdown",
        ),
    )  # fmt: skip
    compare.add_argument("baseline", metavar="BASELINE", help="result file, directory or glob")
    compare.add_argument("candidate", metavar="CANDIDATE", help="result file, directory or glob")
    compare.add_argument(
        "--threshold",
        action="append",
        metavar="EXPR",
        help="p99:+10%% · throughput_rps:-5%% · p99<50ms · schema_success_rate>=0.999 "
        "(repeatable; default p50:+10%%, p99:+10%%, throughput_rps:-10%%). The success-rate "
        "gate (success_rate:-1%%) stays unless you name success_rate or fail_ratio",
    )
    compare.add_argument("--markdown", action="store_true", help="Markdown for CI summaries")
    compare.add_argument(
        "--allow-invalid", "--include-invalid", dest="include_invalid", action="store_true",
        help="compare INVALID runs too (default: refuse them, exit 3)",
    )  # fmt: skip
    compare.add_argument(
        "--no-default-gate", action="store_true", help="drop the success-rate gate"
    )
    compare.add_argument("--seed", type=SEED, default=0, help="bootstrap seed (default 0)")
    compare.add_argument(
        "--resamples", type=_RESAMPLES, default=2000, metavar="N",
        help="bootstrap resamples per comparison",
    )  # fmt: skip
    compare.add_argument(
        "--confidence", type=OPEN_FRACTION, default=0.95, metavar="C",
        help="confidence level of the intervals and of a significant change",
    )  # fmt: skip


def report_main(args: argparse.Namespace) -> int:
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
