"""``servelab run --processes 2`` against one process, on an in-process target (the reference
model): the tight loop (the model called back to back, one caller per process) and the async
harness (concurrency 8, shared out), ABBA pairs, each rate the requests over the run's window.

Neither run is pinned from outside: the two processes pin themselves to distinct CPUs, and the
single process may run on either. The goal (issue 17): 2 processes give at least 1.8x one
process's throughput. On a machine others are using, the second process competes for its core,
so the ratio is only meaningful from an otherwise idle machine.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from benchmarks.selfbench.common import Cores, Row, abba, servelab_run

SECTION = "processes"
LOOPS = ("tight", "harness")
HARNESS_CONCURRENCY = 8


def client(loop: str, processes: int) -> str:
    """The row's client name (``report.goals`` finds rows by it)."""
    return f"servelab run --loop {loop} --processes {processes}"


def _run(loop: str, processes: int, work: Path, seconds: float) -> Row:
    args = ["--target", "inprocess", "--model", "reference", "--loop", loop,
            "--duration", f"{seconds:g}s", "--processes", str(processes)]  # fmt: skip
    if loop == "harness":
        args += ["--concurrency", str(HARNESS_CONCURRENCY)]
    result, _ = servelab_run(args, out=work / f"processes-{loop}-{processes}.json", cpus=None)
    summary = result["summary"]
    requests = int(summary["requests"])
    generator = result["extra"]["generator"]
    shares = [p.get("cpu_share", 0.0) for p in generator.get("processes", [])]
    note = "model called directly" if loop == "tight" else "async harness, concurrency 8"
    if shares:
        note += "; CPU share per process " + ", ".join(f"{share:.0%}" for share in shares)
    return Row(
        SECTION, client(loop, processes), "reference model",
        rate_per_s=requests / float(summary["window_s"]),
        cpu_us_per_request=float(generator["cpu_s"]) / requests * 1e6 if requests else None,
        p50_ms=summary["service_latency_ms"]["p50"], p99_ms=summary["service_latency_ms"]["p99"],
        client_counted=requests, failures=int(summary["failures"]), note=note,
    )  # fmt: skip


def measure(cores: Cores, work: Path, *, seconds: float, pairs: int) -> list[Row]:
    """Per loop: ``pairs`` ABBA rounds of 2 processes against 1 (``cores`` unused: the
    processes pin themselves)."""
    rows: list[Row] = []
    for loop in LOOPS:
        rows += abba(partial(_run, loop, 2, work, seconds), partial(_run, loop, 1, work, seconds),
                     pairs)  # fmt: skip
    return rows
