"""Every wrong option, missing file, bad duration/rate/SPEC and conflicting flag: one line on
stderr naming the option or file and what is wrong with it, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.cli import main

MISSING = "/no/such/path/servelab-test"

CASES = [
    # serve
    (["serve", "rest", "--port", "x"], "--port"),
    (["serve", "rest", "--port", "70000"], "--port"),
    (["serve", "rest", "--workers", "0"], "--workers"),
    (["serve", "rest", "--model", "synthetic:fixed"], "synthetic:fixed"),
    (["serve", "grpc", "--max-message-bytes", "-1"], "--max-message-bytes"),
    (["serve", "grpc", "--window-ms", "abc"], "--window-ms"),
    (["serve", "udp"], "udp"),
    # run
    (["run"], "--target"),
    (["run", "--target", "rest", "--rate", "-3"], "--rate"),
    (["run", "--target", "rest", "--duration", "5 minutes"], "--duration"),
    (["run", "--target", "rest", "--warmup", "x"], "--warmup"),
    (["run", "--target", "rest", "--rate", "10", "--concurrency", "2"], "--concurrency"),
    (["run", "--target", "rest", "--duration", "1s", "--requests", "5"], "--requests"),
    (["run", "--target", "rest", "--url", "http://example.com"], "--url"),
    (["run", "--target", "grpc", "--address", "192.168.1.5:50051"], "--address"),
    (["run", "--target", "inprocess", "--model", "pkg_missing_xyz:model"], "pkg_missing_xyz"),
    (["run", "--target", "inprocess", "--trace", MISSING], MISSING),
    (["run", "--target", "inprocess", "--stages", "10s"], "--stages"),
    (["run", "--target", "inprocess", "--v2-share", "2"], "--v2-share"),
    (["run", "--target", "inprocess", "--instances", "9:3"], "--instances"),
    (["run", "--target", "rest", "--loop", "tight"], "--loop"),
    (["run", "--target", "inprocess", "--loop", "tight", "--concurrency", "4"], "--loop"),
    (["run", "--target", "inprocess", "--loop", "fast"], "--loop"),
    (["run", "--target", "rest", "--client", "httpx"], "--client"),
    # bench
    (["bench", "--config", MISSING], MISSING),
    (["bench", "--threshold", "p99<<2"], "p99<<2"),
    # sweep
    (["sweep", "--target", "rest", "--slo-p99", "fast"], "--slo-p99"),
    (["sweep", "--target", "rest", "--url", "http://10.0.0.1:80"], "--url"),
    # batch / stream / edge
    (["batch", "score", MISSING, "--out", "/tmp/servelab-never"], MISSING),
    (["batch", "score", MISSING, "--out", "o", "--batch-size", "0"], "--batch-size"),
    (["stream", "--batch-size", "none"], "--batch-size"),
    (["edge", "bundle", "--out", "/tmp/e.pyz", "--quant", "int3:1"], "--quant"),
    (["edge", "bundle", "--out", "/tmp/e.pyz", "--model", "tests.targets.sample_models:SumModel"],
     "tests.targets.sample_models:SumModel"),
    # reports
    (["report", MISSING, "--out", "/tmp/servelab-report-never"], MISSING),
    (["compare", MISSING, MISSING], MISSING),
    # locust
    (["import-locust", MISSING, "--out", "/tmp/x.json"], MISSING),
    (["nosuchcommand"], "nosuchcommand"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "culprit"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_line_naming_the_culprit(
    argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    # `servelab report` warns once per input it skips, then gives its one-line verdict
    lines = [line for line in captured.err.splitlines() if "skipped" not in line]
    assert len(lines) == 1, captured.err
    assert culprit in captured.err, captured.err
    assert "Traceback" not in captured.err
