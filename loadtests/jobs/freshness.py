"""``servelab freshness`` and the bench's ``kind = "freshness"`` cells: scheduled backfills
against streaming, compared on real freshness.

Events arrive at rate λ (seeded Poisson). For each streaming window the streaming target runs
for real (``servelab run --target stream --rate λ --arrival poisson --window-ms W``): an event's
freshness is its measured latency from arrival (intended start) to its prediction, the window's
wait inside it. For each backfill interval the schedule runs on virtual time over a horizon
(``jobs.backfill``), every run's makespan measured on the batch target at its real size or,
past a bound, scaled from measured samples (``jobs.makespan``). One result document holds a
point per schedule and window (``jobs.freshness_result``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests.engine.loop import run as run_on_loop
from loadtests.engine.workload import PayloadGenerator, PayloadSpec, derive_seeds
from loadtests.jobs.backfill import backfill, backfill_point, poisson_arrivals_s
from loadtests.jobs.freshness_result import freshness_document
from loadtests.jobs.freshness_spec import FreshnessSpec, interval_name
from loadtests.jobs.makespan import BatchMakespans
from loadtests.jobs.run import RunOutput, execute
from loadtests.jobs.settings import RunSettings, default_instances, load_plan
from loadtests.results.document import ResultDocument
from loadtests.results.freshness import STREAM, TARGET, Point
from loadtests.results.result import RunInfo, write_result
from loadtests.results.thresholds import check_absolute, parse_thresholds
from targets.batch.scoring import DEFAULT_BATCH_SIZE
from targets.spec import load_model

if TYPE_CHECKING:
    from loadtests.jobs.bench_config import Cell
    from loadtests.jobs.profiles import HardwareProfile

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FreshnessJob:
    """One comparison: the spec, the arrival rate, and what a result file records."""

    spec: FreshnessSpec
    rate_per_s: float
    model: str = "reference"
    seed: int = 42
    batch_size: int = DEFAULT_BATCH_SIZE  # rows per model call in the batch job
    label: str | None = None
    profile: str | None = None
    group: str | None = None
    repeat: int = 0


def _stream_settings(job: FreshnessJob, window_ms: float) -> RunSettings:
    spec = job.spec
    plan = load_plan(
        rate=job.rate_per_s, arrival="poisson",
        duration_s=spec.stream_duration_s, warmup_s=spec.stream_warmup_s,
    )  # fmt: skip
    return RunSettings(
        target="stream",
        model=job.model,
        plan=plan,
        payloads=PayloadSpec.from_options(instances=default_instances(job.model)),
        seed=job.seed,
        window_ms=window_ms,
        label=job.label,
        profile=job.profile,
        repeat=job.repeat,
    )


def stream_point(window_ms: float, result: ResultDocument) -> Point:
    """A window's freshness point: the stream run's latency from intended start (arrival)."""
    summary, cost = result["summary"], result["cost"]
    latency = summary["latency_ms"]
    stream = result["extra"]
    return Point(
        kind=STREAM,
        name=f"{window_ms:g}ms",
        events=int(summary["successes"]),
        p50_s=latency["p50"] / 1e3,
        p99_s=latency["p99"] / 1e3,
        mean_s=latency["mean"] / 1e3,
        max_s=latency["max"] / 1e3,
        cpu_s_per_1k=cost.get("cpu_s_per_1k_predictions"),
        detail={
            "window_ms": window_ms,
            "batch_size": stream.get("batch_size"),
            "requests": summary["requests"],
            "measured_s": summary["window_s"],
            "mean_batch_events": stream.get("mean_batch_events"),
            "valid": result["verdict"]["valid"],
        },
    )


def _batch_rows(job: FreshnessJob) -> list[list[float]]:
    """Rows the batch jobs score: the seeded payloads a stream run sends, cycled."""
    width = default_instances(job.model)
    payloads = PayloadGenerator(PayloadSpec.from_options(instances=width, distinct=512),
                                derive_seeds(job.seed)[0])  # fmt: skip
    return [row for index in range(512) for row in payloads.payload(index).rows]


def backfill_points(job: FreshnessJob, say: Say) -> tuple[list[Point], dict[str, Any]]:
    """Every schedule on virtual time, makespans measured; (points, how they were made)."""
    spec = job.spec
    horizon = spec.horizon
    arrivals = poisson_arrivals_s(job.rate_per_s, horizon, derive_seeds(job.seed)[1])
    say(f"backfills: {arrivals.size:,} virtual events over {interval_name(horizon)}")
    points = []
    with BatchMakespans(
        load_model(job.model), _batch_rows(job), batch_size=job.batch_size,
        bound_rows=spec.bound_rows,
    ) as meter:  # fmt: skip
        for interval in spec.schedules_s:
            outcome = backfill(arrivals, interval, horizon, meter.for_schedule())
            point = backfill_point(interval_name(interval), outcome)
            say(f"{point.label}: freshness p50 {point.p50_s:,.1f} s, p99 {point.p99_s:,.1f} s")
            points.append(point)
        scaling = meter.scaled
        setup = {
            "horizon_s": horizon,
            "virtual_events": int(arrivals.size),
            "makespan": {
                "bound_rows": meter.bound_rows,
                "budget_rows_per_schedule": meter.budget_rows,
                "batch_size": job.batch_size,
                "batch_jobs_run": meter.jobs,
                "scaling": None if scaling is None else scaling.block(),
            },
        }
    return points, setup


def run_freshness(job: FreshnessJob, *, say: Say | None = None) -> ResultDocument:
    """The comparison's result document (nothing written)."""
    tell = say or (lambda _: None)
    streams = []
    for window_ms in job.spec.windows_ms:
        seconds = job.spec.stream_duration_s
        tell(f"stream window {window_ms:g}ms: {seconds:g} s at {job.rate_per_s:g}/s")
        streams.append(run_on_loop(execute(_stream_settings(job, window_ms), out=None)).result)
    points = [stream_point(w, r) for w, r in zip(job.spec.windows_ms, streams, strict=True)]
    backfills, setup = backfill_points(job, tell)
    run = RunInfo(
        target=TARGET, transport=TARGET, mode="open", model=job.model, seed=job.seed,
        rate_per_s=job.rate_per_s, arrival="poisson", duration_s=job.spec.horizon,
        warmup_s=job.spec.stream_warmup_s, batch_size=job.batch_size, label=job.label,
        profile=job.profile, group=job.group, repeat=job.repeat,
    )  # fmt: skip
    notes = (
        "summary and histograms: the streaming windows' events pooled (arrival to output); "
        "each schedule's and window's freshness is in extra.freshness.points",
        "backfills ran on virtual time; each makespan was measured on the batch target "
        "(or scaled from measured samples past the bound: extra.freshness.makespan)",
    )
    setup = {"rate_per_s": job.rate_per_s, **setup}
    return freshness_document(run, streams, [*backfills, *points], setup=setup, notes=notes)


