"""Capacity search against a known capacity, and the stability rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.jobs.sweep import is_stable
from tests.conftest import ServelabCli

ROOT = Path(__file__).resolve().parents[2]


def _rows(requests: list[float], p99: list[float], p50: float = 1.0) -> list[dict[str, float]]:
    rows = [
        {"t_s": i, "requests": r, "failures": 0, "p50_ms": p50, "p99_ms": q}
        for i, (r, q) in enumerate(zip(requests, p99, strict=True))
    ]
    return [*rows, {"t_s": len(rows), "requests": 1, "failures": 0, "p50_ms": 0, "p99_ms": 0}]


@pytest.mark.parametrize(
    ("requests", "p99", "stable"),
    [
        ([2000, 2050, 1990], [10.0, 10.5, 9.8], True),
        ([2000, 2500, 1990], [10.0, 10.5, 9.8], False),  # throughput moved 25 %
        ([2000, 2000, 2000], [10.0, 13.0, 9.8], False),  # p99 moved 30 %
        ([500, 510, 495], [10.0, 12.0, 9.0], True),  # few samples: p99 may scatter 25 %
        ([500, 510, 495], [10.0, 14.0, 9.0], False),
        ([2000, 2000], [10.0, 10.0], False),  # fewer windows than asked for
    ],
)
def test_stability_rule(requests: list[float], p99: list[float], stable: bool) -> None:
    assert is_stable(_rows(requests, p99), 3) is stable


SERVICE_S = 0.002  # one worker, one request at a time: a capacity of exactly 500/s


def test_sweep_finds_the_known_capacity_of_one_worker_on_virtual_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole sweep (``servelab sweep``: steps, knee, binary search, result files, chart) on
    virtual time against one in-memory worker that answers one request at a time in 2 ms, so
    every number is the same on every machine. Up to 500/s nothing queues (p99 = 2 ms); past
    it the queue grows by ``rate - 500`` a second, so p99 reaches the 50 ms SLO at
    ``500 * (1 + 0.048 / 4.5 s of load)`` ~ 505/s: the capacity lies in [500, 505.4]/s."""
    import loadtests.jobs.run
    import loadtests.jobs.sweep
    from loadtests.cli.app import main
    from loadtests.drivers.base import FakeDriver
    from loadtests.engine.clock import run_virtual

    def one_worker(settings: object, server: object) -> FakeDriver:
        return FakeDriver(lambda payload: SERVICE_S, connections=1)

    monkeypatch.setattr(loadtests.jobs.run, "make_driver", one_worker)
    monkeypatch.setattr(loadtests.jobs.sweep, "run_on_loop", lambda main: run_virtual(lambda: main))
    out = tmp_path / "sweep"
    code = main(["sweep", "--target", "inprocess", "--slo-p99", "50ms", "--start-rate", "200",
                 "--precision", "0.01", "--attempts", "2", "--out", str(out)])  # fmt: skip
    assert code == 0
    summary = json.loads((out / "sweep.json").read_text())
    points = summary["points"]
    steps = [(p["rate"], p["passed"]) for p in points if p["phase"] == "step"]
    assert steps == [(200, True), (400, True), (800, False)]
    assert summary["knee_rps"] == 400  # the last step that kept up with its rate
    capacity = summary["capacity_rps"]
    assert 1 / SERVICE_S <= capacity <= 505.4
    assert capacity == max(p["rate"] for p in points if p["passed"])
    above = min(p["rate"] for p in points if not p["passed"])
    assert capacity < above <= capacity * 1.01  # searched to --precision
    for point in points:
        if point["rate"] <= 1 / SERVICE_S:  # nothing waits: latency is the service time
            assert point["passed"]
            assert point["stable"]
            assert point["p99_ms"] == pytest.approx(SERVICE_S * 1e3, rel=1e-3)
        saturated = point["throughput_rps"] < 0.9 * point["rate"]
        assert saturated == any(r.startswith("saturated") for r in point["reasons"])
    assert all(Path(point["path"]).exists() for point in points)
    shown = capsys.readouterr().out
    assert f"capacity at p99 <= 50 ms: {capacity:g} req/s" in shown
    assert "knee: 400 req/s" in shown
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"  # the throughput-latency curve
    assert f"curve: {out / 'sweep.png'}" in shown


def test_sweep_of_a_real_cpu_bound_worker_follows_its_own_measurements(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    """``synthetic:cpu:2ms`` on one REST worker: 2 ms of CPU a request, so no machine serves
    more than 500/s and every rate over 500 / 0.9 is saturated — the doubling steps from 50/s
    must fail by 800/s. Where it fails first depends on how busy the machine is, so what is
    checked is that the sweep follows its own measurements: each point judged by the rule from
    its own figures, the capacity the highest passing rate, searched to --precision."""
    out, slo_ms, precision = tmp_path / "sweep", 50.0, 0.1
    result = servelab_cli(
        "sweep", "--target", "rest",
        "--model", "synthetic:cpu:2ms", "--slo-p99", f"{slo_ms:g}ms", "--start-rate", "50",
        "--precision", str(precision), "--windows", "2", "--attempts", "2", "--out", str(out),
        timeout=300, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert (out / "sweep.json").exists(), result.stdout + result.stderr
    summary = json.loads((out / "sweep.json").read_text())
    points, capacity = summary["points"], summary["capacity_rps"]
    valid = any(point["valid"] for point in points)
    assert result.returncode == (0 if capacity is not None else 1 if valid else 3), result.stderr
    for point in points:
        passed = (
            point["p99_ms"] <= slo_ms
            and point["throughput_rps"] >= 0.9 * point["rate"]
            and point["schema_success_rate"] >= 0.999
            and point["valid"]
        )
        assert point["passed"] is passed, point
        assert point["throughput_rps"] <= 500 * 1.15  # 2 ms of CPU a request, on any machine
    failed = [point["rate"] for point in points if not point["passed"]]
    assert failed, points
    assert min(failed) <= 800  # it did find the limit, by 800/s at the latest
    assert capacity == max((p["rate"] for p in points if p["passed"]), default=None)
    assert capacity is None or capacity < min(failed) <= capacity * (1 + precision)
    assert f"capacity at p99 <= {slo_ms:g} ms:" in result.stdout
    assert all(Path(point["path"]).exists() for point in points)
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"  # the throughput-latency curve
    assert f"curve: {out / 'sweep.png'}" in result.stdout
