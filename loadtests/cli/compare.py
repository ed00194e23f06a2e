"""``servelab compare BASELINE CANDIDATE``: two runs (or groups) compared with bootstrap
intervals; exit 1 on a significant regression, 3 for an INVALID run on either side."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.options import OPEN_FRACTION, SEED, Range, Subcommands, examples

COMMANDS: Final = ("compare",)
RESAMPLES = Range("int", low=100)  # fewer makes the bootstrap interval noise


def add_parser(commands: Subcommands) -> None:
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
        "--resamples", type=RESAMPLES, default=2000, metavar="N",
        help="bootstrap resamples per comparison",
    )  # fmt: skip
    compare.add_argument(
        "--confidence", type=OPEN_FRACTION, default=0.95, metavar="C",
        help="confidence level of the intervals and of a significant change",
    )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from reports.compare import main as compare

    return compare(args)