@contextmanager
def _pinned(cpus: tuple[int, ...] | None) -> Iterator[None]:
    """The profile's CPUs are the targets' here: both run in this process."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def freshness_output(
    job: FreshnessJob,
    *,
    out: Path | None,
    gates: list[str],
    cpus: tuple[int, ...] | None = None,
    say: Say | None = None,
) -> RunOutput:
    """Run, check ``gates`` against the pooled streaming summary, write ``out``: what
    ``servelab run`` returns, so the bench treats a freshness cell like any other."""
    with _pinned(cpus):
        result = run_freshness(job, say=say)
    checks = check_absolute(parse_thresholds(gates, allow_relative=False), result["summary"])
    result["extra"]["thresholds"] = [dataclasses.asdict(check) for check in checks]
    if out is not None:
        write_result(out, result)
    return RunOutput(result, out, checks)


def bench_freshness(
    cell: Cell, *, rate: float, seed: int, profile: HardwareProfile, repeat: int, out: Path,
    gates: list[str],
) -> RunOutput:  # fmt: skip
    """A bench cell of ``kind = "freshness"`` at one rate: the job on the profile's CPUs."""
    if cell.freshness is None:
        raise ValueError(f"{cell.target} is not a freshness cell")
    job = FreshnessJob(
        cell.freshness, rate, model=cell.model, seed=seed,
        batch_size=cell.batch_size or DEFAULT_BATCH_SIZE, label=cell.label,
        profile=profile.name, group=f"freshness|{cell.model}|open:{rate:g}|{profile.name}",
        repeat=repeat,
    )  # fmt: skip
    return freshness_output(job, out=out, gates=gates, cpus=profile.cpus)
