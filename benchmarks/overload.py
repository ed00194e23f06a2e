"""Overload: a REST target held far past its capacity keeps its memory flat and sheds the excess.

Starts ``servelab serve rest --model synthetic:fixed:50ms --max-in-flight 64`` (capacity about
64 / 50 ms = 1,280 requests/s) and drives it with servelab's own harness and REST driver, open
loop at 4,000 requests/s for 60 s. Every second it samples VmRSS of the server's process tree
from ``/proc``; at the end it prints RSS over time, the share of 503s, and the latency of the
requests served (from their send: the generator's send lateness is printed beside it, and when it
is small the two clocks agree). Prints figures; asserts nothing about time.

    python benchmarks/overload.py [--seconds 60] [--rate 4000] [--max-in-flight 64]
                                  [--max-queue N] [--connections 512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from collections import Counter
from pathlib import Path

import numpy as np
import uvloop

from loadtests.drivers.base import DriverBase, Reply
from loadtests.drivers.rest import RestDriver
from loadtests.engine.harness import LoadPlan
from loadtests.engine.records import Outcome
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import Payload
from loadtests.jobs.api import run_load_test_async
from targets.admission import DEFAULT_MAX_QUEUE

ROOT = Path(__file__).resolve().parent.parent
MODEL = "synthetic:fixed:50ms"
READY_TIMEOUT_S = 30.0


class ServedTally(DriverBase):
    """Wraps the REST driver: per-second counts by answer, and send-to-answer time of successes.

    The harness's own latency histogram mixes the fast 503s with the served requests; the
    question here is what the admitted requests saw.
    """

    def __init__(self, driver: RestDriver) -> None:
        super().__init__()
        self.driver = driver
        self.transport = driver.transport
        self.wire = driver.wire
        self.stamps = driver.stamps
        self.served_ns = array("q")
        self.per_second: dict[int, Counter[str]] = {}
        self.start_ns = time.perf_counter_ns()
        self.bytes_sent = 0  # the wrapped driver counts bytes; the tally need not
        self.bytes_received = 0

    async def open(self) -> None:
        await self.driver.open()

    async def send(self, payload: Payload) -> Reply:
        sent_ns = time.perf_counter_ns()
        reply = await self.driver.send(payload)
        ended_ns = time.perf_counter_ns()
        kind = "served" if reply[0] == Outcome.OK else (reply[1] or "other")
        if reply[0] == Outcome.OK:
            self.served_ns.append(ended_ns - sent_ns)
        second = (ended_ns - self.start_ns) // 1_000_000_000
        self.per_second.setdefault(second, Counter())[kind] += 1
        return reply

    async def close(self) -> None:
        await self.driver.close()


def tree_rss_kib(root_pid: int) -> int:
    """VmRSS of ``root_pid`` and every descendant, in KiB (0 for processes already gone)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class RssSampler(threading.Thread):
    """Samples the tree's RSS once a second until stopped (a thread: the loop is busy)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.start_s = time.monotonic()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.samples.append((time.monotonic() - self.start_s, tree_rss_kib(self.pid)))
            self.stopped.wait(1.0)


def start_target(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "ready.json"
    command = [sys.executable, "-m", "loadtests.cli", "serve", "rest", "--port", "0"]
    command += ["--model", MODEL, "--max-in-flight", str(args.max_in_flight)]
    command += ["--max-queue", str(args.max_queue), "--ready-file", str(ready)]
    command += ["--log-level", args.log_level]
    log = (workdir / "target.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"target did not start; see {workdir / 'target.log'}")
        time.sleep(0.02)  # polling the ready file
    return process, str(json.loads(ready.read_text())["url"])


def percentiles_ms(values_ns: array[int]) -> str:
    if not values_ns:
        return "none served"
    data = np.frombuffer(values_ns, dtype=np.int64) / 1e6
    points = np.percentile(data, [50, 90, 99, 99.9])
    named = zip(("p50", "p90", "p99", "p99.9"), points, strict=True)
    return "  ".join(f"{name} {value:.1f}" for name, value in named) + f"  max {data.max():.1f}"


def server_latency_ms(url: str) -> str:
    """Upper bounds of the p50/p99 of served (200) predicts from the target's own histogram:
    the server's view, free of the generator's stalls on a busy machine."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if (
            'route="/v1/predict"' not in line
            or 'status="200"' not in line
            or "_bucket{" not in line
        ):
            continue
        labels, value = line.rsplit(" ", 1)
        bound = labels.split('le="', 1)[1].split('"', 1)[0]
        buckets.append((float(bound), float(value)))
    if not buckets or buckets[-1][1] == 0:
        return "no 200s in the target's metrics"
    buckets.sort()
    total = buckets[-1][1]

    def upper(share: float) -> str:
        bound = next(b for b, count in buckets if count >= share * total)
        return "> 10 s" if bound == float("inf") else f"<= {bound * 1e3:g}"

    return f"p50 {upper(0.5)}  p99 {upper(0.99)}  (of {total:.0f})"


