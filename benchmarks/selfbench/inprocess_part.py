"""In-process and memory: ns per recorded sample (trivial model, the tight loop), timed calls/s
on the reference model (``servelab run --loop tight``, and the async harness for contrast), and
peak RSS over 10 M- and 100 M-request recordings made through ``servelab run``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.selfbench.common import Cores, Row, run_child, servelab_run

BASELINE_REQUESTS = 100_000  # the small run whose peak RSS the long ones are compared with


def overhead(cores: Cores, requests: int) -> Row:
    """``benchmarks/inprocess_overhead.py``: the tight loop on ``sum(row)/len(row)``."""
    command = [sys.executable, "benchmarks/inprocess_overhead.py", "--requests", str(requests),
               "--json"]  # fmt: skip
    finished = run_child(command, cpus=cores.client)
    if finished.returncode != 0:
        raise RuntimeError(f"inprocess_overhead failed: {finished.stderr.strip()[-300:]}")
    data = json.loads(finished.stdout.strip().splitlines()[-1])
    return Row(
        "inprocess", "tight loop, trivial model", "-",
        rate_per_s=data["calls_per_s"], cpu_us_per_request=data["ns_per_sample"] / 1e3,
        client_counted=data["requests"],
        note=f"harness overhead {data['overhead_ns']:.0f} ns/sample",
        extra={"overhead_ns": data["overhead_ns"], "ns_per_sample": data["ns_per_sample"]},
    )  # fmt: skip


def reference(cores: Cores, work: Path, *, tight_requests: int, harness_requests: int) -> list[Row]:
    rows = []
    for loop, requests in (("tight", tight_requests), ("harness", harness_requests)):
        args = ["--target", "inprocess", "--model", "reference", "--requests", str(requests),
                "--loop", loop, "--concurrency", "1"]  # fmt: skip
        result, _ = servelab_run(args, out=work / f"inprocess-{loop}.json", cpus=cores.client)
        summary = result["summary"]
        cpu_s = float(result["extra"]["generator"]["cpu_s"])
        rows.append(Row(
            "inprocess", f"servelab run --loop {loop}", "reference model",
            rate_per_s=summary["requests"] / summary["window_s"],
            cpu_us_per_request=cpu_s / summary["requests"] * 1e6,
            p50_ms=summary["service_latency_ms"]["p50"],
            p99_ms=summary["service_latency_ms"]["p99"],
            client_counted=summary["requests"], failures=summary["failures"],
            note="model called directly" if loop == "tight"
            else "async harness: parse, validate, judge each answer",
        ))  # fmt: skip
    return rows


def memory(cores: Cores, work: Path, sizes: list[int]) -> list[Row]:
    """Peak RSS of ``servelab run --loop tight --requests N`` against a 100 k-request run."""
    peaks: dict[int, int] = {}
    rows = []
    for requests in [BASELINE_REQUESTS, *sizes]:
        args = ["--target", "inprocess", "--loop", "tight", "--requests", str(requests)]
        result, finished = servelab_run(args, out=work / f"memory-{requests}.json",
                                        cpus=cores.client)  # fmt: skip
        peaks[requests] = finished.max_rss_kb
        if requests == BASELINE_REQUESTS:
            continue
        growth_mb = (finished.max_rss_kb - peaks[BASELINE_REQUESTS]) / 1024
        rows.append(Row(
            "memory", f"servelab run --loop tight, {requests / 1e6:g} M requests", "-",
            rate_per_s=result["summary"]["requests"] / result["summary"]["window_s"],
            client_counted=result["summary"]["requests"],
            note=f"peak RSS {finished.max_rss_kb / 1024:.1f} MB, growth {growth_mb:+.1f} MB "
            f"over a {BASELINE_REQUESTS // 1000} k run",
            extra={"peak_rss_mb": finished.max_rss_kb / 1024, "growth_mb": growth_mb,
                   "wall_s": finished.wall_s},
        ))  # fmt: skip
    return rows
