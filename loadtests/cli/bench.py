"""``servelab bench``: the main job — every pattern measured, then the report."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from pathlib import Path
from typing import Final

from loadtests.options import POSITIVE_INT, Subcommands, add_gate_options, examples
from targets.spec import DEFAULT_MODEL_SPEC

COMMANDS: Final = ("bench",)


def add_parser(commands: Subcommands) -> None:
    bench = commands.add_parser(
        "bench", help="the main job: every pattern, measured and reported",
        epilog=examples(
            "servelab bench --quick",
            "servelab bench --quick --repeat 2 --threshold 'schema_success_rate>=0.999' "
            "--out results/nightly",
            "servelab bench --config examples/bench.toml",
        ),
    )  # fmt: skip
    bench.add_argument("--config", metavar="FILE", help="benchmark config (TOML)")
    bench.add_argument("--quick", action="store_true", help="short runs (~25 s in all)")
    bench.add_argument("--out", metavar="DIR", help="results and report (default results/bench-*)")
    bench.add_argument(
        "--model", default=DEFAULT_MODEL_SPEC, metavar="SPEC",
        help="the model of the embedded config (a --config names its own)",
    )  # fmt: skip
    bench.add_argument("--repeat", type=POSITIVE_INT, metavar="N", help="run each cell N times")
    add_gate_options(bench)


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from loadtests.jobs.bench import run_bench, summary_table, write_report
    from loadtests.jobs.bench_config import default_config, load_config

    config = (
        load_config(args.config)
        if args.config
        else default_config(quick=args.quick, model=args.model)
    ).with_overrides(repeat=args.repeat, thresholds=args.threshold)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"bench-{stamp}"
    console = Console(width=None if sys.stdout.isatty() else 132)
    # Between runs (server start-up, report) SIGTERM acts as Ctrl-C: finished results are kept
    # and the shared servers stopped; during a run the harness's own handler takes over.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        outcome = run_bench(
            config, out_dir, console,
            default_gate=not args.no_default_gate, allow_invalid=args.allow_invalid,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(summary_table(outcome))
    report = write_report(
        [path for _, path, _ in outcome.results],
        out_dir / "report",
        f"servelab bench — {config.source}",
    )
    if report is not None:
        console.print(f"report: {report}", highlight=False)
    console.print(f"results: {out_dir}", highlight=False)
    for breach in outcome.breaches:
        print(f"threshold breached: {breach}", file=sys.stderr)
    if outcome.interrupted:
        print("servelab bench: interrupted; finished results kept", file=sys.stderr)
    return outcome.exit_code
