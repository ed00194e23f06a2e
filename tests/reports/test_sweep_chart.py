"""The sweep curve carries the sweep's points, SLO and knee."""

from __future__ import annotations

from pathlib import Path

import pytest

from reports.sweep import sweep_figure, write_sweep_chart
from tests.reports.factory import drawn

SUMMARY = {
    "settings": {"slo_p99_ms": 50.0, "target": "rest", "model": "synthetic:cpu:2ms"},
    "knee_rps": 400.0,
    "capacity_rps": 450.0,
    "points": [
        {"rate": 100.0, "throughput_rps": 100.0, "p99_ms": 3.0, "phase": "step"},
        {"rate": 200.0, "throughput_rps": 200.0, "p99_ms": 3.5, "phase": "step"},
        {"rate": 400.0, "throughput_rps": 399.0, "p99_ms": 6.0, "phase": "step"},
        {"rate": 800.0, "throughput_rps": 450.0, "p99_ms": 3000.0, "phase": "step"},
        {"rate": 450.0, "throughput_rps": 449.0, "p99_ms": 20.0, "phase": "search"},
    ],
}


def test_curve_carries_the_points_slo_and_knee(tmp_path: Path) -> None:
    figure = sweep_figure(SUMMARY)
    axes = figure.axes[0]
    lines = {line.get_label(): line for line in axes.get_lines()}
    steps = lines["step points"]
    assert list(drawn(steps.get_xdata())) == [100.0, 200.0, 399.0, 450.0]
    assert list(drawn(steps.get_ydata())) == [3.0, 3.5, 6.0, 3000.0]
    assert list(drawn(lines["search points"].get_xdata())) == [449.0]
    assert list(drawn(lines["SLO p99 50 ms"].get_ydata())) == pytest.approx([50.0, 50.0])
    assert list(drawn(lines["knee 400 req/s"].get_xdata())) == pytest.approx([400.0, 400.0])
    assert list(drawn(lines["capacity 450 req/s"].get_xdata())) == pytest.approx([450.0, 450.0])
    path = write_sweep_chart(SUMMARY, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
