"""``servelab run`` end to end: it starts the target, runs, prints a summary and writes a result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.engine.histogram import LatencyHistogram
from loadtests.results.result import load_result
from tests.conftest import ServelabCli

# a bare environment: servelab starts its targets without the venv on PATH
ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}


def test_rest_run_starts_the_target_and_writes_every_field(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "r.json"
    result = servelab_cli(
        "run", "--target", "rest", "--rate", "200", "--arrival", "poisson", "--duration", "2s",
        "--seed", "7", "--invalid-fraction", "0.1", "--label", "ci", "--out", str(out),
        cwd=tmp_path, env=ENV,
    )  # fmt: skip
    # VALID (exit 0) or INVALID (exit 3) depends on how busy this shared machine is; the
    # verdict itself is tested on the virtual clock
    assert result.returncode in (0, 3), result.stderr
    assert ("verdict: VALID" in result.stdout) == (result.returncode == 0), result.stdout
    assert f"result: {out}" in result.stdout
    document = load_result(out)
    summary = document["summary"]
    assert summary["requests"] > 300
    assert summary["failures"] == 0
    assert summary["expected_rejections"] > 0
    assert summary["schema_success_rate"] == 1.0
    assert document["run"]["label"] == "ci"
    assert document["run"]["rate_per_s"] == 200
    assert document["cost"]["target_cpu_s"] > 0
    assert document["extra"]["client"] == "fast"  # the default for http://
    assert document["environment"]["logical_cores"] >= 1
    counted = summary["requests"] - summary["expected_rejections"]
    assert LatencyHistogram.decode(document["histograms"]["latency"]).total == counted


def test_json_output_for_ci(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    result = servelab_cli(
        "run", "--target", "inprocess", "--requests", "500", "--json", "--out",
        str(tmp_path / "r.json"), cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["summary"]["requests"] == 500
    assert summary["verdict"]["valid"] is True  # in-process, closed loop: no timing rule applies


def test_tight_loop_run_records_every_call(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "tight.json"
    result = servelab_cli(
        "run", "--target", "inprocess", "--loop", "tight", "--requests", "200000", "--out",
        str(out), cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = load_result(out)
    summary = document["summary"]
    assert summary["requests"] == summary["successes"] == 200_000
    assert document["run"]["concurrency"] == 1  # --loop tight: one back-to-back caller
    assert LatencyHistogram.decode(document["histograms"]["service_latency"]).total == 200_000


def test_rest_run_with_the_aiohttp_client(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "aiohttp.json"
    result = servelab_cli(
        "run", "--target", "rest", "--client", "aiohttp", "--requests", "300", "--out", str(out),
        cwd=tmp_path, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = load_result(out)
    assert document["summary"]["successes"] == 300
    assert document["extra"]["client"] == "aiohttp"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--target", "nope"], "invalid choice: 'nope'"),
        (["--target", "rest", "--rate", "0"], "expected a positive number"),
        (["--target", "rest", "--duration", "10"], "'10' is not a duration"),
        (["--target", "rest", "--rate", "5", "--concurrency", "2"], "not allowed with argument"),
        (["--target", "rest", "--url", "http://example.com"], "not a loopback address"),
        (["--target", "grpc", "--address", "10.0.0.8:50051"], "not a loopback address"),
        (["--target", "inprocess", "--model", "synthetic:x:1ms"], "unknown synthetic kind"),
        (["--target", "inprocess", "--ramp"], "--ramp needs --stages"),
        (["--target", "inprocess", "--trace", "/no/such/trace"], "cannot read trace"),
    ],
)
def test_bad_options_are_one_line_exit_2(
    tmp_path: Path, servelab_cli: ServelabCli, args: list[str], words: str
) -> None:
    result = servelab_cli("run", *args, cwd=tmp_path, env=ENV)
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stderr.strip().count("\n") == 0
