"""``servelab run``: one measured run of one target. The options are turned into settings by
the one builder (``loadtests.jobs.settings``) every other caller uses too."""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from loadtests.drivers.registry import TARGETS
from loadtests.errors import LoadOptionError
from loadtests.options import (
    NON_NEGATIVE,
    NON_NEGATIVE_DURATION,
    POSITIVE,
    POSITIVE_DURATION,
    POSITIVE_INT,
    SEED,
    V2_SHARE,
    WINDOW_MS,
    Range,
    StageList,
    Subcommands,
    add_gate_options,
    add_payload_options,
    add_protocol_options,
    add_target_options,
    examples,
    gate_expressions,
    protocol_options,
)
from targets.edge.config import RUNTIMES as EDGE_RUNTIMES
from targets.spec import DEFAULT_MODEL_SPEC

if TYPE_CHECKING:
    from loadtests.jobs.run import RunOutput
    from loadtests.jobs.settings import RunSettings
    from loadtests.results.document import ResultDocument
    from loadtests.results.thresholds import Check

COMMANDS: Final = ("run",)
# Each numeric option's valid values, declared once (``loadtests.options.Range``); tests read them.
RATE = POSITIVE  # requests/s of an open loop
PROCESSES = Range("int", low=1, high=256)  # generator processes (jobs/processes.py)
STAGES = StageList(duration=POSITIVE_DURATION, rate=NON_NEGATIVE)  # rate 0: an idle gap


def add_parser(commands: Subcommands) -> None:
    run = commands.add_parser(
        "run", help="one measured run of one target",
        epilog=examples(
            "servelab run --target inprocess --duration 5s",
            "servelab run --target rest --rate 200 --arrival poisson --duration 10s --out r.json",
            "servelab run --target grpc --concurrency 16 --requests 5000 --threshold 'p99<50ms'",
        ),
    )  # fmt: skip
    served = [name for name, target in TARGETS.items() if target.server is not None]
    run.add_argument(
        "--target", required=True, choices=list(TARGETS),
        help=f"what to load; {', '.join(served[:-1])} and {served[-1]} get a target started on "
        "loopback unless --url/--address names one",
    )  # fmt: skip
    add_target_options(run)
    run.add_argument(
        "--metrics-url", metavar="URL",
        help="the target's Prometheus endpoint, scraped during the window (loopback unless "
        "--allow-remote); default: /metrics of a REST target servelab starts, or of --url "
        "with --protocol servelab, oip, kserve-v1 or bentoml (a 404 there: none)",
    )  # fmt: skip
    _add_load_options(run)
    add_payload_options(run.add_argument)
    run.add_argument(
        "--v2-share", type=V2_SHARE, metavar="S[:E]",
        help="share of v2 payloads, or a rollout from S to E over the run (replaces --api)",
    )  # fmt: skip
    _add_transport_options(run)
    add_protocol_options(run)
    add_gate_options(run)
    _add_output_options(run)


def _add_load_options(run: argparse.ArgumentParser) -> None:
    """Closed or open loop, how long, how seeded."""
    load = run.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency", type=POSITIVE_INT, metavar="N", help="closed loop (default 8)"
    )
    load.add_argument("--rate", type=RATE, metavar="R", help="open loop, requests/s")
    load.add_argument("--stages", type=STAGES, metavar="D:R,...", help="open loop, stepped rate")
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
    run.add_argument(
        "--processes", type=PROCESSES, default=1, metavar="N",
        help="split the load across N generator processes, pinned to distinct CPUs where there "
        "are enough: the concurrency shared out, or the schedule partitioned; one merged result",
    )  # fmt: skip


def _add_transport_options(run: argparse.ArgumentParser) -> None:
    """How the target is driven: batching, connections, timeouts, the loop and the client."""
    from loadtests.engine.harness import DEFAULT_GRACE_S

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
    run.add_argument(
        "--loop", choices=["harness", "tight"], default="harness",
        help="inprocess only: tight = the model called back to back (1 caller, no JSON)",
    )  # fmt: skip
    run.add_argument(
        "--client", choices=["auto", "fast", "aiohttp"], default="auto",
        help="REST client: fast (HTTP/1.1 on asyncio + httptools; auto for http://) or aiohttp",
    )  # fmt: skip
    run.add_argument(
        "--flaky-link", nargs="?", const="default", metavar="PROFILE",
        help="edge: put a fault proxy between the edge and its remote; PROFILE 'default' (down "
        "2 s of every 5, 10%% resets, +50 ms) or changes to it, e.g. down=1s/4s,reset=0%%",
    )  # fmt: skip
    run.add_argument(
        "--runtime", choices=EDGE_RUNTIMES, default="python",
        help="edge: what computes the model, Python or its WebAssembly module (wasmtime)",
    )  # fmt: skip
    run.add_argument(
        "--idle-timeout", type=POSITIVE_DURATION, metavar="D",
        help="function: the front servelab starts retires instances idle this long (its "
        "default: 60s)",
    )  # fmt: skip
    run.add_argument(
        "--max-function-instances", type=POSITIVE_INT, metavar="N",
        help="function: instances the front servelab starts may run at most (its default: 2)",
    )  # fmt: skip


