"""``servelab freshness``: a short real run (makespans measured on the batch target, a real
streaming window) and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.cli.app import main
from loadtests.results.freshness import BACKFILL, STREAM, points_of
from reports.load import load_runs


def test_a_short_run_measures_makespans_and_writes_a_report_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "freshness.json"
    argv = [
        "freshness", "--rate", "20", "--schedules", "1m,10m", "--windows", "5ms",
        "--horizon", "10m", "--sample-rows", "2000", "--stream-duration", "0.5s",
        "--warmup", "0s", "--out", str(out), "--allow-invalid",
    ]  # fmt: skip
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed
    loaded = load_runs([str(out)])
    assert not loaded.warnings
    (run,) = loaded.runs
    document = run.document
    points = {point.label: point for point in points_of(document)}
    assert list(points) == ["1m backfill", "10m backfill", "stream 5ms"]
    minutely, ten = points["1m backfill"], points["10m backfill"]
    assert minutely.kind == ten.kind == BACKFILL
    # ~1,200 rows a minute: real runs while the 8,000-row budget lasts, then scaled
    assert minutely.detail["runs"] == 10
    assert minutely.detail["measured_runs"] > 0
    assert minutely.detail["scaled_runs"] > 0
    assert ten.detail["scaled_runs"] == 1  # ~12,000 rows, past the 2,000-row bound
    assert minutely.events == ten.events == document["extra"]["freshness"]["virtual_events"]
    makespan_s = minutely.detail["makespan_s"]["max"]
    assert 0 < makespan_s < 30
    assert 25 < minutely.p50_s < 35 + makespan_s  # half a minute's wait, plus the makespan
    assert minutely.max_s <= 60 + makespan_s
    assert ten.p50_s > 5 * minutely.p50_s
    scaling = document["extra"]["freshness"]["makespan"]["scaling"]
    assert scaling["sample_rows"] == [500, 2000]
    assert scaling["rows_per_s"] > 0
    assert (minutely.cpu_s_per_1k or 0) > 0
    stream = points["stream 5ms"]
    assert stream.kind == STREAM
    assert stream.events == document["summary"]["successes"] > 0
    assert 0.004 < stream.p50_s < 1.0  # the 5 ms window's wait is inside it
    assert document["run"]["target"] == "freshness"
    assert "1m backfill" in printed


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["--schedules", "hourly"], "--schedules"),
        (["--schedules", "500ms"], "--schedules"),
        (["--windows", "2ms,2m"], "--windows"),
        (["--horizon", "1m"], "--horizon"),
        (["--rate", "1000", "--horizon", "168h"], "--rate"),
        (["--sample-rows", "3"], "--sample-rows"),
        (["--model", "nosuch_pkg_x:fn"], "nosuch_pkg_x"),
        (["--threshold", "p99<<1"], "p99<<1"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(
    argv: list[str], culprit: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never.json"
    code = main(["freshness", *argv, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert culprit in err
    assert not out.exists()
