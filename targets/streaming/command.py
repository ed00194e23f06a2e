"""``servelab stream``: a JSONL source through the consumer into a JSONL sink. Stdlib only."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from pathlib import Path
from typing import BinaryIO, Final

from targets.batching import BatchingConfig
from targets.errors import InputError
from targets.files import user_path
from targets.models import Model
from targets.spec import load_model
from targets.streaming.consumer import StreamConsumer, StreamReport
from targets.streaming.sources import JsonLinesSink, LineSource

STDIO: Final = "-"
EXIT_MODEL_FAILURE: Final = 1


def format_summary(report: StreamReport) -> str:
    """The line ``servelab stream`` prints to stderr when the source ends."""
    return (
        f"stream: {report.events} events, {report.bad} bad, {report.failed} failed; "
        f"{report.batches} batches (mean {report.mean_batch_rows:.1f} rows); "
        f"latency p50 {report.latency_p50_ms:.3f} ms, p99 {report.latency_p99_ms:.3f} ms; "
        f"{report.elapsed_s:.3f} s"
    )


def _check_args(args: argparse.Namespace) -> None:
    if not (math.isfinite(args.idle_exit_s) and args.idle_exit_s > 0):
        raise InputError(
            f"--idle-exit-s must be a positive number of seconds, got {args.idle_exit_s}"
        )
    if args.follow and args.input == STDIO:
        raise InputError("--follow needs --input FILE (stdin is read as it arrives without it)")
    if args.input != STDIO and not Path(args.input).is_file():
        raise InputError(f"--input {args.input!r} does not exist or is not a regular file")


async def _consume(
    model: Model, config: BatchingConfig, source: LineSource, sink: JsonLinesSink
) -> StreamReport:
    async with StreamConsumer(model, config=config) as consumer:
        return await consumer.run(source, sink)


def main(args: argparse.Namespace) -> int:
    """Consume ``--input`` into ``--out``; 0 when done (bad events included), 1 when the model
    failed on any event. Bad options and files that cannot be opened are raised as
    ``InputError``/``SpecError`` for ``loadtests.cli.app``."""
    _check_args(args)
    config = BatchingConfig(
        max_batch_rows=args.batch_size,
        window_s=args.window_ms / 1e3,
        queue_size=args.queue_size,
    )
    model = load_model(args.model)
    with contextlib.ExitStack() as stack:
        if args.input == STDIO:
            source = LineSource(sys.stdin.buffer.fileno(), in_thread=True)
        else:
            with user_path("read", "--input", args.input):
                handle = stack.enter_context(Path(args.input).open("rb"))
            source = LineSource(handle.fileno(), follow=args.follow, idle_exit_s=args.idle_exit_s)
        out: BinaryIO = sys.stdout.buffer
        if args.out != STDIO:
            with user_path("write", "--out", args.out):
                out = stack.enter_context(Path(args.out).open("wb"))
        # Live input (a followed file, stdin) gets live output: one flush per line.
        sink = JsonLinesSink(out, flush_each_line=args.follow or args.input == STDIO)
        report = asyncio.run(_consume(model, config, source, sink))
        out.flush()
    print(format_summary(report), file=sys.stderr)
    return EXIT_MODEL_FAILURE if report.failed else 0
