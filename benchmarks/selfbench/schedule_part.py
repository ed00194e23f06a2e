"""Open-loop schedule keeping: ``servelab run --rate`` at 80 % of the generator's measured
closed-loop capacity against the fast static server — the share of sends that started within
1 ms of their schedule (from the result's send-lateness histogram)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.selfbench.common import Cores, Row, servelab_run
from benchmarks.static_server import static_server
from loadtests.histogram import LatencyHistogram

LOAD_SHARE = 0.8
LATE_NS = 1_000_000


def measure(cores: Cores, work: Path, *, capacity_per_s: float, connections: int,
            seconds: float) -> Row:  # fmt: skip
    rate = capacity_per_s * LOAD_SHARE
    with static_server(work / "static-open", cpus=cores.server) as static:
        args = ["--target", "rest", "--url", static.url, "--rate", f"{rate:.0f}",
                "--duration", f"{seconds:g}s", "--warmup", "1s",
                "--connections", str(connections)]  # fmt: skip
        result, _ = servelab_run(args, out=work / "open-loop.json", cpus=cores.client)
    lateness = LatencyHistogram.decode(result["histograms"]["send_lateness"])
    on_time = 1.0 - lateness.share_above(LATE_NS)
    summary = result["summary"]
    return Row(
        "schedule", f"servelab run --rate {rate:,.0f} (80 % of capacity)", static.name,
        rate_per_s=summary["requests"] / summary["window_s"],
        # (no CPU per request here: the generator CPU also covers the 1 s warm-up)
        p50_ms=summary["latency_ms"]["p50"], p99_ms=summary["latency_ms"]["p99"],
        client_counted=summary["requests"], failures=summary["failures"],
        note=f"{on_time:.2%} of sends within 1 ms of schedule; "
        f"verdict {'VALID' if result['verdict']['valid'] else 'INVALID'}",
        extra={"on_time_share": on_time, "rate_asked": rate},
    )  # fmt: skip
