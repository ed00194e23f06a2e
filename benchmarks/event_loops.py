"""uvloop against the standard library's loop, for the one loop servelab generates load on
(``loadtests.engine.loop``). Prints figures side by side; asserts nothing about time.

    python -m benchmarks.event_loops [--seconds 3] [--rounds 3]

Per loop, in alternating rounds (ABAB, so drift on a shared machine hits both alike):
- timer precision: ``synthetic:fixed:5ms`` in-process at concurrency 8, the overshoot of the
  service-time p50 over the stated 5 ms, its minimum (never below 5 ms: ``sleep_at_least``),
  and the generator's CPU per call;
- throughput: the reference model in-process at concurrency 8 (harness + model only) and the
  REST target over the fast client at concurrency 8 (the client's CPU per request is what a
  loop changes). The server runs on its own loop (uvloop, as ``servelab serve`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvloop

from loadtests.drivers.base import Driver
from loadtests.drivers.http1 import Http1Driver
from loadtests.drivers.inprocess import InProcessDriver
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from loadtests.jobs.launch import launch_target
from targets.spec import load_model

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
STATED_MS = 5.0


def measure(
    loop: Callable[[], asyncio.AbstractEventLoop], driver: Driver, seconds: float
) -> dict[str, float]:
    plan = LoadPlan(mode="closed", concurrency=8, duration_s=seconds, warmup_s=0.5)
    harness = Harness(driver, PayloadGenerator(PayloadSpec(), 1), plan)
    with asyncio.Runner(loop_factory=loop) as runner:
        cpu = time.process_time()
        recorder = runner.run(harness.run())
        cpu = time.process_time() - cpu
    service = recorder.service.summary_ms()
    return {
        "calls_per_s": recorder.successes / harness.stats.window_s,
        "cpu_us_per_call": cpu / max(recorder.requests, 1) * 1e6,
        "p50_ms": service["p50"],
        "min_ms": service["min"],
    }


def one_round(name: str, seconds: float, url: str) -> dict[str, dict[str, float]]:
    loop = LOOPS[name]
    return {
        "timer": measure(loop, InProcessDriver(load_model("synthetic:fixed:5ms")), seconds),
        "inprocess": measure(loop, InProcessDriver(load_model("reference")), seconds),
        "rest": measure(loop, Http1Driver(url, connections=8), seconds),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args(argv)
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in LOOPS}
    with launch_target("rest", model_spec="reference", log_level="off") as rest:
        for _ in range(args.rounds):
            for name in LOOPS:
                rounds[name].append(one_round(name, args.seconds, rest.url))
    table: dict[str, dict[str, Any]] = {}
    for name, runs in rounds.items():

        def median(part: str, key: str, runs: list[dict[str, dict[str, float]]] = runs) -> float:
            return statistics.median(run[part][key] for run in runs)

        table[name] = {
            "overshoot_p50_ms": median("timer", "p50_ms") - STATED_MS,
            "timer_min_ms": min(run["timer"]["min_ms"] for run in runs),
            "timer_cpu_us_per_call": median("timer", "cpu_us_per_call"),
            "inprocess_calls_per_s": median("inprocess", "calls_per_s"),
            "inprocess_cpu_us_per_call": median("inprocess", "cpu_us_per_call"),
            "rest_req_per_s": median("rest", "calls_per_s"),
            "rest_client_cpu_us_per_req": median("rest", "cpu_us_per_call"),
        }
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"{'figure (median of ' + str(args.rounds) + ' ABAB rounds)':<44}"
          + "".join(f"{name:>12}" for name in LOOPS))  # fmt: skip
    for key in table["asyncio"]:
        print(f"{key:<44}" + "".join(f"{table[name][key]:>12,.3f}" for name in LOOPS))
    ratio = table["uvloop"]["rest_req_per_s"] / table["asyncio"]["rest_req_per_s"]
    print(f"uvloop / asyncio REST req/s: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
