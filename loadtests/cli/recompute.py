"""``servelab recompute EVENTS --out FILE``: a result file rebuilt from an event log."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.options import Subcommands, examples

COMMANDS: Final = ("recompute",)


def add_parser(commands: Subcommands) -> None:
    recompute = commands.add_parser(
        "recompute", help="rebuild a result file from an event log",
        epilog=examples(
            "servelab run --target inprocess --duration 5s --events events.jsonl",
            "servelab recompute events.jsonl --out recomputed.json",
        ),
    )  # fmt: skip
    recompute.add_argument("events", metavar="EVENTS", help="a log from `servelab run --events`")
    recompute.add_argument("--out", required=True, metavar="FILE", help="result file to write")


def main(args: argparse.Namespace) -> int:
    from loadtests.results.events import recompute_result
    from loadtests.results.result import write_result

    result = recompute_result(args.events)
    write_result(args.out, result)
    summary, extra = result["summary"], result["extra"]
    state = "partial" if result["run"]["partial"] else "complete"
    print(
        f"recomputed {summary['requests']} requests ({summary['failures']} failures, "
        f"{extra['torn_lines']} torn line(s) dropped, {state} run) from {args.events} → {args.out}"
    )
    return 0
