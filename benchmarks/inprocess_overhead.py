"""What recording costs in-process: ns per recorded sample and timed calls/s on a trivial model,
and RSS growth over a long recording. Prints figures; asserts nothing about time.

    python benchmarks/inprocess_overhead.py [--requests 10000000]

Goal (issue 3): <= 150 ns of harness overhead per recorded sample (>= 3.5 M timed calls/s on
this kind of machine) and RSS flat after warm-up (<= 50 MB growth over 10 M requests).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.engine.recorder import Recorder
from loadtests.engine.tight import run_tight


def trivial(row: Sequence[float]) -> float:
    return sum(row) / len(row)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_calls_per_s(rows: list[list[float]], calls: int) -> float:
    started = time.perf_counter()
    for index in range(calls):
        trivial(rows[index & 63])
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000_000)
    parser.add_argument("--json", action="store_true", help="one JSON line, for selfbench")
    options = parser.parse_args()
    rows = [[float(i), float(i + 1), float(i + 2), float(i + 3)] for i in range(64)]
    run_tight(trivial, rows, 500_000, Recorder())  # warm-up: allocator, numpy, caches
    baseline_mb = rss_mb()
    bare = bare_calls_per_s(rows, 2_000_000)
    recorder = Recorder()
    started = time.perf_counter()
    run_tight(trivial, rows, options.requests, recorder)
    elapsed = time.perf_counter() - started
    per_call_ns = elapsed / options.requests * 1e9
    bare_ns = 1e9 / bare
    if options.json:
        figures = {"requests": recorder.requests, "calls_per_s": options.requests / elapsed,
                   "ns_per_sample": per_call_ns, "overhead_ns": per_call_ns - bare_ns,
                   "rss_growth_mb": rss_mb() - baseline_mb}  # fmt: skip
        print(json.dumps(figures))
        return
    print(f"requests recorded        {recorder.requests:,}")
    print(f"timed calls/s            {options.requests / elapsed:,.0f}")
    print(f"ns per recorded sample   {per_call_ns:.0f}  (untimed call alone: {bare_ns:.0f} ns)")
    print(f"harness overhead/sample  {per_call_ns - bare_ns:.0f} ns  (goal <= 150 ns)")
    print(f"service p50 / p99        {recorder.service.percentile_ns(50)} / "
          f"{recorder.service.percentile_ns(99)} ns")  # fmt: skip
    print(f"RSS growth               {rss_mb() - baseline_mb:.1f} MB  (goal <= 50 MB)")


if __name__ == "__main__":
    main()
