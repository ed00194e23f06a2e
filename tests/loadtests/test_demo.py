"""The README's main-job command (until ``bench`` lands): every pattern answers canonically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _demo(model: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loadtests.cli", "demo", "--model", model],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )


def test_demo_answers_through_all_five_patterns(tmp_path: Path) -> None:
    result = _demo("synthetic:fixed:1ms", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern in ("REST", "gRPC", "streaming", "edge", "batch"):
        assert pattern in result.stdout
    assert "SCHEMA" not in result.stdout


def test_demo_refuses_a_bad_model_in_one_line(tmp_path: Path) -> None:
    result = _demo("nope", tmp_path)
    assert result.returncode == 2
    assert "bad --model 'nope'" in result.stderr
    assert result.stderr.strip().count("\n") == 0