def report(tally: ServedTally, sampler: RssSampler, outcome_summary: dict[str, object]) -> None:
    print(f"{'t_s':>4} {'rss_MiB':>8} {'served':>7} {'503':>6} {'other':>6}")
    for t_s, rss_kib in sampler.samples:
        counts = tally.per_second.get(int(t_s) - 1, Counter())  # the second just finished
        other = sum(n for kind, n in counts.items() if kind not in ("served", "http_503"))
        print(
            f"{t_s:4.0f} {rss_kib / 1024:8.1f} {counts['served']:7d} "
            f"{counts['http_503']:6d} {other:6d}"
        )
    totals: Counter[str] = Counter()
    for counts in tally.per_second.values():
        totals.update(counts)
    sent = sum(totals.values())
    rss = [kib / 1024 for _, kib in sampler.samples]
    warm = rss[len(rss) // 4 :] or rss  # after the first quarter
    print(f"requests {sent}: {dict(totals)}")
    print(f"share of 503s: {totals['http_503'] / sent:.1%}" if sent else "no requests")
    print(f"served latency ms (send to answer): {percentiles_ms(tally.served_ns)}")
    print(f"harness summary: {outcome_summary}")
    print(
        f"RSS MiB: start {rss[0]:.1f}, max {max(rss):.1f}, after warm-up "
        f"{min(warm):.1f}..{max(warm):.1f} (growth {max(warm) - min(warm):.1f})"
    )


async def drive(args: argparse.Namespace, url: str, tally: ServedTally) -> dict[str, object]:
    plan = LoadPlan(
        mode="open",
        profile=RateProfile.constant(args.rate),
        duration_s=args.seconds,
        warmup_s=0.0,
        drain_timeout_s=30.0,
    )
    outcome = await run_load_test_async(tally, plan=plan, model=MODEL)
    summary = outcome.summary
    return {
        "verdict": "VALID" if outcome.verdict.valid else "INVALID",
        "reasons": list(outcome.verdict.reasons),
        "throughput_rps": round(summary["throughput_rps"], 1),
        "send_lateness_p99_ms": round(outcome.recorder.lateness.percentile_ns(99) / 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=4000.0, help="offered requests/s")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--max-queue", type=int, default=DEFAULT_MAX_QUEUE)
    parser.add_argument("--connections", type=int, default=512, help="client keep-alive pool")
    parser.add_argument(
        "--log-level",
        default="warning",
        help="the target's log level (default warning: 4,000 access lines/s would take the CPU "
        "the generator needs on a small machine)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="servelab-overload-") as tmp:
        process, url = start_target(args, Path(tmp))
        sampler = RssSampler(process.pid)
        try:
            print(
                f"target pid {process.pid} at {url}: {MODEL}, --max-in-flight "
                f"{args.max_in_flight} --max-queue {args.max_queue}; offered {args.rate:.0f}/s "
                f"for {args.seconds:.0f} s over {args.connections} connections"
            )
            tally = ServedTally(RestDriver(url, connections=args.connections, timeout_s=30.0))
            sampler.start()
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                summary = runner.run(drive(args, url, tally))
            sampler.stopped.set()
            sampler.join()
            report(tally, sampler, summary)
            print(f"served latency ms at the target (histogram buckets): {server_latency_ms(url)}")
        finally:
            sampler.stopped.set()
            process.terminate()
            process.wait(30)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
