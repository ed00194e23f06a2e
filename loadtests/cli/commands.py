"""The full ``servelab`` command: the targets' commands plus ``run`` (and, as they land, the
report and bench commands). Option errors are one line and exit code 2 (``loadtests.cli.app.dispatch``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loadtests.cli.app import (
    FRACTION,
    HANDLERS,
    NON_NEGATIVE,
    NON_NEGATIVE_DURATION,
    NON_NEGATIVE_INT,
    OPEN_FRACTION,
    POSITIVE,
    POSITIVE_DURATION,
    POSITIVE_INT,
    SEED,
    WINDOW_MS,
    Range,
    RangePair,
    StageList,
    Subcommands,
    add_target_commands,
    dispatch,
    examples,
    new_parser,
)
from loadtests.engine.loop import run as run_on_loop
from loadtests.results.gates import DEFAULT_GATE, result_exit_code, with_default_gate
from targets.spec import DEFAULT_MODEL_SPEC

if TYPE_CHECKING:
    from loadtests.jobs.run import RunOutput, RunSettings
    from loadtests.jobs.sweep import SweepSettings
    from loadtests.results.thresholds import Check

COMMANDS = {
    **HANDLERS,
    "run": "loadtests.cli.commands:run_main",
    "demo": "loadtests.jobs.demo:main",
    "report": "loadtests.cli.report:report_main",
    "compare": "reports.compare:main",
    "bench": "loadtests.jobs.bench:main",
    "sweep": "loadtests.jobs.sweep:main",
    "locust": "loadtests.cli.locust:locust_main",
    "import-locust": "loadtests.cli.locust:import_main",
    "recompute": "loadtests.results.events:recompute_main",
}


# Each numeric option's valid values, declared once (``loadtests.cli.app.Range``); tests read them.
_RATE = POSITIVE  # requests/s of an open loop
_STAGES = StageList(duration=POSITIVE_DURATION, rate=NON_NEGATIVE)  # rate 0: an idle gap
_V2_SHARE = RangePair(FRACTION, names=("START", "END"))  # a rollout may also go down
_INSTANCES = RangePair(NON_NEGATIVE_INT, names=("MIN", "MAX"), ordered=True)
_WINDOWS = Range("int", low=2)  # the sweep compares consecutive windows


def add_run_command(commands: Subcommands) -> None:
    from loadtests.engine.harness import DEFAULT_GRACE_S
    from loadtests.jobs.run import TARGETS

    run = commands.add_parser(
        "run", help="one measured run of one target",
        epilog=examples(
            "servelab run --target inprocess --duration 5s",
            "servelab run --target rest --rate 200 --arrival poisson --duration 10s --out r.json",
            "servelab run --target grpc --concurrency 16 --requests 5000 --threshold 'p99<50ms'",
        ),
    )  # fmt: skip
    run.add_argument(
        "--target", required=True, choices=TARGETS,
        help="what to load; rest, grpc, grpc-stream and edge get a target started on loopback "
        "unless --url/--address names one",
    )  # fmt: skip
    add_target_options(run)
    load = run.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency", type=POSITIVE_INT, metavar="N", help="closed loop (default 8)"
    )
    load.add_argument("--rate", type=_RATE, metavar="R", help="open loop, requests/s")
    load.add_argument("--stages", type=_STAGES, metavar="D:R,...", help="open loop, stepped rate")
    load.add_argument("--trace", metavar="FILE", help="open loop, replay timestamps (s per line)")
    run.add_argument("--ramp", action="store_true", help="with --stages: ramp between rates")
    run.add_argument(
        "--arrival", choices=["constant", "poisson"], default="constant",
        help="open loop: evenly spaced sends, or Poisson arrivals",
    )  # fmt: skip
    run.add_argument(
        "--think-time", type=NON_NEGATIVE_DURATION, default=0.0, metavar="D",
        help="closed loop: pause between an answer and the next request (default 0: none)",
    )  # fmt: skip
    run.add_argument(
        "--busy-poll", action="store_true",
        help="spin instead of sleeping between answers (a target on this machine is not "
        "charged for waking the client); costs one client core",
    )  # fmt: skip
    bound = run.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration", type=POSITIVE_DURATION, metavar="D",
        help="measure this long, e.g. 10s (default: 10s)",
    )  # fmt: skip
    bound.add_argument("--requests", type=POSITIVE_INT, metavar="N", help="measure N requests")
    run.add_argument(
        "--warmup", type=NON_NEGATIVE_DURATION, default=0.0, metavar="D",
        help="load this long first, not recorded (default 0: none)",
    )  # fmt: skip
    run.add_argument(
        "--seed", type=SEED, default=42,
        help="payloads and schedule: the same seed gives the same load",
    )  # fmt: skip
    run.add_argument("--api", choices=["v1", "v2"], default="v1", help="the payloads' API")
    run.add_argument(
        "--v2-share", type=_V2_SHARE, metavar="S[:E]",
        help="share of v2 payloads, or a rollout from S to E over the run (replaces --api)",
    )  # fmt: skip
    run.add_argument(
        "--instances", type=_INSTANCES, default=(8, 8), metavar="N[:M]",
        help="features per row: N, or uniform in N..M (default 8)",
    )  # fmt: skip
    run.add_argument(
        "--rows-per-request", type=POSITIVE_INT, default=1, metavar="N",
        help="rows in a v2 request (a v1 request carries one)",
    )  # fmt: skip
    run.add_argument(
        "--invalid-fraction", type=FRACTION, default=0.0, metavar="F",
        help="share of deliberately invalid payloads: expected rejections, not failures",
    )  # fmt: skip
    run.add_argument(
        "--distinct", type=POSITIVE_INT, default=4096, metavar="N",
        help="distinct payloads, cycled (few: repeats, which the edge cache notices)",
    )  # fmt: skip
    run.add_argument(
        "--batch-size", type=POSITIVE_INT, metavar="N",
        help="stream and batch targets: rows per batch (default 32 stream, 256 batch)",
    )  # fmt: skip
    run.add_argument(
        "--window-ms", type=WINDOW_MS, metavar="MS",
        help="stream target: micro-batching window (default 5)",
    )  # fmt: skip
    run.add_argument(
        "--connections", type=POSITIVE_INT, metavar="N",
        help="rest: connections, grpc: channels (default 1), grpc-stream: streams, batch: "
        "threads (default: the concurrency, or rate/100 within 4..64)",
    )  # fmt: skip
    run.add_argument(
        "--timeout", type=POSITIVE_DURATION, default=30.0, metavar="D",
        help="a request slower than this fails as a timeout (default 30s)",
    )  # fmt: skip
    run.add_argument(
        "--grace", type=NON_NEGATIVE_DURATION, default=DEFAULT_GRACE_S, metavar="D",
        help="after the run, how long requests still in flight may take; then they are cut "
        f"and count as timeouts (default {DEFAULT_GRACE_S:g}s)",
    )  # fmt: skip
    add_gate_options(run)
    run.add_argument(
        "--loop", choices=["harness", "tight"], default="harness",
        help="inprocess only: tight = the model called back to back (1 caller, no JSON)",
    )  # fmt: skip
    run.add_argument(
        "--client", choices=["auto", "fast", "aiohttp"], default="auto",
        help="REST client: fast (HTTP/1.1 on asyncio + httptools; auto for http://) or aiohttp",
    )  # fmt: skip
    run.add_argument("--label", help="free text the result records; reports group runs by it")
    run.add_argument(
        "--profile", metavar="NAME",
        help="hardware profile name the result records; reports compare runs by it",
    )  # fmt: skip
    run.add_argument(
        "--target-pid", type=POSITIVE_INT, metavar="PID", help="count this process's CPU"
    )
    run.add_argument(
        "--allow-remote", action="store_true", help="allow a --url/--address off loopback"
    )
    run.add_argument(
        "--out", metavar="FILE", help="the result file (default results/run-TARGET-TIME.json)"
    )
    run.add_argument("--events", metavar="FILE", help="log every request as JSON lines here")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument(
        "--no-progress", action="store_true", help="no live progress line on a terminal"
    )


def settings_from_args(args: argparse.Namespace) -> RunSettings:
    from loadtests.engine.harness import LoadPlan
    from loadtests.engine.schedule import RateProfile, read_trace
    from loadtests.engine.workload import PayloadSpec
    from loadtests.jobs.run import RunSettings

    if args.ramp and not args.stages:
        raise ValueError("--ramp needs --stages")
    duration = args.duration if args.duration is not None or args.requests else 10.0
    if args.rate or args.stages or args.trace:
        profile = None
        if args.rate:
            profile = RateProfile.constant(args.rate)
        elif args.stages:
            profile = RateProfile.steps(args.stages, ramp=args.ramp)
        trace = read_trace(args.trace) if args.trace else None
        plan = LoadPlan(
            mode="open",
            profile=profile,
            arrival=args.arrival,
            trace_offsets_ns=trace,
            duration_s=duration,
            requests=args.requests,
            warmup_s=args.warmup,
            busy_poll=args.busy_poll,
            drain_timeout_s=args.grace,
        )
    else:
        plan = LoadPlan(
            mode="closed",
            concurrency=args.concurrency or (1 if args.loop == "tight" else 8),
            think_time_s=args.think_time,
            duration_s=duration,
            requests=args.requests,
            warmup_s=args.warmup,
            busy_poll=args.busy_poll,
            drain_timeout_s=args.grace,
        )
    min_instances, max_instances = args.instances
    share_start, share_end = args.v2_share or ((1.0, None) if args.api == "v2" else (0.0, None))
    payloads = PayloadSpec(
        min_instances=min_instances,
        max_instances=min_instances if max_instances is None else max_instances,
        rows_per_request=args.rows_per_request,
        invalid_fraction=args.invalid_fraction,
        v2_share_start=share_start,
        v2_share_end=share_end,
        distinct=args.distinct,
    )
    return RunSettings(
        target=args.target,
        model=args.model or DEFAULT_MODEL_SPEC,
        model_given=args.model is not None,
        url=args.url,
        address=args.address,
        plan=plan,
        payloads=payloads,
        seed=args.seed,
        api=args.api if args.v2_share is None else "mix",
        batch_size=args.batch_size,
        window_ms=args.window_ms,
        connections=args.connections,
        http_client=args.client,
        loop=args.loop,
        timeout_s=args.timeout,
        label=args.label,
        profile=args.profile,
        target_pid=args.target_pid,
        allow_remote=args.allow_remote,
    )


def run_main(args: argparse.Namespace) -> int:
    from loadtests.cli.display import LiveProgress, print_summary
    from loadtests.jobs.run import execute

    if args.events and args.loop == "tight":
        raise ValueError("--events needs the harness loop: --loop tight records no event lines")
    settings = settings_from_args(args)
    gates = gate_expressions(args)  # a malformed threshold is exit 2, before any load
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / f"run-{args.target}-{stamp}.json"
    events = Path(args.events) if args.events else None
    interactive = sys.stderr.isatty() and not args.no_progress and not args.json

    async def go() -> RunOutput:
        def announce(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        if not interactive:
            return await execute(
                settings, out=out, install_signal_handlers=True, announce=announce,
                events=events, gates=gates,
            )  # fmt: skip
        with LiveProgress(scheduled_rate=settings.rate_per_s) as progress:
            return await execute(
                settings, out=out, on_tick=progress, install_signal_handlers=True,
                announce=announce, events=events, gates=gates,
            )  # fmt: skip

    # Outside the harness (target start-up and shutdown) SIGTERM acts as Ctrl-C, so the target
    # servelab started is still stopped; during the load the harness's own handler takes over.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        output = run_on_loop(go())
    finally:
        signal.signal(signal.SIGTERM, previous)
    result = output.result
    print_summary(result, str(out), as_json=args.json, rich=sys.stdout.isatty())
    for line in gate_lines(output.checks):
        print(line, file=sys.stderr)
    return result_exit_code(result, output.breached, allow_invalid=args.allow_invalid)


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """--url | --address and --model: the same on run and sweep."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="REST base URL (default: start a target on loopback)")
    where.add_argument("--address", help="gRPC HOST:PORT (default: start a target on loopback)")
    parser.add_argument(
        "--model", metavar="SPEC",
        help=f"the model a target servelab starts serves (default {DEFAULT_MODEL_SPEC}); with "
        "--url/--address, names the model the results record (else unknown)",
    )  # fmt: skip


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """--threshold, --no-default-gate and --allow-invalid: the same on run, bench and locust."""
    parser.add_argument(
        "--threshold", action="append", default=[], metavar="EXPR",
        help="gate the run (repeatable), e.g. 'p99<50ms', 'success_rate>=0.999'; a breach "
        f"exits 1. Default gate: {DEFAULT_GATE}, replaced by your own success_rate/fail_ratio",
    )  # fmt: skip
    parser.add_argument(
        "--no-default-gate", action="store_true",
        help=f"drop the default gate ({DEFAULT_GATE})",
    )  # fmt: skip
    parser.add_argument(
        "--allow-invalid", action="store_true",
        help="exit 0/1 by the gates even when the measurement is INVALID (default: exit 3)",
    )  # fmt: skip


