"""Open-loop schedule keeping against the fast static server. The open-loop generator's
capacity is measured first — ``servelab run --rate`` asked for the closed loop's req/s
achieves what it can — then a run at 80 % of that capacity reports the share of sends that
started within 1 ms of their schedule (from the result's send-lateness histogram)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.selfbench.common import Cores, Row, servelab_run
from benchmarks.static_server import static_server
from loadtests.engine.histogram import LatencyHistogram

LOAD_SHARE = 0.8
OVERASK = 1.0  # the closed loop's rate: more than the open loop can do, not so far beyond it
# that overload itself (a growing queue of sends) eats into what it achieves
LATE_NS = 1_000_000


def _open(url: str, rate: float, cores: Cores, out: Path, connections: int,
          seconds: float, *, probe: bool = False) -> dict[str, Any]:  # fmt: skip
    args = ["--target", "rest", "--url", url, "--rate", f"{rate:.0f}",
            "--duration", f"{seconds:g}s", "--warmup", "1s",
            "--connections", str(connections)]  # fmt: skip
    if probe:  # asked for more than it can do, the probe is INVALID by design: exit by the gates
        args.append("--allow-invalid")
    result, _ = servelab_run(args, out=out, cpus=cores.client)
    return result


def measure(cores: Cores, work: Path, *, closed_per_s: float, connections: int,
            seconds: float) -> list[Row]:  # fmt: skip
    with static_server(work / "static-open", cpus=cores.server) as static:
        over = _open(static.url, closed_per_s * OVERASK, cores, work / "open-capacity.json",
                     connections, seconds, probe=True)  # fmt: skip
        summary = over["summary"]
        capacity = summary["requests"] / summary["window_s"]
        result = _open(static.url, capacity * LOAD_SHARE, cores, work / "open-loop.json",
                       connections, seconds)  # fmt: skip
    capacity_row = Row(
        "schedule", f"servelab run --rate {closed_per_s * OVERASK:,.0f} (= closed-loop req/s)",
        static.name, rate_per_s=capacity, client_counted=summary["requests"],
        note="what the open-loop generator achieves: its capacity",
        extra={"rate_asked": closed_per_s * OVERASK},
    )  # fmt: skip
    rate = capacity * LOAD_SHARE
    lateness = LatencyHistogram.decode(result["histograms"]["send_lateness"])
    on_time = 1.0 - lateness.share_above(LATE_NS)
    summary = result["summary"]
    return [capacity_row, Row(
        "schedule", f"servelab run --rate {rate:,.0f} (80 % of capacity)", static.name,
        rate_per_s=summary["requests"] / summary["window_s"],
        # (no CPU per request here: the generator CPU also covers the 1 s warm-up)
        p50_ms=summary["latency_ms"]["p50"], p99_ms=summary["latency_ms"]["p99"],
        client_counted=summary["requests"], failures=summary["failures"],
        note=f"{on_time:.2%} of sends within 1 ms of schedule; "
        f"verdict {'VALID' if result['verdict']['valid'] else 'INVALID'}",
        extra={"on_time_share": on_time, "rate_asked": rate},
    )]  # fmt: skip
