"""The self-benchmark's arithmetic (it asserts nothing about time itself): goal ratios from rows,
its option errors, and the wrk output it parses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.selfbench.common import Row
from benchmarks.selfbench.report import BUSY, FAST, goals
from benchmarks.selfbench.rest import _WRK_LATENCY, _WRK_RATE, _WRK_TOTAL

ROOT = Path(__file__).resolve().parents[1]


def _rows() -> list[Row]:
    return [
        Row("rest", FAST, "nginx", rate_per_s=50_000, cpu_us_per_request=20.0),
        Row("rest", "Locust FastHttpUser", "nginx", rate_per_s=7_000, cpu_us_per_request=130.0),
        Row("rest", FAST, "FastAPI target", rate_per_s=7_000, cpu_us_per_request=45.0),
        Row("rest", BUSY, "FastAPI target", rate_per_s=8_100, cpu_us_per_request=120.0),
        Row("rest", "Locust FastHttpUser", "FastAPI target", rate_per_s=8_000),
        Row(
            "grpc",
            "servelab run --target grpc",
            "gRPC target",
            rate_per_s=3_900,
            cpu_us_per_request=176.0,
        ),
        Row(
            "grpc", "bare grpc.aio unary", "gRPC target", rate_per_s=4_000, cpu_us_per_request=160.0
        ),
        Row("memory", "servelab run --loop tight, 100 M requests", "-", extra={"growth_mb": 60.0}),
        Row("processes", "servelab run --loop tight --processes 2", "-", rate_per_s=1_900_000),
        Row("processes", "servelab run --loop tight --processes 1", "-", rate_per_s=1_000_000),
    ]


def test_goals_are_ratios_of_the_rows_and_say_what_is_met() -> None:
    by_name = {goal["goal"]: goal for goal in goals(_rows())}
    per_core = by_name["REST per client core vs Locust FastHttpUser (fast server)"]
    assert per_core["value"] == pytest.approx(130.0 / 20.0)  # 1/CPU per request, compared
    assert per_core["met"] is True
    target = by_name["REST throughput vs the best client (FastAPI target)"]
    assert target["value"] == pytest.approx(1.0)  # --busy-poll is itself the best client here
    assert by_name["gRPC unary vs bare grpc.aio"]["value"] == pytest.approx(0.975)
    unary_cpu = by_name["  gRPC unary client CPU per call vs bare"]
    assert (unary_cpu["value"], unary_cpu["met"]) == (pytest.approx(1.1), True)  # <= 1.10
    assert by_name["recording memory growth (MB, largest run)"]["met"] is False  # 60 > 50
    assert by_name["gRPC stream vs bare grpc.aio"]["met"] is None  # not run
    two_processes = by_name["--processes 2 vs 1, in-process, tight loop"]
    assert two_processes["value"] == pytest.approx(1.9)
    assert two_processes["met"] is True
    assert by_name["--processes 2 vs 1, in-process, harness loop"]["met"] is None


def test_wrk_output_is_read_for_rate_total_and_percentiles() -> None:
    output = """Running 5s test @ http://127.0.0.1:1/v1/predict
  Latency Distribution
     50%  331.00us
     99%    1.20ms
  883771 requests in 5.00s, 234.39MB read
Requests/sec: 176744.79
"""
    latencies = {m.group(1): (m.group(2), m.group(3)) for m in _WRK_LATENCY.finditer(output)}
    assert latencies == {"50": ("331.00", "us"), "99": ("1.20", "ms")}
    total, rate = _WRK_TOTAL.search(output), _WRK_RATE.search(output)
    assert total is not None
    assert total.group(1) == "883771"
    assert rate is not None
    assert float(rate.group(1)) == 176744.79


@pytest.mark.parametrize(
    ("args", "culprit"), [(["--parts", "rest,nope"], "--parts"), (["--seconds", "0"], "--seconds")]
)
def test_bad_options_are_one_line_exit_2(args: list[str], culprit: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.selfbench", *args], capture_output=True, text=True,
        cwd=ROOT, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert culprit in done.stderr
    assert "Traceback" not in done.stderr
