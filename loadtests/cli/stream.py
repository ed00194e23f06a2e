"""``servelab stream``: event-driven micro-batched inference over JSON lines."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.cli.serving_options import (
    add_batching_options,
    add_model_option,
)
from loadtests.options import (
    POSITIVE,
    Subcommands,
    examples,
)

COMMANDS: Final = ("stream",)


def add_parser(commands: Subcommands) -> None:
    stream = commands.add_parser(
        "stream", help="event-driven micro-batched inference",
        epilog=examples(
            "servelab stream --input events.jsonl --out answers.jsonl",
            "servelab stream --input events.jsonl --follow --idle-exit-s 5 --window-ms 2",
            "servelab stream < events.jsonl",
        ),
    )  # fmt: skip
    stream.add_argument(
        "--input", default="-", metavar="FILE|-",
        help="JSON requests, one per line (-: stdin)",
    )  # fmt: skip
    stream.add_argument(
        "--out", default="-", metavar="FILE|-",
        help="answers in input order, one per line (-: stdout)",
    )  # fmt: skip
    stream.add_argument("--follow", action="store_true", help="keep reading a growing file")
    stream.add_argument(
        "--idle-exit-s",
        type=POSITIVE,
        default=2.0,
        metavar="S",
        help="with --follow: stop after this long without new events",
    )
    add_batching_options(stream, 32, 5.0)
    add_model_option(stream)


def main(args: argparse.Namespace) -> int:
    from targets.streaming import main as consume

    return consume(args)
