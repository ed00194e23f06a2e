"""How long a report of many big runs takes: 100 result files of 1 M requests each (goal: the
report renders in <= 10 s). Prints figures; asserts nothing about time.

    python benchmarks/report_scale.py [--files 100] [--requests 1000000] [--keep DIR]

The files are synthetic but real result documents: each run's 1 M latencies (lognormal, a
per-pattern median, run-to-run jitter) are recorded into HdrHistograms by the engine's own
vectorised recorder path, with a per-second series and cost block — 5 patterns x 2 hardware
profiles x 2 load levels x 5 repeats. Generating them is not timed; ``servelab report`` over them
(read, pool repeats, bootstrap every cell and comparison, landscape, six charts, four outputs) is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.engine.histogram import LatencyHistogram
from loadtests.results.result import KIND, SCHEMA_VERSION, write_result
from reports.build import build_report

PATTERNS = {"rest": 3.0, "grpc": 2.5, "batch": 25.0, "stream": 4.0, "edge": 0.5}  # median ms
PROFILES = {"laptop": 1.0, "server": 0.8}
CONCURRENCY = (8, 32)
REPEATS = 5


def _document(
    rng: np.random.Generator, target: str, profile: str, concurrency: int, repeat: int, n: int
) -> dict[str, Any]:
    median_ms = PATTERNS[target] * PROFILES[profile] * (concurrency / 8) ** 0.3
    median_ms *= float(np.exp(rng.normal(0, 0.02)))  # run-to-run jitter
    service_ns = (rng.lognormal(np.log(median_ms * 1e6), 0.5, n)).astype(np.int64)
    latency, service = LatencyHistogram(), LatencyHistogram()
    service.record_many(service_ns)
    latency.record_many(service_ns + rng.exponential(2e4, n).astype(np.int64))
    seconds = 100
    per_second = rng.multinomial(n, np.full(seconds, 1 / seconds))
    timeseries = [
        {"t_s": t, "requests": int(c), "failures": 0, "p50_ms": median_ms, "p99_ms": median_ms * 3}
        for t, c in enumerate(per_second)
    ]
    cpu_per_1k = {"batch": 0.02, "stream": 0.3}.get(target, 0.2) * float(rng.uniform(0.9, 1.1))
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "run": {
            "target": target, "transport": target, "mode": "closed", "model": "synthetic",
            "seed": repeat, "concurrency": concurrency, "rate_per_s": None, "arrival": None,
            "duration_s": float(seconds), "requests_limit": None, "warmup_s": 0.0,
            "batch_size": 256 if target == "batch" else None, "window_ms": None, "api": "v1",
            "tool": "servelab", "profile": profile, "label": "scale", "group": None,
            "repeat": repeat, "partial": False, "id": f"{target}{profile}{concurrency}{repeat}",
            "started_at": "2026-11-25T00:00:00+00:00",
        },
        "environment": {"hostname": "bench", "cpu_model": "synthetic", "logical_cores": 2},
        "cost": {"target_cpu_s": cpu_per_1k * n / 1000, "cpu_s_per_1k_predictions": cpu_per_1k,
                 "scope": "target process tree"},
        "verdict": {"valid": True, "reasons": [], "warnings": []},
        "summary": {
            "requests": n, "successes": n, "failures": 0, "expected_rejections": 0,
            "success_rate": 1.0, "schema_success_rate": 1.0, "throughput_rps": n / seconds,
            "predictions_per_s": n / seconds, "window_s": float(seconds),
            "latency_ms": latency.summary_ms(), "service_latency_ms": service.summary_ms(),
        },
        "errors": {},
        "histograms": {"latency": latency.encode(), "service_latency": service.encode(),
                       "send_lateness": LatencyHistogram().encode()},
        "timeseries": timeseries,
        "extra": {},
    }  # fmt: skip


def generate(directory: Path, files: int, requests: int) -> list[Path]:
    rng = np.random.default_rng(42)
    combos = [
        (target, profile, concurrency, repeat)
        for target in PATTERNS
        for profile in PROFILES
        for concurrency in CONCURRENCY
        for repeat in range(REPEATS)
    ]
    paths = []
    for index in range(files):
        target, profile, concurrency, repeat = combos[index % len(combos)]
        repeat += REPEATS * (index // len(combos))
        path = directory / f"{target}-{profile}-c{concurrency}-r{repeat}.json"
        write_result(path, _document(rng, target, profile, concurrency, repeat, requests))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="DIR", help="write the files (and report) here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.keep or scratch)
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        paths = generate(directory, args.files, args.requests)
        generated_s = time.perf_counter() - started
        size_kb = sum(p.stat().st_size for p in paths) / 1024
        print(f"generated {len(paths)} result files of {args.requests:,} requests "
              f"({size_kb:,.0f} KB) in {generated_s:.1f} s (not timed)")  # fmt: skip
        started = time.perf_counter()
        report = build_report([str(p) for p in paths], directory / "report")
        report_s = time.perf_counter() - started
        cells = report.analysis.cells
        print(
            f"report: {len(paths)} files, {len(cells)} cells, "
            f"{len(report.analysis.comparisons)} comparisons, {len(report.charts)} charts "
            f"→ {report_s:.2f} s (goal <= 10 s)"
        )


if __name__ == "__main__":
    main()
