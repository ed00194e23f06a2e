"""Cold starts through the load side: the recorder keeps cold and warm latencies apart, the
REST driver reads the front's header, and ``servelab run --target function`` records counts,
share, both histograms and the instances' CPU."""

from __future__ import annotations

from pathlib import Path

from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome, RequestRecord
from loadtests.results.result import RunInfo, Verdict, build_result, load_result
from tests.conftest import ServelabCli

ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}
MS = 1_000_000


def test_the_recorder_folds_cold_and_warm_latencies_into_two_histograms() -> None:
    recorder = Recorder(split_cold_starts=True, fold_every=2)  # folds mid-way too
    for index, (latency_ms, cold, outcome) in enumerate(
        [(900, True, Outcome.OK), (2, False, Outcome.OK), (3, False, Outcome.OK),
         (800, True, Outcome.FAILURE), (4, False, Outcome.EXPECTED_REJECTION)]
    ):  # fmt: skip
        start = index * 1000 * MS
        recorder.add(
            RequestRecord(start, start, start + latency_ms * MS, outcome=outcome,
                          error_class="http_502" if outcome == Outcome.FAILURE else None,
                          cold_start=cold)
        )  # fmt: skip
    recorder.finish()
    assert recorder.cold_starts == 2  # the failed cold start counts, the rejection is not judged
    assert (recorder.cold_latency.total, recorder.warm_latency.total) == (1, 2)  # successes
    assert recorder.cold_latency.percentile_ns(50) // MS == 900
    assert recorder.warm_latency.percentile_ns(100) // MS == 3
    document = build_result(
        RunInfo(target="function", transport="function", mode="closed", model="reference",
                seed=1),
        recorder, window_s=5.0, verdict=Verdict(True), environment={},
    )  # fmt: skip
    block = document["summary"]["cold_starts"]
    assert (block["count"], block["share"]) == (2, 0.5)
    assert block["warm_latency_ms"] is not None
    assert block["warm_latency_ms"]["max"] < 4
    assert LatencyHistogram.decode(document["histograms"]["cold_latency"] or "").total == 1


def test_a_recorder_that_does_not_split_writes_no_cold_start_block() -> None:
    recorder = Recorder()
    recorder.add(RequestRecord(0, 0, MS, cold_start=True))
    document = build_result(
        RunInfo(target="rest", transport="rest", mode="closed", model="reference", seed=1),
        recorder, window_s=1.0, verdict=Verdict(True), environment={},
    )  # fmt: skip
    assert "cold_starts" not in document["summary"]
    assert "cold_latency" not in document["histograms"]


def test_a_function_run_counts_one_cold_start_then_warm_answers(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "f.json"
    result = servelab_cli(
        "run", "--target", "function", "--concurrency", "1", "--requests", "12",
        "--max-function-instances", "1", "--idle-timeout", "60s", "--out", str(out),
        cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = load_result(out)
    summary = document["summary"]
    assert (summary["requests"], summary["failures"]) == (12, 0)
    cold_starts = summary["cold_starts"]
    assert (cold_starts["count"], cold_starts["share"]) == (1, 1 / 12)
    histograms = document["histograms"]
    cold = LatencyHistogram.decode(histograms["cold_latency"] or "")
    warm = LatencyHistogram.decode(histograms["warm_latency"] or "")
    assert (cold.total, warm.total) == (1, 11)
    assert document["run"]["target"] == "function"
    assert document["cost"]["source"] == "reported"
    assert document["cost"]["target_cpu_s"] > 0  # the instance's start and model load
    assert document["cost"]["scope"].startswith("function instances")


def test_front_options_go_with_the_function_target_only(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    result = servelab_cli(
        "run", "--target", "rest", "--requests", "1", "--idle-timeout", "1s", cwd=tmp_path,
        env=ENV,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "servelab: --idle-timeout and --max-function-instances go with --target function"
    ]