def gate_expressions(args: argparse.Namespace) -> list[str]:
    """The run's gates: the default one unless replaced or refused, then the user's, checked
    for form now (exit 2) so a typo never costs a run."""
    from loadtests.results.thresholds import parse_thresholds

    expressions = with_default_gate(args.threshold, default_gate=not args.no_default_gate)
    parse_thresholds(expressions, allow_relative=False)
    return expressions


def gate_lines(checks: Sequence[Check]) -> list[str]:
    return [
        f"servelab: gate {'ok' if c.passed else 'BREACHED'} {c.expression!r}: {c.detail}"
        for c in checks
    ]


def add_bench_command(commands: Subcommands) -> None:
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


def add_sweep_command(commands: Subcommands) -> None:
    from loadtests.jobs.run import TARGETS

    sweep = commands.add_parser(
        "sweep", help="capacity search under a p99 SLO",
        epilog=examples(
            "servelab sweep --target rest --slo-p99 50ms --model synthetic:cpu:2ms",
            "servelab sweep --target inprocess --slo-p99 10ms --start-rate 200 --max-rate 1000",
        ),
    )  # fmt: skip
    sweep.add_argument(
        "--target", required=True, choices=TARGETS, help="what to load, as for servelab run"
    )
    add_target_options(sweep)
    sweep.add_argument(
        "--slo-p99", type=POSITIVE_DURATION, default=0.05, metavar="D",
        help="the p99 each rate must meet, e.g. 50ms (default 50ms)",
    )  # fmt: skip
    sweep.add_argument(
        "--schema-target", type=FRACTION, default=0.999, metavar="F",
        help="the schema success rate each rate must reach",
    )  # fmt: skip
    sweep.add_argument(
        "--start-rate", type=_RATE, default=50.0, metavar="R",
        help="first rate, requests/s; doubled until a point fails",
    )  # fmt: skip
    sweep.add_argument(
        "--max-rate", type=_RATE, default=20_000.0, metavar="R",
        help="highest rate tried, requests/s",
    )  # fmt: skip
    sweep.add_argument(
        "--windows", type=_WINDOWS, default=3, metavar="N",
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
        "--allow-remote", action="store_true", help="allow a --url/--address off loopback"
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
    )


def build_parser() -> argparse.ArgumentParser:
    """The whole ``servelab`` parser: every command, every option (tests walk it)."""
    parser, commands = new_parser()
    add_target_commands(commands)
    add_run_command(commands)
    demo = commands.add_parser(
        "demo", help="start every target and answer through each",
        epilog=examples("servelab demo", "servelab demo --model synthetic:fixed:2ms"),
    )  # fmt: skip
    demo.add_argument(
        "--model", default=DEFAULT_MODEL_SPEC, metavar="SPEC", help="the model every target serves"
    )
    add_bench_command(commands)
    add_sweep_command(commands)
    from loadtests.cli.report import add_report_commands

    add_report_commands(commands)
    from loadtests.cli.locust import add_locust_commands

    add_locust_commands(commands)
    from loadtests.results.events import add_recompute_command

    add_recompute_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
