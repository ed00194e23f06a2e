"""``servelab freshness``: scheduled backfills against streaming, on real freshness."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.options import (
    NON_NEGATIVE_DURATION,
    POSITIVE,
    POSITIVE_DURATION,
    POSITIVE_INT,
    SEED,
    Range,
    Subcommands,
    add_gate_options,
    examples,
)

COMMANDS: Final = ("freshness",)
SAMPLE_ROWS = Range("int", low=4)
_NAMES: Final = {
    "schedules": "--schedules", "windows": "--windows", "horizon": "--horizon",
    "rate": "--rate", "bound_rows": "--sample-rows",
}  # fmt: skip


def add_parser(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "freshness", help="batch backfills vs streaming: how old each prediction is",
        description="Events arrive at --rate (seeded Poisson). Each streaming window runs the "
        "streaming target for real; each backfill schedule runs on virtual time with every "
        "run's makespan measured on the batch target. One result file, for servelab report.",
        epilog=examples(
            "servelab freshness --rate 50 --schedules 15m,1h,24h --windows 2ms,20ms "
            "--out results/freshness.json",
            "servelab report results/freshness.json --out report",
        ),
    )  # fmt: skip
    parser.add_argument("--rate", type=POSITIVE, default=50.0, metavar="R",
                        help="events per second (Poisson arrivals)")  # fmt: skip
    parser.add_argument(
        "--schedules", default="15m,1h,24h", metavar="I[,I...]",
        help="backfill intervals, durations (15m, 1h, 24h); each at least 1s",
    )  # fmt: skip
    parser.add_argument(
        "--windows", default="2ms,20ms", metavar="W[,W...]",
        help="streaming micro-batch windows, durations (2ms, 20ms); 0..60000 ms",
    )  # fmt: skip
    parser.add_argument(
        "--horizon", type=POSITIVE_DURATION, default=None, metavar="DURATION",
        help="virtual time the schedules run over (default: the longest interval; at most 7 days)",
    )  # fmt: skip
    parser.add_argument(
        "--sample-rows", type=SAMPLE_ROWS, default=20_000, metavar="N",
        help="a backfill run of up to N rows is scored at its real size; past that its "
        "makespan is scaled from samples of N/4 and N rows",
    )  # fmt: skip
    parser.add_argument("--stream-duration", type=POSITIVE_DURATION, default=5.0,
                        metavar="DURATION", help="measured streaming time per window")  # fmt: skip
    parser.add_argument("--warmup", type=NON_NEGATIVE_DURATION, default=0.5, metavar="DURATION",
                        help="streaming warm-up per window, not measured")  # fmt: skip
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=256, metavar="ROWS",
                        help="the batch job's rows per model call")  # fmt: skip
    parser.add_argument("--model", default="reference", metavar="SPEC",
                        help="the model both targets serve")  # fmt: skip
    parser.add_argument("--seed", type=SEED, default=42, help="arrivals and payloads")
    parser.add_argument("--label", help="free text naming the run")
    parser.add_argument("--out", metavar="FILE", help="result file "
                        "(default: results/freshness-STAMP.json)")  # fmt: skip
    add_gate_options(parser)


def main(args: argparse.Namespace) -> int:
    import datetime as dt
    import sys
    from pathlib import Path

    from loadtests.cli.run import gate_lines
    from loadtests.jobs.freshness import FreshnessJob, freshness_output
    from loadtests.jobs.freshness_spec import FreshnessSpec, durations_s
    from loadtests.options import gate_expressions
    from loadtests.results.freshness import duration_text, points_of
    from loadtests.results.gates import result_exit_code
    from targets.spec import load_model

    spec = FreshnessSpec(
        schedules_s=durations_s(args.schedules, "--schedules"),
        windows_ms=tuple(s * 1e3 for s in durations_s(args.windows, "--windows")),
        horizon_s=args.horizon,
        bound_rows=int(args.sample_rows),
        stream_duration_s=args.stream_duration,
        stream_warmup_s=args.warmup,
    )
    spec.check(args.rate, names=_NAMES)
    load_model(args.model)  # a bad SPEC: one line naming it (SpecError), before any load
    gates = gate_expressions(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / f"freshness-{stamp}.json"
    job = FreshnessJob(
        spec, args.rate, model=args.model, seed=args.seed, batch_size=int(args.batch_size),
        label=args.label,
    )  # fmt: skip
    output = freshness_output(
        job, out=out, gates=gates, say=lambda line: print(line, file=sys.stderr)
    )
    result = output.result
    print(f"{'point':<16} {'freshness p50':>14} {'p99':>12}  {'CPU-s/1k':>9}")
    for point in points_of(result):
        cost = "-" if point.cpu_s_per_1k is None else f"{point.cpu_s_per_1k:.4f}"
        print(f"{point.label:<16} {duration_text(point.p50_s):>14} "
              f"{duration_text(point.p99_s):>12}  {cost:>9}")  # fmt: skip
    verdict = result["verdict"]
    print(f"{'VALID' if verdict['valid'] else 'INVALID: ' + '; '.join(verdict['reasons'])} → {out}")
    for line in gate_lines(output.checks):
        print(line, file=sys.stderr)
    return result_exit_code(result, output.breached, allow_invalid=args.allow_invalid)
