"""The README's main-job command (until ``bench`` lands): every pattern answers canonically."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ServelabCli

# a bare environment: servelab starts its targets without the venv on PATH
ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}


def test_demo_answers_through_all_five_patterns(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    result = servelab_cli("demo", "--model", "synthetic:fixed:1ms", cwd=tmp_path, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    for pattern in ("REST", "gRPC", "streaming", "edge", "batch"):
        assert pattern in result.stdout
    assert "SCHEMA" not in result.stdout


def test_demo_refuses_a_bad_model_in_one_line(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    result = servelab_cli("demo", "--model", "nope", cwd=tmp_path, env=ENV)
    assert result.returncode == 2
    assert "bad --model 'nope'" in result.stderr
    assert result.stderr.strip().count("\n") == 0
