"""The parts of a ``servelab run --processes N`` merged into one result.

Exact where it can be: the HDR histograms add bucket by bucket, the counters and error counts
sum (``Recorder.merge``, the merge Locust's workers go through too), and each second of the
per-second series is recomputed from the buckets every process kept for it. The window runs
from the common start to the last process's end, on the one monotonic clock they share.

One verdict (``judge_run``) on the merged figures, with each process's CPU for the
generator-bound rule, and INVALID besides if any process lagged (its own verdict found its sends
late), died, hung, or ran past its bound: its requests are missing, so the totals are not the
run's. ``extra.generator.processes`` records every process: PID, CPU it was pinned to, fate,
requests, CPU seconds and share, send lateness. A transport figure every process reported alike
stays at the top of ``extra``; one that differs is kept per process.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from loadtests.engine.harness import RunStats
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.wire import recorder_from_wire
from loadtests.jobs.part_run import PartResult
from loadtests.jobs.run import run_info
from loadtests.jobs.settings import RunSettings
from loadtests.results.document import ResultDocument
from loadtests.results.environment import fingerprint
from loadtests.results.result import Verdict, build_result
from loadtests.results.verdict import LATE_THRESHOLD_NS, GeneratorLoad, judge_run

# What became of a process that sent no result, as the verdict says it.
FATES: Final = {
    "died": "died (exit code {code}) before it reported",
    "hung": "went silent (no progress for a minute) and was killed",
    "overran": "was still running past the run's end and was killed",
    "unready": "was not ready to start in time and was killed",
    "error": "refused to run",
}
# A part's own verdict reasons that say nothing about the merged run.
PART_ONLY: Final = ("interrupted", "no requests were measured")
OWN_EXTRA: Final = ("generator", "thresholds")  # the parent writes these itself


@dataclass(frozen=True, slots=True)
class ProcessReport:
    """One generator process at the end: its result, or what became of it (``fate``)."""

    index: int
    cpu: int | None  # the CPU it was pinned to (None: not pinned)
    pid: int | None
    fate: str  # "ok", or a key of FATES
    exit_code: int | None
    result: PartResult | None

    @property
    def name(self) -> str:
        return f"generator process {self.index} (pid {self.pid})"

    def problems(self) -> list[str]:
        """Why this process makes the run INVALID (none: it measured its share in time)."""
        if self.result is None:
            fate = FATES.get(self.fate, FATES["died"]).format(code=self.exit_code)
            return [f"{self.name} {fate}: its requests are missing"]
        reasons = self.result.document["verdict"]["reasons"]
        return [f"{self.name}: {reason}" for reason in reasons if reason not in PART_ONLY]


def merged_result(
    settings: RunSettings,
    reports: Sequence[ProcessReport],
    *,
    started: bool,
    started_at: str,
    interrupted: bool,
    pin_warning: str | None,
    target_cpu_s: float | None,
    cost_source: str,
    added: dict[str, Any],
) -> ResultDocument:
    """The one result of the run; ``target_cpu_s`` / ``cost_source``: the target's CPU as the
    parent measured it (an in-process target's is the processes' own, summed here)."""
    recorder = merged_recorder(reports)
    stats = merged_stats(reports, interrupted=interrupted)
    verdict = merged_verdict(settings, recorder, stats, reports, pin_warning)
    parts = [report.result for report in reports if report.result is not None]
    first_run = parts[0].document["run"] if parts else None
    info = run_info(
        settings, started=started,
        transport=first_run["transport"] if first_run else settings.spec.transport,
        batch_size=first_run["batch_size"] if first_run else None,
        window_ms=first_run["window_ms"] if first_run else None,
    )  # fmt: skip
    info = dataclasses.replace(info, started_at=started_at, partial=stats.interrupted)
    common, own = _split_extras(parts)
    extra = {**common, **added, "generator": _generator_block(recorder, stats, reports, own)}
    if settings.spec.in_process:  # each process served its own requests: their CPU is the cost
        target_cpu_s = sum(part.document["cost"]["target_cpu_s"] or 0.0 for part in parts)
    predictions = recorder.predictions
    cost = {
        "target_cpu_s": target_cpu_s,
        "cpu_s_per_1k_predictions": (
            target_cpu_s / predictions * 1000 if target_cpu_s is not None and predictions else None
        ),
        "scope": (
            "the generator processes (in-process target)"
            if settings.spec.in_process
            else "target process tree"
        ),
        "source": cost_source,
    }
    return build_result(
        info, recorder, window_s=stats.window_s, verdict=verdict, environment=fingerprint(),
        cost=cost, extra=extra,
    )  # fmt: skip


def merged_recorder(reports: Sequence[ProcessReport]) -> Recorder:
    """Every reported process's recorder, added (``Recorder.merge``)."""
    recorder = Recorder(start_ns=0, keep_seconds=True)
    for report in reports:
        if report.result is not None:
            recorder.merge(recorder_from_wire(report.result.recorder, report.result.rows))
    recorder.finish()
    return recorder


