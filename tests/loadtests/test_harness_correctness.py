"""Correctness of the measurement engine on a virtual clock: exact, reproducible numbers."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from loadtests.drivers.base import FakeDriver
from loadtests.drivers.inprocess import InProcessDriver
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import Harness, LoadPlan, lateness_over
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.results.result import RunInfo, Verdict, build_result, load_result, write_result
from loadtests.results.verdict import judge_run
from targets.spec import load_model

LOGNORMAL = "synthetic:lognormal:5ms:0.5"
Z = {50: 0.0, 99: 2.3263478740408408, 99.9: 3.090232306167813}


def _hdr_rank_value(ordered: np.ndarray, percentile: float) -> float:
    rank = max(int(percentile * ordered.size / 100 + 0.5), 1)
    return float(ordered[rank - 1])


def _run(driver: Any, plan: LoadPlan, spec: PayloadSpec | None = None) -> Harness:
    harness = Harness(driver, PayloadGenerator(spec or PayloadSpec(), 1), plan, schedule_seed=3)

    async def main() -> None:
        await harness.run()

    run_virtual(main)
    return harness


def _write_and_reload(harness: Harness, tmp_path: Path) -> dict[str, Any]:
    run = RunInfo(
        target="inprocess", transport="inprocess", mode=harness.plan.mode, model="m", seed=1
    )
    result = build_result(
        run,
        harness.recorder,
        window_s=harness.stats.window_s,
        verdict=Verdict(True),
        environment={},
    )
    path = tmp_path / "result.json"
    write_result(path, result)
    return dict[str, Any](load_result(path))


def test_percentiles_from_the_result_file_match_replayed_service_times(tmp_path: Path) -> None:
    requests = 20_000
    harness = _run(
        InProcessDriver(load_model(LOGNORMAL)),
        LoadPlan(concurrency=1, duration_s=None, requests=requests),
    )
    result = _write_and_reload(harness, tmp_path)
    assert result["summary"]["requests"] == requests
    # The model's service times, replayed from the same seeded RNG (seed 0, one draw per call).
    rng = random.Random(0)
    replayed_ns = np.sort(
        np.array([rng.lognormvariate(math.log(0.005), 0.5) * 1e9 for _ in range(requests)])
    )
    service = LatencyHistogram.decode(result["histograms"]["service_latency"])
    for percentile in (50, 99, 99.9):
        exact = _hdr_rank_value(replayed_ns, percentile)
        assert service.percentile_ns(percentile) == pytest.approx(exact, rel=1e-3)
        analytic = 0.005 * math.exp(0.5 * Z[percentile]) * 1e9
        # sampling error of a quantile at n=20,000: a few percent even in the tail
        assert service.percentile_ns(percentile) == pytest.approx(analytic, rel=0.06)
    # closed loop at concurrency 1: the intended start is the send, so both latencies agree
    latency = LatencyHistogram.decode(result["histograms"]["latency"])
    assert latency.percentile_ns(99) == service.percentile_ns(99)


def test_histogram_counts_equal_the_summary_counts(tmp_path: Path) -> None:
    spec = PayloadSpec(invalid_fraction=0.25)
    harness = _run(
        InProcessDriver(load_model("synthetic:fixed:2ms")),
        LoadPlan(concurrency=4, duration_s=5.0),
        spec,
    )
    result = _write_and_reload(harness, tmp_path)
    summary = result["summary"]
    counted = summary["requests"] - summary["expected_rejections"]
    assert LatencyHistogram.decode(result["histograms"]["latency"]).total == counted
    assert LatencyHistogram.decode(result["histograms"]["service_latency"]).total == counted
    assert summary["expected_rejections"] > 0
    assert summary["failures"] == 0
    assert summary["schema_success_rate"] == 1.0
    assert sum(row["requests"] for row in result["timeseries"]) == counted


def _late_driver(late_count: int) -> FakeDriver:
    """1 ms answers, except ``late_count`` evenly spread calls in every 100 take 15 ms: with one
    request in flight at a time and a 10 ms interval, each slow answer makes one send 5 ms late."""
    calls = 0
    slow = {index * (100 // late_count) for index in range(late_count)}

    def service_time_s(_: Payload) -> float:
        nonlocal calls
        calls += 1
        return 0.015 if calls % 100 in slow else 0.001

    return FakeDriver(service_time_s)


@pytest.mark.parametrize(("late_count", "valid"), [(3, True), (7, False)])
def test_late_sends_decide_the_verdict(late_count: int, valid: bool) -> None:
    plan = LoadPlan(
        mode="open", profile=RateProfile.constant(100), duration_s=20.0, max_in_flight=1
    )
    harness = _run(_late_driver(late_count), plan)
    assert lateness_over(harness.recorder, 1_000_000) == pytest.approx(late_count / 100, abs=0.002)
    verdict = judge_run(harness.recorder, harness.stats, mode="open", in_process=True)
    assert verdict.valid is valid
    if not valid:
        assert verdict.reasons == (
            "load generator could not keep up: 7.0% of sends started more than 1 ms late "
            "(limit 5%)",
        )


def test_open_loop_charges_the_queueing_delay() -> None:
    service_s, rate = 0.010, 150.0  # overloaded: capacity 100/s with one request in flight
    plan = LoadPlan(
        mode="open", profile=RateProfile.constant(rate), duration_s=2.0, max_in_flight=1
    )
    harness = _run(FakeDriver(lambda _: service_s), plan)
    recorder = harness.recorder
    # Independently: the Lindley recursion of a single FIFO server.
    scheduled = np.arange(recorder.requests) / rate
    end = 0.0
    latencies = []
    for start in scheduled:
        end = max(start, end) + service_s
        latencies.append(end - start)
    expected = np.array(latencies)
    assert recorder.service.percentile_ns(50) == pytest.approx(service_s * 1e9, rel=1e-3)
    assert recorder.latency.hdr.get_mean_value() == pytest.approx(expected.mean() * 1e9, rel=2e-3)
    assert recorder.latency.percentile_ns(99) == pytest.approx(
        _hdr_rank_value(np.sort(expected * 1e9), 99), rel=1e-3
    )
    assert recorder.latency.percentile_ns(50) > 10 * recorder.service.percentile_ns(50)


def test_same_seed_gives_identical_summaries(tmp_path: Path) -> None:
    def summary() -> dict[str, Any]:
        plan = LoadPlan(
            mode="open", profile=RateProfile.constant(300), arrival="poisson", duration_s=5
        )
        harness = _run(
            InProcessDriver(load_model(LOGNORMAL)), plan, PayloadSpec(invalid_fraction=0.1)
        )
        return cast("dict[str, Any]", _write_and_reload(harness, tmp_path)["summary"])

    assert summary() == summary()


def test_warmup_requests_are_not_recorded() -> None:
    harness = _run(
        FakeDriver(lambda _: 0.010), LoadPlan(concurrency=1, duration_s=1.0, warmup_s=1.0)
    )
    assert harness.recorder.requests == 100  # 1 s of 10 ms requests; the warm-up's 100 dropped
