"""``servelab import-locust CSV_PREFIX --out FILE``: a Locust ``--csv`` output as a result."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.options import Subcommands, examples

COMMANDS: Final = ("import-locust",)


def add_parser(commands: Subcommands) -> None:
    imported = commands.add_parser(
        "import-locust", help="a Locust --csv output as a result",
        epilog=examples(
            "servelab import-locust old --out old.json",
            "servelab import-locust runs/nightly --out nightly.json",
        ),
    )  # fmt: skip
    imported.add_argument(
        "prefix", metavar="CSV_PREFIX",
        help="what Locust's --csv was given: reads PREFIX_stats.csv, _stats_history.csv, "
        "_failures.csv",
    )  # fmt: skip
    imported.add_argument("--out", required=True, metavar="FILE", help="the result file to write")


def main(args: argparse.Namespace) -> int:
    from loadtests.cli.display import summary_lines
    from loadtests.locust_integration.csv_stats import import_locust_csv
    from loadtests.results.result import write_result

    result = import_locust_csv(args.prefix)  # ValueError: one line, exit 2 (dispatch)
    write_result(args.out, result)
    for line in summary_lines(result, args.out):
        print(line)
    return 0
