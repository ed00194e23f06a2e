"""A Locust run's result document: what the locustfile knows about the test (``LocustRun``),
merged into the same result file ``servelab run`` writes, its thresholds and summary line."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from loadtests.engine.recorder import Recorder
from loadtests.locust_integration.results import (
    ProcessSummary,
    SideStats,
    judge_locust,
    transport_extra,
)
from loadtests.locust_integration.support import option
from loadtests.results.document import ResultDocument
from loadtests.results.result import RunInfo, build_result
from loadtests.results.thresholds import AbsoluteThreshold, Check, check_absolute, parse_thresholds

LOCUST_BUCKETS_NOTE: Final = (
    "Locust's own figures: response times kept in ~2-significant-digit buckets "
    "(whole ms below 100 ms); servelab's summary is exact to HDR precision (3 digits)"
)


@dataclass(frozen=True, slots=True)
class LocustRun:
    """What the locustfile knows about the test, gathered from Locust's objects."""

    targets: tuple[str, ...]  # servelab target of each user class that ran
    user_classes: tuple[str, ...]
    options: object
    window_start_s: float  # wall clock (epoch seconds): test start .. stop on this node
    window_end_s: float
    interrupted: bool
    distributed: bool
    locust_stats: Mapping[str, Any]  # Locust's own totals (bucketed), for comparison


IN_PROCESS_USERS: Final = frozenset({"batch"})  # their model runs inside Locust


def _recorded_model(options: object, targets: list[str]) -> str | None:
    """``run.model``: the one named, the one in-process users ran, else unknown (the users'
    target is a server whose model servelab cannot see)."""
    named = option(options, "model")
    if named is not None:
        return str(named)
    return "reference" if targets and set(targets) <= IN_PROCESS_USERS else None


def build_locust_result(
    run: LocustRun,
    recorder: Recorder,
    side: SideStats,
    processes: list[ProcessSummary],
    *,
    environment: dict[str, Any],
) -> ResultDocument:
    """The servelab result document (``tool: locust``) of a merged Locust test."""
    options = run.options
    targets = sorted(set(run.targets))
    target = targets[0] if len(targets) == 1 else "mixed"
    start_second = int(run.window_start_s)
    recorder.finish()
    recorder.timeseries = [
        {**row, "t_s": int(row["t_s"]) - start_second} for row in recorder.timeseries
    ]
    window_s = max(run.window_end_s - run.window_start_s, 1e-9)
    run_time = option(options, "run_time")
    info = RunInfo(
        target=target,
        transport=target,
        mode="closed",  # Locust users send the next request when the last one ended
        model=_recorded_model(options, targets),
        seed=int(option(options, "seed", 42)),
        url=option(options, "host") or None,
        address=option(options, "grpc_host") or None,
        concurrency=option(options, "num_users"),
        duration_s=float(run_time) if run_time else None,
        batch_size=int(option(options, "batch_size", 256)) if "batch" in targets else None,
        api=str(option(options, "api", "v1")),
        protocol=str(option(options, "protocol", "servelab")),  # RestUser's wire contract
        tool="locust",
        label=option(options, "label"),
        partial=run.interrupted,
    )
    verdict = judge_locust(
        recorder, processes, interrupted=run.interrupted, distributed=run.distributed
    )
    extra: dict[str, Any] = {
        "bucketed_percentiles": False,
        "user_classes": list(run.user_classes),
        **transport_extra(side, window_s),
        "locust": {**run.locust_stats, "note": LOCUST_BUCKETS_NOTE},
        "workers": [{**asdict(p), "cpu_share": round(p.cpu_share, 4)} for p in processes],
        "generator": {
            "processes": len(processes),
            "max_cpu_share": max((p.cpu_share for p in processes), default=0.0),
            "window_epoch_s": [run.window_start_s, run.window_end_s],
        },
    }
    if option(options, "shape"):
        extra["shape"] = option(options, "shape")
    return build_result(
        info, recorder, window_s=window_s, verdict=verdict, environment=environment, extra=extra
    )


def evaluate_thresholds(expressions: list[str], summary: Mapping[str, Any]) -> list[Check]:
    """Every ``--threshold`` against the merged summary (already validated at parse time). A run
    that answered nothing fails them all: its zero latencies would pass any limit."""
    thresholds = [
        t for t in parse_thresholds(expressions, allow_relative=False)
        if isinstance(t, AbsoluteThreshold)
    ]  # fmt: skip
    if summary["requests"] - summary["expected_rejections"] <= 0:
        detail = "no answered requests: nothing to check"
        return [Check(t.expression, False, math.nan, t.value, detail) for t in thresholds]
    return check_absolute(list(thresholds), summary)


def threshold_lines(checks: list[Check]) -> list[str]:
    """One line per threshold, failures saying by how much."""
    return [
        f"servelab: threshold {'ok' if c.passed else 'FAILED'} {c.expression!r}: {c.detail}"
        for c in checks
    ]


def summary_line(result: Mapping[str, Any]) -> str:
    summary, verdict = result["summary"], result["verdict"]
    latency = summary["latency_ms"]
    state = "VALID" if verdict["valid"] else "INVALID — " + "; ".join(verdict["reasons"])
    return (
        f"servelab: {summary['requests']} requests, {summary['failures']} failures, "
        f"{summary['expected_rejections']} expected rejections; p50 {latency['p50']:.3f} ms, "
        f"p99 {latency['p99']:.3f} ms (exact); verdict {state}"
    )


def default_result_path(now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"locust-{stamp}.json"
