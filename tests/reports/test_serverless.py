"""The landscape's serverless row: warm p50 against the p99 with cold starts, and the cost with
scale-to-zero, read from function runs' cold/warm histograms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from loadtests.engine.histogram import LatencyHistogram
from reports.analysis import analyse
from reports.landscape import landscape
from reports.load import group_cells, load_runs
from tests.reports.factory import golden, write_document

MS = 1_000_000


def _histogram(values_ms: list[float]) -> str:
    histogram = LatencyHistogram()
    histogram.record_many(np.asarray([round(v * MS) for v in values_ms], dtype=np.int64))
    return histogram.encode()


def _function_run(cold_ms: list[float], warm_ms: list[float]) -> dict[str, Any]:
    document = golden("rest-laptop.json")
    document["run"].update(target="function", transport="function")
    judged = document["summary"]["requests"] - document["summary"]["expected_rejections"]
    document["summary"]["cold_starts"] = {
        "count": len(cold_ms), "share": len(cold_ms) / judged,
        "cold_latency_ms": None, "warm_latency_ms": None,
    }  # fmt: skip
    document["histograms"]["cold_latency"] = _histogram(cold_ms) if cold_ms else None
    document["histograms"]["warm_latency"] = _histogram(warm_ms)
    document["histograms"]["latency"] = _histogram(cold_ms + warm_ms)  # all of them
    return document


def _serverless(tmp_path: Path, document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    write_document(document, tmp_path / "function.json")
    claims = landscape(analyse(group_cells(load_runs([str(tmp_path)]).runs)))
    return {c.claim: (c.outcome, c.evidence) for c in claims if c.pattern == "serverless"}


def test_cold_starts_slower_than_every_warm_answer_show_in_the_tail(tmp_path: Path) -> None:
    rows = _serverless(tmp_path, _function_run([900.0, 950.0], [1.0, 2.0, 3.0] * 20))
    outcome, evidence = rows["cold starts in the tail"]
    assert outcome == "held"
    assert evidence.startswith("p50 warm 2 ms vs p99 ")
    assert "2 cold start(s)" in evidence
    assert "cold p50 900 ms" in evidence
    outcome, evidence = rows["cost per 1k predictions with scale-to-zero"]
    assert outcome == "measured"
    assert "CPU-s/1k" in evidence


def test_warm_answers_queued_behind_a_cold_start_are_still_its_tail(tmp_path: Path) -> None:
    # the answers that waited for the starting instance are warm (they started none), but
    # slow because of it: the p99 with cold starts is still cold-start latency
    warm = [2.0] * 90 + [400.0, 420.0, 440.0, 460.0]
    rows = _serverless(tmp_path, _function_run([450.0, 470.0], warm))
    outcome, evidence = rows["cold starts in the tail"]
    assert outcome == "held"
    assert "cold p50 450 ms" in evidence


def test_cold_starts_too_rare_for_the_p99_are_not_its_tail(tmp_path: Path) -> None:
    rows = _serverless(tmp_path, _function_run([900.0], [1.0, 2.0, 3.0] * 100))
    assert rows["cold starts in the tail"][0] == "did not hold"


def test_a_run_without_a_cold_start_is_inconclusive(tmp_path: Path) -> None:
    rows = _serverless(tmp_path, _function_run([], [1.0, 2.0, 3.0]))
    outcome, evidence = rows["cold starts in the tail"]
    assert outcome == "inconclusive"
    assert "0 cold start(s)" in evidence
    assert evidence.endswith("not exercised: no request started an instance")