def merged_stats(reports: Sequence[ProcessReport], *, interrupted: bool) -> RunStats:
    """The harnesses' figures as one: the window from the first start to the last end."""
    parts = [RunStats(**report.result.stats) for report in reports if report.result is not None]
    if not parts:
        return RunStats(interrupted=interrupted)
    return RunStats(
        measure_start_ns=min(part.measure_start_ns for part in parts),
        measure_end_ns=max(part.measure_end_ns for part in parts),
        generator_cpu_s=sum(part.generator_cpu_s for part in parts),
        wall_s=max(part.wall_s for part in parts),
        interrupted=interrupted or any(part.interrupted for part in parts),
        abandoned=sum(part.abandoned for part in parts),
        busy_poll=any(part.busy_poll for part in parts),
        offered_s=max(part.offered_s for part in parts),
        transport=parts[0].transport,
    )


def merged_verdict(
    settings: RunSettings,
    recorder: Recorder,
    stats: RunStats,
    reports: Sequence[ProcessReport],
    pin_warning: str | None,
) -> Verdict:
    generators = [
        GeneratorLoad(
            float(part.stats["generator_cpu_s"]),
            float(part.stats["wall_s"]),
            name=report.name,
            advice="; raise --processes",
        )
        for report in reports
        if (part := report.result) is not None
    ]
    verdict = judge_run(
        recorder, stats, mode=settings.plan.mode, in_process=settings.spec.in_process,
        generators=generators,
    )  # fmt: skip
    reasons = [*verdict.reasons, *(problem for r in reports for problem in r.problems())]
    warnings = [*verdict.warnings, *([pin_warning] if pin_warning else [])]
    return Verdict(not reasons, tuple(reasons), tuple(warnings), verdict.notes)


def _split_extras(parts: Sequence[PartResult]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Transport figures every part reported alike, and what is left of each part's."""
    extras = [
        {key: value for key, value in part.document["extra"].items() if key not in OWN_EXTRA}
        for part in parts
    ]
    if not extras:
        return {}, []
    common = {
        key: value
        for key, value in extras[0].items()
        if all(key in other and other[key] == value for other in extras[1:])
    }
    return common, [{k: v for k, v in extra.items() if k not in common} for extra in extras]


def _generator_block(
    recorder: Recorder,
    stats: RunStats,
    reports: Sequence[ProcessReport],
    own_extras: list[dict[str, Any]],
) -> dict[str, Any]:
    own = iter(own_extras)
    return {
        "cpu_s": stats.generator_cpu_s,
        "wall_s": stats.wall_s,
        "abandoned": stats.abandoned,
        "busy_poll": stats.busy_poll,
        "send_lateness_ms": recorder.lateness.summary_ms(),
        "processes": [_process_entry(report, own) for report in reports],
    }


def _process_entry(report: ProcessReport, own_extras: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": report.index, "pid": report.pid, "cpu": report.cpu, "fate": report.fate,
        "exit_code": report.exit_code,
    }  # fmt: skip
    part = report.result
    if part is None:
        return entry
    cpu_s, wall_s = float(part.stats["generator_cpu_s"]), float(part.stats["wall_s"])
    encoded = part.recorder["histograms"].get("lateness")
    lateness = LatencyHistogram.decode(encoded) if encoded else LatencyHistogram()
    entry.update(
        requests=int(part.recorder["counts"]["requests"]),
        cpu_s=cpu_s,
        wall_s=wall_s,
        cpu_share=cpu_s / wall_s if wall_s > 0 else 0.0,
        send_lateness_ms=lateness.summary_ms(),
        late_share=lateness.share_above(LATE_THRESHOLD_NS),  # sends over 1 ms late
        extra=next(own_extras),
    )
    return entry
