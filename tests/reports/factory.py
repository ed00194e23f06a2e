"""Test helpers: golden files, synthetic runs from numpy samples, result documents on disk."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
from numpy.typing import ArrayLike

from loadtests.engine.harness import RunStats
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import WIRE_UNSEEN
from loadtests.results.result import RunInfo, build_result
from loadtests.results.verdict import judge_run
from reports.buckets import Buckets, FloatArray, buckets_of
from reports.stats import RunSample

GOLDEN = Path(__file__).parent / "golden"
BENCH = GOLDEN / "bench"  # in-process, REST and batch from `servelab bench --quick`
# REST, gRPC and batch runs under two hardware profiles (the "done when" mix)
MIX = [
    str(GOLDEN / f"{t}-{p}.json") for t in ("rest", "grpc", "batch") for p in ("laptop", "server")
]


def drawn(data: ArrayLike) -> FloatArray:
    """The numbers an artist holds (a line's x or y, a scatter's offsets): Matplotlib types them
    as any ``ArrayLike``, the charts draw them from arrays of numbers."""
    return cast("FloatArray", data)


def golden(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((GOLDEN / name).read_bytes())
    return document


def buckets_from_ms(values_ms: np.ndarray) -> Buckets:
    histogram = LatencyHistogram()
    histogram.record_many((values_ms * 1e6).astype(np.int64))
    return buckets_of(histogram)


def lognormal_sample(
    rng: np.random.Generator, n: int, *, median_ms: float = 5.0, sigma: float = 0.5
) -> RunSample:
    """One synthetic run of ``n`` lognormal latencies (the only thing the latency stats read)."""
    values = rng.lognormal(np.log(median_ms), sigma, n)
    return RunSample({"successes": n, "requests": n}, latency=buckets_from_ms(values))


def write_variant(source: str, destination: Path, **run_fields: Any) -> Path:
    """A copy of golden ``source`` with ``run`` fields replaced (label, profile, repeat …)."""
    document = copy.deepcopy(golden(source))
    document["run"].update(run_fields)
    destination.write_bytes(orjson.dumps(document))
    return destination


def write_document(document: dict[str, Any], target: Path) -> Path:
    target.write_bytes(orjson.dumps(document))
    return target


def recorded_result(
    *,
    queue_ms: float,
    wire_seen: bool = True,
    target: str = "rest",
    mode: str = "closed",
    label: str = "",
    requests: int = 400,
) -> dict[str, Any]:
    """A result made as ``servelab run`` makes one: a ``Recorder`` fed the four instants of each
    request, judged by the engine's verdict, built by ``build_result``.

    Each request waits up to ``queue_ms`` (evenly spread, so p99 is ``queue_ms``) between
    dispatch and the wire, then 2-2.6 ms on the wire. ``wire_seen=False`` is a driver that
    cannot see the wire (gRPC unary, Locust): the wait is still there, hidden in service time.
    An open loop dispatches 0.5 ms late, so intended-start latency and service time differ."""
    recorder = Recorder(start_ns=0)
    late_ns = 500_000 if mode == "open" else 0
    for index in range(requests):
        scheduled = index * 5_000_000
        dispatched = scheduled + late_ns
        wire = dispatched + round(queue_ms * 1e6 * (index % 100) / 99)
        ended = wire + 2_000_000 + (index % 7) * 100_000
        seen = wire if wire_seen else WIRE_UNSEEN
        recorder.record(scheduled, dispatched, ended, 0, 0, 1, True, seen)
    recorder.finish()
    window_ns = requests * 5_000_000
    stats = RunStats(measure_end_ns=window_ns, wall_s=window_ns / 1e9, transport=target)
    verdict = judge_run(recorder, stats, mode=mode, in_process=False)
    run = RunInfo(
        target=target,
        transport=target,
        mode=mode,
        model="reference",
        seed=1,
        concurrency=8 if mode == "closed" else None,
        rate_per_s=200.0 if mode == "open" else None,
        profile="laptop",
        label=label,
    )
    # a plain dict: the tests read and edit it as the JSON it becomes
    return dict[str, Any](
        build_result(
            run, recorder, window_s=window_ns / 1e9, verdict=verdict, environment={"hostname": "t"}
        )
    )
