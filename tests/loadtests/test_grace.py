"""After the run's duration, requests still in flight get the grace (``--grace``); those still
open then are cut, counted as timeouts at the time they took — never as fast, never lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtests.drivers.base import FakeDriver
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import CUT_BY_GRACE, Harness, LoadPlan
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import PayloadGenerator, PayloadSpec


def _run(driver: FakeDriver, plan: LoadPlan) -> tuple[Harness, list[tuple[int, float]]]:
    said: list[tuple[int, float]] = []
    harness = Harness(
        driver, PayloadGenerator(PayloadSpec(), 1), plan,
        on_grace=lambda count, grace_s: said.append((count, grace_s)),
    )  # fmt: skip

    async def main() -> None:
        await harness.run()

    run_virtual(main)
    return harness, said


def test_a_target_that_never_answers_costs_the_duration_plus_the_grace() -> None:
    hang = FakeDriver(lambda _: 3600.0)  # answers after an hour
    plan = LoadPlan(mode="closed", concurrency=2, duration_s=3.0, drain_timeout_s=0.5)
    harness, said = _run(hang, plan)
    recorder = harness.recorder
    assert said == [(2, 0.5)]  # told on stderr: two outstanding, half a second
    assert harness.stats.window_s == pytest.approx(3.5)  # not 30 s, not an hour
    assert recorder.errors == {CUT_BY_GRACE: 2}
    assert recorder.successes == 0
    # each timeout is recorded at the time it took: from its start to the cut
    assert recorder.failure_latency.summary_ms()["min"] == pytest.approx(3500.0, rel=1e-3)
    assert recorder.latency.total == 0  # no success to describe


def test_answers_within_the_grace_are_kept() -> None:
    slow = FakeDriver(lambda _: 0.8)
    plan = LoadPlan(mode="closed", concurrency=1, duration_s=1.0, drain_timeout_s=1.0)
    harness, said = _run(slow, plan)
    assert said == [(1, 1.0)]
    assert harness.recorder.successes == 2  # the second ended inside the grace
    assert harness.recorder.failures == 0


def test_open_loop_cuts_what_the_grace_cannot_save() -> None:
    slow = FakeDriver(lambda payload: 10.0)
    plan = LoadPlan(
        mode="open", profile=RateProfile.constant(10.0), duration_s=1.0, drain_timeout_s=2.0
    )
    harness, said = _run(slow, plan)
    recorder = harness.recorder
    assert said == [(10, 2.0)]
    assert recorder.errors == {CUT_BY_GRACE: 10}
    assert harness.stats.abandoned == 10
    # the first was sent at 0 s and cut at 3 s; the last at 0.9 s
    assert recorder.failure_latency.summary_ms()["max"] == pytest.approx(3000.0, rel=1e-3)
    assert recorder.failure_latency.summary_ms()["min"] == pytest.approx(2100.0, rel=1e-3)


def test_requests_in_flight_at_the_end_finish_in_the_default_grace() -> None:
    driver = FakeDriver(lambda _: 0.3)  # sends at 0, 0.3, 0.6, 0.9 s: the last ends at 1.2 s
    harness, said = _run(driver, LoadPlan(mode="closed", concurrency=2, duration_s=1.0))
    assert said == [(2, 5.0)]
    assert harness.recorder.successes == 8
    assert harness.recorder.failures == 0
    assert harness.stats.window_s == pytest.approx(1.2)


def test_servelab_run_says_what_the_grace_waits_for_and_cuts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A target that answers the probe, then never again: the run ends at its duration plus
    the grace, says so on stderr, records the cut requests as timeouts and fails its gate."""
    from loadtests.cli.app import main
    from loadtests.results.result import load_result
    from tests.loadtests.faulty import HANG, FaultyRestTarget, ThreadedTarget, burst

    out = tmp_path / "r.json"
    with ThreadedTarget(lambda: FaultyRestTarget(burst(HANG, 1, 10**9))) as target:
        code = main([
            "run", "--target", "rest", "--url", target.where, "--concurrency", "2",
            "--duration", "1s", "--grace", "0.3s", "--out", str(out), "--no-progress",
        ])  # fmt: skip
    err = capsys.readouterr().err
    assert "2 request(s) still in flight after the run; waiting up to 0.3 s (--grace)" in err
    assert code == 1  # the default gate: nothing succeeded
    result = dict[str, Any](load_result(out))
    assert result["errors"] == {CUT_BY_GRACE: 2}
    # each timeout took the run's second plus the grace, and is recorded at that time
    assert result["summary"]["failure_latency_ms"]["min"] >= 1300
