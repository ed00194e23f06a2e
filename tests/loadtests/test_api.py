"""The Python API, as the README shows it."""

from __future__ import annotations

from pathlib import Path

import loadtests
from loadtests import InProcessDriver, LoadPlan, PayloadSpec, run_load_test
from loadtests.results.result import load_result
from targets import load_model


def test_public_api_is_sorted_and_resolves() -> None:
    assert loadtests.__all__ == sorted(loadtests.__all__)
    for name in loadtests.__all__:
        assert getattr(loadtests, name) is not None


def test_readme_example_runs_and_writes_a_result(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    outcome = run_load_test(
        InProcessDriver(load_model("synthetic:lognormal:5ms:0.5")),
        plan=LoadPlan(mode="closed", concurrency=8, duration_s=None, requests=5_000),
        payloads=PayloadSpec(invalid_fraction=0.05),
        virtual_time=True,
        out=out,
    )
    assert outcome.verdict.valid
    assert outcome.summary["requests"] == 5_000
    assert 250 <= outcome.summary["expected_rejections"] <= 350
    assert 4.5 < outcome.summary["latency_ms"]["p50"] < 5.5
    assert load_result(out)["summary"] == outcome.summary
