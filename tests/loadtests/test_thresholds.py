"""The threshold grammar shared by locust --threshold, compare and bench."""

from __future__ import annotations

from typing import Any

import pytest

from loadtests.results.thresholds import (
    AbsoluteThreshold,
    RelativeThreshold,
    ThresholdError,
    check_absolute,
    parse_threshold,
    parse_thresholds,
)


def _summary(p99: float = 40.0, throughput: float = 1000.0) -> dict[str, Any]:
    latency = {"min": 1.0, "mean": 10.0, "p50": 8.0, "p90": 20.0, "p95": 30.0, "p99": p99,
               "p999": 60.0, "max": 90.0}  # fmt: skip
    return {
        "requests": 1000, "successes": 995, "failures": 5, "expected_rejections": 0,
        "success_rate": 0.995, "schema_success_rate": 0.999, "throughput_rps": throughput,
        "predictions_per_s": throughput, "window_s": 1.0,
        "latency_ms": latency, "service_latency_ms": {**latency, "p99": p99 / 2},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("expression", "metric", "op", "value"),
    [
        ("p99<50ms", "p99", "<", 50.0),
        ("p99 < 0.05s", "p99", "<", 50.0),
        ("p999<=250us", "p999", "<=", 0.25),
        ("p95<30", "p95", "<", 30.0),
        ("service_p99<=20ms", "service_p99", "<=", 20.0),
        ("latency_max<1s", "latency_max", "<", 1000.0),
        ("schema_success_rate>=0.999", "schema_success_rate", ">=", 0.999),
        ("success_rate>=99.5%", "success_rate", ">=", 0.995),
        ("fail_ratio<0.01", "fail_ratio", "<", 0.01),
        ("throughput_rps>=500", "throughput_rps", ">=", 500.0),
    ],
)
def test_absolute_expressions_parse(expression: str, metric: str, op: str, value: float) -> None:
    threshold = parse_threshold(expression)
    assert isinstance(threshold, AbsoluteThreshold)
    assert (threshold.metric, threshold.op) == (metric, op)
    assert threshold.value == pytest.approx(value)


def test_relative_expressions_parse() -> None:
    grow = parse_threshold("p99:+10%")
    drop = parse_threshold("throughput_rps:-5%")
    assert isinstance(grow, RelativeThreshold)
    assert isinstance(drop, RelativeThreshold)
    assert grow.allowed_change == pytest.approx(0.10)
    assert drop.allowed_change == pytest.approx(-0.05)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("p99", "malformed"),
        ("p99<<5ms", "is not a latency"),
        ("p99<fast", "is not a latency"),
        ("p98<5ms", "unknown metric 'p98'"),
        ("latency<5ms", "unknown metric 'latency'"),
        ("throughput_rps>=many", "is not a number"),
        ("throughput_rps>=inf", "not a finite number"),
        ("p99:10%", "malformed"),
        ("bogus:+5%", "unknown metric 'bogus'"),
        ("", "malformed"),
    ],
)
def test_malformed_expressions_name_themselves(expression: str, words: str) -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_threshold(expression)
    assert repr(expression) in str(caught.value) or "bogus" in str(caught.value)
    assert words in str(caught.value)


def test_relative_thresholds_can_be_refused_where_there_is_no_baseline() -> None:
    with pytest.raises(ThresholdError, match="need a baseline"):
        parse_threshold("p99:+10%", allow_relative=False)


def test_absolute_checks_say_by_how_much() -> None:
    checks = check_absolute(
        parse_thresholds(["p99<50ms", "p99<30ms", "fail_ratio<0.01", "service_p99<=20ms"]),
        _summary(p99=40.0),
    )
    assert [check.passed for check in checks] == [True, False, True, True]
    assert checks[1].actual == 40.0
    assert "p99 = 40 ms, limit < 30 ms: off by +10 ms, +33.3%" in checks[1].detail
    assert checks[2].actual == pytest.approx(0.005)


def test_relative_checks_allow_the_stated_change() -> None:
    grow, drop = parse_thresholds(["p99:+10%", "throughput_rps:-5%"])
    assert isinstance(grow, RelativeThreshold)
    assert isinstance(drop, RelativeThreshold)
    baseline = _summary(p99=40.0, throughput=1000.0)
    assert grow.check_pair(baseline, _summary(p99=43.9)).passed
    assert not grow.check_pair(baseline, _summary(p99=44.1)).passed
    assert drop.check_pair(baseline, _summary(throughput=951.0)).passed
    failed = drop.check_pair(baseline, _summary(throughput=949.0))
    assert not failed.passed
    assert "-5.1%" in failed.detail


def test_failure_and_all_latencies_are_gates_and_empty_successes_never_pass() -> None:
    from loadtests.results.thresholds import check_absolute, parse_thresholds

    block = dict.fromkeys(("min", "mean", "p50", "p90", "p95", "p99", "p999", "max"), 0.0)
    dead = {
        "successes": 0, "success_rate": 0.0, "latency_ms": block, "service_latency_ms": block,
        "client_queue_ms": None, "failure_latency_ms": {**block, "p99": 30_000.0},
        "all_latency_ms": {**block, "p99": 30_000.0},
    }  # fmt: skip
    gates = parse_thresholds(
        ["p99<50ms", "failure_p99<1s", "all_p99<1s", "client_queue_p99<1ms"], allow_relative=False
    )
    checks = {c.expression: c for c in check_absolute(gates, dead)}
    assert not checks["p99<50ms"].passed  # 0 ms of no successes is not fast
    assert "no successful request" in checks["p99<50ms"].detail
    assert not checks["failure_p99<1s"].passed  # the 30 s timeouts are seen
    assert not checks["all_p99<1s"].passed
    assert not checks["client_queue_p99<1ms"].passed
    absent = {**dead, "successes": 10}  # successes, but a driver that cannot see the wire
    (queue,) = check_absolute(parse_thresholds(["client_queue_p99<1ms"]), absent)
    assert not queue.passed  # not measured: said, never passed
    assert "not measured" in queue.detail
