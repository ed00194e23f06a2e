"""``servelab batch score INPUT --out OUTPUT``: batch scoring of files."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.cli.serving_options import (
    add_model_option,
)
from loadtests.options import (
    POSITIVE_INT,
    CommandParser,
    Subcommands,
    examples,
)

COMMANDS: Final = ("batch score",)


def add_parser(commands: Subcommands) -> None:
    batch = commands.add_parser(
        "batch", help="batch scoring of files",
        epilog=examples(
            "servelab batch score rows.jsonl --out scores.jsonl",
            "servelab batch score parts/ --out scored/ --batch-size 1024",
        ),
    )  # fmt: skip
    batch_kinds = batch.add_subparsers(dest="kind", required=True, parser_class=CommandParser)
    score = batch_kinds.add_parser(
        "score", help="score a JSONL/CSV file or a directory of them",
        epilog=examples(
            "servelab batch score rows.jsonl --out scores.jsonl",
            "servelab batch score rows.csv --out scores.jsonl --errors bad.jsonl",
            "servelab batch score parts/ --out scored/ --batch-size 1024 --model synthetic:cpu:1ms",
        ),
    )  # fmt: skip
    score.add_argument(
        "input", metavar="INPUT", help="a .jsonl or .csv file, or a directory of them"
    )
    score.add_argument(
        "--out", required=True, metavar="OUTPUT",
        help="scores (JSONL), written atomically; with a directory INPUT, a directory (a re-run "
        "skips finished partitions)",
    )  # fmt: skip
    score.add_argument(
        "--batch-size", type=POSITIVE_INT, default=256, metavar="ROWS",
        help="rows per model call",
    )  # fmt: skip
    score.add_argument(
        "--errors",
        metavar="FILE",
        help="bad rows (default OUTPUT.errors.jsonl; with a directory INPUT, a directory, "
        "default OUTPUT)",
    )
    add_model_option(score)


def main(args: argparse.Namespace) -> int:
    from targets.batch import main as score

    return score(args)