def _add_output_options(run: argparse.ArgumentParser) -> None:
    """What the result records and where it goes."""
    run.add_argument("--label", help="free text the result records; reports group runs by it")
    run.add_argument(
        "--profile", metavar="NAME",
        help="hardware profile name the result records; reports compare runs by it",
    )  # fmt: skip
    run.add_argument(
        "--target-pid", type=POSITIVE_INT, metavar="PID", help="count this process's CPU"
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
    """``servelab run``'s options as settings, through the one builder."""
    from loadtests.engine.workload import PayloadSpec
    from loadtests.jobs.settings import (
        RunSettings,
        default_instances,
        function_front_args,
        load_plan,
    )

    plan = load_plan(  # --loop tight: one back-to-back caller per process
        concurrency=args.concurrency or (args.processes if args.loop == "tight" else None),
        rate=args.rate,
        stages=args.stages,
        ramp=args.ramp,
        trace=args.trace,
        arrival=args.arrival,
        duration_s=args.duration,
        requests=args.requests,
        warmup_s=args.warmup,
        think_time_s=args.think_time,
        busy_poll=args.busy_poll,
        grace_s=args.grace,
    )
    payloads = PayloadSpec.from_options(
        api=args.api,
        v2_share=args.v2_share,
        instances=args.instances or default_instances(args.model or DEFAULT_MODEL_SPEC),
        rows_per_request=args.rows_per_request,
        invalid_fraction=args.invalid_fraction,
        distinct=args.distinct,
        data=args.data,
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
        label=args.label or ("flaky-link" if args.flaky_link is not None else None),
        profile=args.profile,
        target_pid=args.target_pid,
        allow_remote=args.allow_remote,
        protocol=args.protocol,
        protocol_options=protocol_options(args),
        cacert=args.cacert,
        insecure=args.insecure,
        processes=args.processes,
        server_args=function_front_args(args.idle_timeout, args.max_function_instances),
        edge_runtime=args.runtime,
        flaky_link=args.flaky_link,
    )


def main(args: argparse.Namespace) -> int:
    from loadtests.cli.display import LiveProgress, print_summary
    from loadtests.engine.loop import run as run_on_loop
    from loadtests.jobs.processes import execute
    from loadtests.jobs.scrape import check_metrics_url
    from loadtests.results.gates import result_exit_code

    if args.events and args.loop == "tight":
        raise LoadOptionError(
            "--events needs the harness loop: --loop tight records no event lines"
        )
    settings = settings_from_args(args)
    gates = gate_expressions(args)  # a malformed threshold is exit 2, before any load
    if args.metrics_url:  # before any target is started
        check_metrics_url(args.metrics_url, allow_remote=args.allow_remote)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("results") / f"run-{args.target}-{stamp}.json"
    events = Path(args.events) if args.events else None
    interactive = (
        sys.stderr.isatty() and not args.no_progress and not args.json and args.processes == 1
    )  # the live line is one process's

    async def go() -> RunOutput:
        def announce(line: str) -> None:
            print(line, file=sys.stderr, flush=True)

        if not interactive:
            return await execute(
                settings, out=out, install_signal_handlers=True, announce=announce,
                events=events, gates=gates, metrics_url=args.metrics_url,
            )  # fmt: skip
        with LiveProgress(scheduled_rate=settings.rate_per_s) as progress:
            return await execute(
                settings, out=out, on_tick=progress, install_signal_handlers=True,
                announce=announce, events=events, gates=gates, metrics_url=args.metrics_url,
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
    hint = server_error_hint(result)
    if hint:
        print(hint, file=sys.stderr)
    return result_exit_code(result, output.breached, allow_invalid=args.allow_invalid)


def server_error_hint(result: ResultDocument) -> str | None:
    """When a foreign server answered nothing but 5xx, the likeliest cause: rows it cannot take
    (a model of 64 features sent 8), which a server may answer 500 rather than 4xx."""
    errors, summary = result["errors"], result["summary"]
    if result["run"].get("protocol", "servelab") == "servelab" or summary["successes"]:
        return None
    if not errors or not any(name.startswith("http_5") for name in errors):
        return None
    return (
        "servelab: no request succeeded and the server answered 5xx: do the rows fit its model? "
        "(--instances N, --model NAME for a learned model's width, --tensor, or --data FILE)"
    )


def gate_lines(checks: Sequence[Check]) -> list[str]:
    return [
        f"servelab: gate {'ok' if c.passed else 'BREACHED'} {c.expression!r}: {c.detail}"
        for c in checks
    ]
