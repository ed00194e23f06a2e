"""Result files: the fields others read, atomic writes, and one-line refusals of bad files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome, RequestRecord
from loadtests.results.result import (
    SCHEMA_VERSION,
    ResultFileError,
    RunInfo,
    Verdict,
    build_result,
    load_result,
    write_result,
)

GOLDEN_V1 = Path(__file__).parent / "golden" / "result-v1.json"
GOLDEN = Path(__file__).parent / "golden" / "result-v2.json"


def _result() -> dict[str, Any]:
    recorder = Recorder(start_ns=0)
    for index in range(10):
        start = index * 100_000_000
        recorder.add(
            RequestRecord(
                start, start + 1_000, start + 5_000_000, predictions=1, wire_ns=start + 3_000
            )
        )
    failure = recorder.error_code("timeout")
    recorder.record(0, 0, 30_000_000, Outcome.FAILURE, failure, 0, False)
    recorder.record(0, 0, 1_000_000, Outcome.EXPECTED_REJECTION, 0, 0, True)
    run = RunInfo(target="rest", transport="rest", mode="closed", model="reference", seed=1)
    return dict[str, Any](
        build_result(
            run, recorder, window_s=1.0, verdict=Verdict(True, (), ("w",)), environment={"os": "x"}
        )
    )


def test_result_carries_every_documented_field(tmp_path: Path) -> None:
    result = _result()
    assert result["schema_version"] == SCHEMA_VERSION
    assert set(result) >= {
        "run", "environment", "cost", "verdict", "summary", "errors", "histograms",
        "timeseries", "extra",
    }  # fmt: skip
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert (summary["requests"], summary["successes"], summary["failures"]) == (12, 10, 1)
    assert summary["expected_rejections"] == 1
    assert summary["success_rate"] == pytest.approx(10 / 11)
    assert summary["schema_success_rate"] == pytest.approx(10 / 11)
    assert summary["throughput_rps"] == 10.0
    assert summary["latency_ms"]["p50"] == pytest.approx(5.0, rel=1e-3)
    assert set(summary["latency_ms"]) == {"min", "mean", "p50", "p90", "p95", "p99", "p999", "max"}
    assert result["errors"] == {"timeout": 1}
    run = result["run"]
    assert isinstance(run, dict)
    assert {
        "id",
        "started_at",
        "label",
        "profile",
        "api",
        "batch_size",
        "window_ms",
        "partial",
    } <= set(run)


def test_write_then_load_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "r.json"
    write_result(path, _result())
    assert load_result(path)["summary"]["requests"] == 12
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temp file left


@pytest.mark.parametrize("golden", [GOLDEN_V1, GOLDEN], ids=["v1", "v2"])
def test_golden_files_still_load(golden: Path) -> None:
    """Checked-in files of every version pin the format: they keep loading as the code evolves."""
    document = load_result(golden)
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["summary"]["requests"] == 12
    assert document["run"]["target"] == "rest"


def test_v1_file_is_upgraded_to_the_current_layout_with_client_queue_absent() -> None:
    upgraded = dict[str, Any](load_result(GOLDEN_V1))
    fresh = _result()
    for block in ("run", "summary", "verdict", "cost", "histograms"):
        assert set(upgraded[block]) == set(fresh[block]), block
    assert upgraded["upgraded_from"] == 1
    # v1 never saw the wire: its client-queue time is unknown, not zero
    assert upgraded["summary"]["client_queue_ms"] is None
    assert upgraded["histograms"]["client_queue"] is None
    # ... but its send lateness was recorded, so the summary is rebuilt from that histogram
    assert upgraded["summary"]["send_lateness_ms"]["max"] == pytest.approx(0.0, abs=0.01)
    # v1's latency blocks covered failures too: said so, never passed off as successes'
    assert upgraded["summary"]["latency_scope"] == "all"
    assert upgraded["summary"]["all_latency_ms"] == upgraded["summary"]["latency_ms"]
    assert upgraded["summary"]["failure_latency_ms"] is None


def test_latency_is_of_successes_and_failures_keep_their_time() -> None:
    summary = _result()["summary"]
    assert summary["latency_scope"] == "successes"
    assert summary["latency_ms"]["max"] == pytest.approx(5.0, rel=1e-2)
    # the one failure, a timeout at 30 ms, is in its own block and in "all", never hidden
    assert summary["failure_latency_ms"]["p50"] == pytest.approx(30.0, rel=1e-2)
    assert summary["all_latency_ms"]["max"] == pytest.approx(30.0, rel=1e-2)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ('{"kind": "servelab-result", "schema_version": 1, "run"', "not JSON"),
        ('{"stats": {}}', "not a servelab result file"),
        ("[1, 2]", "not a servelab result file"),
        ('{"kind": "servelab-result", "schema_version": 99, "run": {}}', "newer than this"),
        ('{"kind": "servelab-result", "schema_version": "1"}', "bad schema_version"),
        ('{"kind": "servelab-result", "schema_version": 1, "run": {}}', "missing summary"),
    ],
)
def test_unusable_files_are_refused_in_one_line(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ResultFileError) as caught:
        load_result(path)
    assert words in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match="cannot read"):
        load_result(tmp_path / "nope.json")


def test_golden_file_matches_the_current_layout() -> None:
    golden = json.loads(GOLDEN.read_text())
    fresh = _result()
    assert set(golden) == set(fresh)
    for block in ("run", "summary", "verdict", "cost", "histograms"):
        assert set(golden[block]) == set(fresh[block]), block
