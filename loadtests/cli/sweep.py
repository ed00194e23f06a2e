"""``servelab sweep``: capacity search under a p99 SLO."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Final

from loadtests.drivers.registry import TARGETS
from loadtests.options import (
    FRACTION,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_DURATION,
    POSITIVE_INT,
    SEED,
    Range,
    Subcommands,
    add_protocol_options,
    add_target_options,
    examples,
    protocol_options,
)
from targets.spec import DEFAULT_MODEL_SPEC

if TYPE_CHECKING:
    from loadtests.jobs.sweep import SweepSettings

COMMANDS: Final = ("sweep",)
RATE = POSITIVE  # requests/s
WINDOWS = Range("int", low=2)  # the sweep compares consecutive windows


def add_parser(commands: Subcommands) -> None:
    sweep = commands.add_parser(
        "sweep", help="capacity search under a p99 SLO",
        epilog=examples(
            "servelab sweep --target rest --slo-p99 50ms --model synthetic:cpu:2ms",
            "servelab sweep --target inprocess --slo-p99 10ms --start-rate 200 --max-rate 1000",
        ),
    )  # fmt: skip
    sweep.add_argument(
        "--target", required=True, choices=list(TARGETS), help="what to load, as for servelab run"
    )
    add_target_options(sweep)
    add_protocol_options(sweep)
    sweep.add_argument(
        "--slo-p99", type=POSITIVE_DURATION, default=0.05, metavar="D",
        help="the p99 each rate must meet, e.g. 50ms (default 50ms)",
    )  # fmt: skip
    sweep.add_argument(
        "--schema-target", type=FRACTION, default=0.999, metavar="F",
        help="the schema success rate each rate must reach",
    )  # fmt: skip
    sweep.add_argument(
        "--start-rate", type=RATE, default=50.0, metavar="R",
        help="first rate, requests/s; doubled until a point fails",
    )  # fmt: skip
    sweep.add_argument(
        "--max-rate", type=RATE, default=20_000.0, metavar="R",
        help="highest rate tried, requests/s",
    )  # fmt: skip
    sweep.add_argument(
        "--windows", type=WINDOWS, default=3, metavar="N",
        help="consecutive 1-second windows that must agree for a point to be stable",
    )  # fmt: skip
    sweep.add_argument(
        "--attempts", type=POSITIVE_INT, default=3, metavar="N",
        help="measurements of a point before it is flagged unstable",
    )  # fmt: skip
    sweep.add_argument(
        "--precision", type=OPEN_FRACTION, default=0.05, metavar="F",
        help="the binary search stops when pass and fail rates are this close (relative)",
    )  # fmt: skip
    sweep.add_argument(
        "--seed", type=SEED, default=42, help="payloads: the same seed gives the same load"
    )
    sweep.add_argument(
        "--out", metavar="DIR",
        help="point results, sweep.json and sweep.png (default results/sweep-TARGET-TIME)",
    )  # fmt: skip


def sweep_settings(args: argparse.Namespace) -> SweepSettings:
    from loadtests.jobs.safety import check_target_allowed
    from loadtests.jobs.sweep import SweepSettings

    for option, value in (("--url", args.url), ("--address", args.address)):
        if value:
            check_target_allowed(value, allow_remote=args.allow_remote, option=option)
    return SweepSettings(
        target=args.target,
        model=args.model or DEFAULT_MODEL_SPEC,
        model_given=args.model is not None,
        slo_p99_ms=args.slo_p99 * 1e3,
        schema_target=args.schema_target,
        start_rate=args.start_rate,
        max_rate=args.max_rate,
        windows=args.windows,
        attempts=args.attempts,
        precision=args.precision,
        url=args.url,
        address=args.address,
        seed=args.seed,
        allow_remote=args.allow_remote,
        protocol=args.protocol,
        protocol_options=protocol_options(args),
        cacert=args.cacert,
        insecure=args.insecure,
    )


def main(args: argparse.Namespace) -> int:
    from loadtests.jobs.sweep import draw_curve, run_sweep, sweep_exit_code

    settings = sweep_settings(args)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out) if args.out else Path("results") / f"sweep-{settings.target}-{stamp}"
    summary = run_sweep(settings, out_dir)
    for point in summary["points"]:
        state = "ok  " if point["passed"] else "FAIL"
        flag = "" if point["stable"] else "  (unstable)"
        print(
            f"{state} {point['phase']:6s} {point['rate']:>9.1f}/s → {point['throughput_rps']:>9.1f}"
            f"/s  p99 {point['p99_ms']:8.2f} ms{flag}  {'; '.join(point['reasons'])}"
        )
    capacity = summary["capacity_rps"]
    print(
        f"capacity at p99 <= {settings.slo_p99_ms:g} ms: "
        + (f"{capacity:g} req/s" if capacity is not None else "none (the first step failed)")
        + (" (bounded by --max-rate)" if summary["bounded_by_max_rate"] else "")
    )
    if summary["knee_rps"] is not None:
        print(f"knee: {summary['knee_rps']:g} req/s")
    print(f"curve: {draw_curve(summary, out_dir)}")
    print(f"sweep: {out_dir / 'sweep.json'}")
    return sweep_exit_code(summary)
