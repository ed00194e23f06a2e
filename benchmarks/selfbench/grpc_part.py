"""gRPC: servelab's unary and bidi-stream drivers vs a bare grpc.aio client (``bare_grpc.py``),
same target, same concurrency, one channel — calls/s and client CPU per call."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks.selfbench.common import (
    Cores,
    Row,
    abba,
    row_from_result,
    run_child,
    servelab_run,
)

SECTION = "grpc"


def _bare(address: str, mode: str, cores: Cores, concurrency: int, seconds: float) -> Row:
    command = [sys.executable, "-m", "benchmarks.selfbench.bare_grpc", address, mode,
               str(concurrency), f"{seconds:g}"]  # fmt: skip
    finished = run_child(command, cpus=cores.client)
    if finished.returncode != 0:
        raise RuntimeError(f"bare grpc client failed: {finished.stderr.strip()[-300:]}")
    data = json.loads(finished.stdout.strip().splitlines()[-1])
    return Row(
        SECTION, f"bare grpc.aio {mode}", "gRPC target",
        rate_per_s=data["calls"] / data["wall_s"],
        cpu_us_per_request=data["cpu_s"] / data["calls"] * 1e6 if data["calls"] else None,
        client_counted=int(data["calls"]), note="nothing recorded",
    )  # fmt: skip


def measure(cores: Cores, work: Path, *, concurrency: int, seconds: float, pairs: int) -> list[Row]:
    """``pairs`` rounds of A B B A (servelab, bare, bare, servelab), each client's median
    kept: both calls/s are server-bound near the same figure, and drift on a shared machine is
    ±5 %."""
    from loadtests.jobs.launch import launch_target

    rows = []
    with launch_target("grpc", model_spec="reference") as target:
        if cores.server:
            os.sched_setaffinity(target.pid, cores.server)
        for mode, kind in (("unary", "grpc"), ("stream", "grpc-stream")):
            args = ["--target", kind, "--address", target.address, "--concurrency",
                    str(concurrency), "--duration", f"{seconds:g}s", "--warmup", "0s"]  # fmt: skip

            def ours(args: list[str] = args, kind: str = kind) -> Row:
                result, _ = servelab_run(args, out=work / f"servelab-{kind}.json",
                                         cpus=cores.client)  # fmt: skip
                return row_from_result(SECTION, f"servelab run --target {kind}", "gRPC target",
                                       result)  # fmt: skip

            def bare(mode: str = mode) -> Row:
                return _bare(target.address, mode, cores, concurrency, seconds)

            rows += abba(ours, bare, pairs)
    return rows
