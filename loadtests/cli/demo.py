"""``servelab demo``: start every target and answer once through each pattern."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.options import Subcommands, examples
from targets.spec import DEFAULT_MODEL_SPEC

COMMANDS: Final = ("demo",)


def add_parser(commands: Subcommands) -> None:
    demo = commands.add_parser(
        "demo", help="start every target and answer through each",
        epilog=examples("servelab demo", "servelab demo --model synthetic:fixed:2ms"),
    )  # fmt: skip
    demo.add_argument(
        "--model", default=DEFAULT_MODEL_SPEC, metavar="SPEC", help="the model every target serves"
    )


def main(args: argparse.Namespace) -> int:
    from loadtests.jobs.demo import run_demo

    return run_demo(args.model)
