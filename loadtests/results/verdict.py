"""VALID / INVALID: whether a run's numbers describe the target or the load generator.

Open loop: when more than ``late_share_limit`` of sends start more than ``late_threshold_ns``
after their schedule, the generator did not keep up and the run is invalid (as MLPerf LoadGen
marks INVALID and perf_analyzer reports "not able to keep up"). Closed loop over a network: a
CPU-saturated generator is a warning — throughput is then the client's limit. In-process runs are
exempt from the CPU rule (the generator *is* the target's process), and so are busy-polling runs
(the generator spins on purpose: its CPU share says nothing).

One function judges every run: the harness's (``stats`` is its ``RunStats``) and Locust's, whose
users are a closed loop over the network with one CPU reading per load-generating process
(``generators``) and whose distributed workers may miss their last report (``missing_reports``).

Notes are not doubts about the numbers but what they mean, said plainly because users confuse
them with an invalid run: a *saturated target* (an open loop answered under 90 % of the rate
it offered: the generator kept its schedule, the target did not keep up, and latency grows with
the run's length) and a *queue in the client* (requests waited over 1 ms at p99 for a free
connection, stream or worker before they reached the wire).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from loadtests.engine.harness import RunStats, lateness_over
from loadtests.engine.recorder import Recorder
from loadtests.results.result import Verdict

LATE_THRESHOLD_NS = 1_000_000
LATE_SHARE_LIMIT = 0.05
CPU_SATURATED = 0.90
SATURATED_SHARE = 0.90  # answered / offered below this: the target is saturated
CLIENT_QUEUE_NOTE_NS = 1_000_000  # client-queue p99 above this is worth a line
# what to raise when requests queue in the client, by transport (else the load is the knob)
QUEUE_KNOB = {"rest": "--connections", "grpc-stream": "--connections", "batch": "--connections"}


@dataclass(frozen=True, slots=True)
class GeneratorLoad:
    """CPU seconds one load-generating process used over ``wall_s``, and how the warning names
    it (``advice`` follows the figure)."""

    cpu_s: float
    wall_s: float
    name: str = "load generator"
    advice: str = ""

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


def judge_run(
    recorder: Recorder,
    stats: RunStats,
    *,
    mode: str,
    in_process: bool,
    late_threshold_ns: int = LATE_THRESHOLD_NS,
    late_share_limit: float = LATE_SHARE_LIMIT,
    generators: Sequence[GeneratorLoad] | None = None,
    missing_reports: Sequence[str] = (),
) -> Verdict:
    """``generators``: the processes the CPU rule reads (default: the harness's own, from
    ``stats``); ``missing_reports``: workers whose last report never came (their last requests
    are missing, so the run is INVALID)."""
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
    reasons += [
        f"worker {worker} sent no report after it stopped: its last requests are missing"
        for worker in missing_reports
    ]
    if generators is None:
        generators = (GeneratorLoad(stats.generator_cpu_s, stats.wall_s),)
    if mode == "closed" and not in_process and not stats.busy_poll:
        warnings += [
            f"generator-bound: throughput is the client's limit "
            f"({load.name} used {load.cpu_share:.0%} of a core){load.advice}"
            for load in generators
            if load.cpu_share >= CPU_SATURATED
        ]
    if stats.abandoned:
        warnings.append(
            f"{stats.abandoned} requests still in flight when the grace ran out were cut "
            "(counted as timeouts)"
        )
    saturated = recorder.latency.saturated + recorder.service.saturated
    if saturated:
        warnings.append(
            f"{saturated} latencies exceeded the histogram range (2 h) and were clamped"
        )
    notes = (_saturation(recorder, stats, mode), _client_queue(recorder, stats))
    return Verdict(not reasons, tuple(reasons), tuple(warnings), tuple(n for n in notes if n))


def _saturation(recorder: Recorder, stats: RunStats, mode: str) -> str | None:
    """Open loop only: what was answered per second of the window (the drain included) against
    what the schedule offered per second."""
    if mode != "open" or stats.offered_s <= 0 or not recorder.requests:
        return None
    offered_rps = recorder.requests / stats.offered_s
    served_rps = (recorder.successes + recorder.expected_rejections) / stats.window_s
    if served_rps >= SATURATED_SHARE * offered_rps:
        return None
    return (
        f"target saturated: served {served_rps:,.1f} of {offered_rps:,.1f} req/s offered; "
        "latency grows with the run's length"
    )


def _client_queue(recorder: Recorder, stats: RunStats) -> str | None:
    queue = recorder.client_queue
    if not queue.total:
        return None
    p99_ns = queue.percentile_ns(99)
    if p99_ns <= CLIENT_QUEUE_NOTE_NS:
        return None
    knob = QUEUE_KNOB.get(stats.transport)
    advice = f"raise {knob}, or lower the load" if knob else "lower --concurrency or --rate"
    return (
        f"requests waited in the client before reaching the wire (client queue p99 "
        f"{p99_ns / 1e6:,.2f} ms): {advice}"
    )
