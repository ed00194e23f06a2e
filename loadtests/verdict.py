"""VALID / INVALID: whether a run's numbers describe the target or the load generator.

Open loop: when more than ``late_share_limit`` of sends start more than ``late_threshold_ns``
after their schedule, the generator did not keep up and the run is invalid (as MLPerf LoadGen
marks INVALID and perf_analyzer reports "not able to keep up"). Closed loop over a network: a
CPU-saturated generator is a warning — throughput is then the client's limit. In-process runs are
exempt from the CPU rule (the generator *is* the target's process), and so are busy-polling runs
(the generator spins on purpose: its CPU share says nothing).
"""

from __future__ import annotations

from loadtests.harness import RunStats, lateness_over
from loadtests.recorder import Recorder
from loadtests.result import Verdict

LATE_THRESHOLD_NS = 1_000_000
LATE_SHARE_LIMIT = 0.05
CPU_SATURATED = 0.90


def judge_run(
    recorder: Recorder,
    stats: RunStats,
    *,
    mode: str,
    in_process: bool,
    late_threshold_ns: int = LATE_THRESHOLD_NS,
    late_share_limit: float = LATE_SHARE_LIMIT,
) -> Verdict:
    reasons: list[str] = []
    warnings: list[str] = []
    if stats.interrupted:
        reasons.append("interrupted")
    if recorder.requests == 0:
        reasons.append("no requests were measured")
    if mode == "open" and recorder.lateness.total:
        share = lateness_over(recorder, late_threshold_ns)
        if share > late_share_limit:
            reasons.append(
                f"load generator could not keep up: {share:.1%} of sends started more than "
                f"{late_threshold_ns / 1e6:g} ms late (limit {late_share_limit:.0%})"
            )
    cpu_share = stats.generator_cpu_s / stats.wall_s if stats.wall_s > 0 else 0.0
    if mode == "closed" and not in_process and not stats.busy_poll and cpu_share >= CPU_SATURATED:
        warnings.append(
            f"generator-bound: throughput is the client's limit "
            f"(load generator used {cpu_share:.0%} of a core)"
        )
    if stats.abandoned:
        warnings.append(f"{stats.abandoned} requests still in flight at the end were abandoned")
    saturated = recorder.latency.saturated + recorder.service.saturated
    if saturated:
        warnings.append(
            f"{saturated} latencies exceeded the histogram range (2 h) and were clamped"
        )
    return Verdict(not reasons, tuple(reasons), tuple(warnings))
