"""Locust end to end: every user class against real targets, exact percentiles, threshold gating,
refusals, a distributed run and ``servelab locust`` / ``import-locust``.

Locust always runs in subprocesses (it monkey-patches whatever imports it; the asyncio and
grpc.aio tests in this process must never see gevent). The fixture's runs go one after another
(2-3 s each), so at most one Locust process and the target it loads are busy at once: on a
2-core machine no run is starved by its neighbours. No assertion here bounds a wall-clock
latency or rate: thresholds are ones the models guarantee, and rates are compared with what the
pacing allows and with the fixture's own unpaced run.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.records import Outcome
from loadtests.jobs.launch import launch_target
from loadtests.locust_integration.shape_plans import ArrivalPlan, parse_shape
from loadtests.locust_integration.support import pacing_period_s
from loadtests.results.gates import DEFAULT_GATE
from loadtests.results.result import load_result
from tests.conftest import ServelabCli

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
SHAPES = ROOT / "loadtests" / "locust_integration" / "shapes.py"
PROBE = Path(__file__).with_name("locust_probe.py")
LOGNORMAL = "synthetic:lognormal:5ms:0.5"
TIMEOUT_S = 120
# A gate no machine speed can break: every answer waits at least its model draw, and half of
# the lognormal's draws are over its 5 ms median, so p99 >= 5 ms however slow or fast the run.
REST_GATE = "p99>=5ms"
ARRIVAL = "arrival:40:2:3s"  # 2 users, each starting a request every 2 / 40 s = 50 ms


def _env(probe_dir: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if probe_dir is not None:
        env["SERVELAB_PROBE_DIR"] = str(probe_dir)
    return env


def _locust(*args: str, files: tuple[Path, ...] = (LOCUSTFILE,)) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", ",".join(map(str, files)), "--only-summary",
            *args]  # fmt: skip


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    result_path: Path

    @property
    def result(self) -> dict[str, Any]:
        return dict[str, Any](load_result(self.result_path))

    def explain(self) -> str:
        return f"exit {self.returncode}\n{self.stderr[-4000:]}"


def _probe_samples(directory: Path) -> dict[int, list[tuple[float, int]]]:
    """Raw ``(response_time ms, outcome)`` per process id, from the probe's files."""
    samples = {}
    for path in sorted(directory.glob("raw-*.txt")):
        rows = [line.split() for line in path.read_text().splitlines()]
        samples[int(path.stem.removeprefix("raw-"))] = [(float(ms), int(o)) for ms, o in rows]
    return samples


def _run_to_end(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one Locust command to its end (killed after ``TIMEOUT_S``)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """One short headless run per user class (and a threshold breach, and an arrival shape),
    one after another, against a REST and a gRPC target servelab started on loopback."""
    base = tmp_path_factory.mktemp("locust-runs")
    (base / "probe").mkdir()
    with (
        launch_target("rest", model_spec=LOGNORMAL) as rest,
        launch_target("grpc", model_spec="synthetic:fixed:1ms") as grpc,
    ):
        short = ("-t", "2s")
        plans: dict[str, tuple[list[str], tuple[Path, ...]]] = {
            "RestUser": (["--host", rest.url, "RestUser", "-u", "8", "-r", "8", "-t", "3s",
                          "--model", LOGNORMAL, "--invalid-fraction", "0.05",
                          "--threshold", REST_GATE, "--threshold", "schema_success_rate>=0.999",
                          "--csv", str(base / "rest")], (LOCUSTFILE, PROBE)),
            "GrpcUser": (["--grpc-host", grpc.address, "GrpcUser", "-u", "4", "-r", "4", *short,
                          "--invalid-fraction", "0.1", "--api", "v2", "--rows-per-request", "3"],
                         (LOCUSTFILE,)),
            "GrpcStreamUser": (["--grpc-host", grpc.address, "GrpcStreamUser", "-u", "4", "-r",
                                "4", *short, "--invalid-fraction", "0.1"], (LOCUSTFILE,)),
            "BatchUser": (["BatchUser", "-u", "2", "-r", "2", *short, "--batch-size", "32",
                           "--model", "synthetic:fixed:1ms", "--invalid-fraction", "0.1"],
                          (LOCUSTFILE,)),
            "EdgeUser": (["--host", rest.url, "EdgeUser", "-u", "2", "-r", "2", *short,
                          "--distinct", "16", "--invalid-fraction", "0.1"], (LOCUSTFILE,)),
            "breach": (["--host", rest.url, "RestUser", "-u", "2", "-r", "2", *short,
                        "--threshold", "p99<1us"], (LOCUSTFILE,)),
            "arrival": (["--host", rest.url, "RestUser", "--shape", ARRIVAL], (LOCUSTFILE, SHAPES)),
        }  # fmt: skip
        finished = {}
        for name, (args, files) in plans.items():
            out = base / f"{name}.json"
            command = _locust(*args, "--headless", "--result", str(out), files=files)
            returncode, stdout, stderr = _run_to_end(command, base, _env(base / "probe"))
            finished[name] = Finished(returncode, stdout, stderr, out)
    finished["base"] = Finished(0, "", "", base)
    return finished


EXPECTED_TARGET = {
    "RestUser": "rest", "GrpcUser": "grpc", "GrpcStreamUser": "grpc-stream",
    "BatchUser": "batch", "EdgeUser": "edge",
}  # fmt: skip


@pytest.mark.parametrize("user_class", sorted(EXPECTED_TARGET))
def test_each_user_class_runs_clean_against_a_real_target(
    runs: dict[str, Finished], user_class: str
) -> None:
    run = runs[user_class]
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    document = run.result
    summary, extra = document["summary"], document["extra"]
    assert document["run"]["tool"] == "locust"
    assert document["run"]["target"] == EXPECTED_TARGET[user_class]
    assert extra["user_classes"] == [user_class]
    assert summary["requests"] > 10
    assert summary["failures"] == 0, document["errors"]
    assert summary["expected_rejections"] > 0  # invalid payloads answered 4xx / INVALID_ARGUMENT
    assert summary["schema_success_rate"] == 1.0
    assert extra["locust"]["requests"] == summary["requests"]  # Locust saw what we recorded
    counted = summary["requests"] - summary["expected_rejections"]
    assert LatencyHistogram.decode(document["histograms"]["latency"]).total == counted
    assert extra["bucketed_percentiles"] is False
    assert [worker["final"] for worker in extra["workers"]] == [True]


def test_transport_figures_reach_the_result(runs: dict[str, Finished]) -> None:
    grpc = runs["GrpcUser"].result["summary"]
    assert grpc["predictions_per_s"] == pytest.approx(3 * grpc["throughput_rps"])  # v2, 3 rows
    stream = runs["GrpcStreamUser"].result["extra"]
    assert stream["streams"] == 4
    assert stream["first_response_ms"] > 0
    batch = runs["BatchUser"].result
    assert batch["extra"]["rows"] == 32 * batch["extra"]["batches"]
    assert batch["extra"]["rows_per_s"] > 0
    assert batch["run"]["batch_size"] == 32
    edge = runs["EdgeUser"].result["extra"]
    assert {"cache", "remote"} <= set(edge["sources"])  # 16 distinct payloads repeat
    assert edge["cache_hit_rate"] > 0


def test_threshold_pass_exits_0_and_is_recorded(runs: dict[str, Finished]) -> None:
    run = runs["RestUser"]
    assert run.returncode == 0, run.explain()
    assert f"servelab: threshold ok '{REST_GATE}'" in run.stderr
    checks = run.result["extra"]["thresholds"]
    assert [(c["expression"], c["passed"]) for c in checks] == [
        (DEFAULT_GATE, True), (REST_GATE, True), ("schema_success_rate>=0.999", True),
    ]  # fmt: skip


def test_threshold_breach_exits_1_and_says_by_how_much(runs: dict[str, Finished]) -> None:
    run = runs["breach"]
    assert run.returncode == 1, run.explain()
    assert "servelab: threshold FAILED 'p99<1us'" in run.stderr
    assert "limit < 0.001 ms: off by +" in run.stderr
    checks = run.result["extra"]["thresholds"]
    assert [(c["expression"], c["passed"]) for c in checks] == [
        (DEFAULT_GATE, True), ("p99<1us", False),
    ]  # fmt: skip


def test_percentiles_are_exact_against_raw_response_times(
    runs: dict[str, Finished], record_property: Any
) -> None:
    run = runs["RestUser"]
    document = run.result
    [samples] = [s for s in _probe_samples(runs["base"].result_path / "probe").values()
                 if len(s) == document["summary"]["requests"]]  # fmt: skip
    answered = sorted(ms for ms, outcome in samples if outcome != Outcome.EXPECTED_REJECTION)
    summary = document["summary"]
    assert len(answered) == summary["requests"] - summary["expected_rejections"] > 0
    csv_row = (runs["base"].result_path / "rest_stats.csv").read_text().splitlines()
    header, aggregated = csv_row[0].split(","), csv_row[-1].split(",")
    locust_csv = dict(zip(header, aggregated, strict=True))
    shown = []
    for percentile in (50, 99):
        rank = max(int(percentile / 100 * len(answered) + 0.5), 1)  # HdrHistogram's rank rule
        raw = answered[rank - 1]
        ours = document["summary"]["latency_ms"][f"p{percentile}"]
        assert abs(ours - raw) / raw <= 0.001, (percentile, ours, raw)  # HDR: 3 digits
        final = document["extra"]["locust"][f"p{percentile}_ms"]
        shown.append(
            f"p{percentile}: raw {raw:.4f} ms, servelab {ours:.4f} ms, Locust {final:g} ms "
            f"(its CSV, rewritten each second: {float(locust_csv[f'{percentile}%']):g} ms)"
        )
    print("\n".join(shown))  # Locust's bucketed figures may differ: shown, not asserted
    record_property("percentiles", "; ".join(shown))


def test_arrival_shape_paces_users_to_the_rate(runs: dict[str, Finished]) -> None:
    """The pace caps the rate however fast the machine; below the cap, a paced user keeps up
    with the plan unless an answer takes longer than its period, which the fixture's unpaced
    RestUser run measured on the same target: the floor is half of what that allows."""
    run = runs["arrival"]
    assert run.returncode == 0, run.explain()
    document = run.result
    plan = parse_shape(ARRIVAL)
    assert isinstance(plan, ArrivalPlan)
    assert document["extra"]["shape"] == ARRIVAL
    summary = document["summary"]
    assert summary["failures"] == 0, document["errors"]
    # each user starts at once, then once a period (10 % for timers that fire a little early):
    # no more than this many on any machine (an unpaced user sends as fast as answers come)
    starts_per_user = math.floor(1.1 * summary["window_s"] / pacing_period_s(plan)) + 1
    assert 0 < summary["requests"] <= plan.users * starts_per_user
    unpaced = runs["RestUser"].result["summary"]
    unpaced_per_user_rps = unpaced["throughput_rps"] / runs["RestUser"].result["run"]["concurrency"]
    reachable_rps = min(plan.rate_per_s, plan.users * unpaced_per_user_rps)
    assert summary["throughput_rps"] >= 0.5 * reachable_rps, (summary, unpaced_per_user_rps)


def test_import_locust_round_trip(
    runs: dict[str, Finished], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtests.cli.app import main

    prefix = runs["base"].result_path / "rest"
    out = tmp_path / "imported.json"
    assert main(["import-locust", str(prefix), "--out", str(out)]) == 0
    assert f"result: {out}" in capsys.readouterr().out
    imported, measured = load_result(out), runs["RestUser"].result
    assert imported["extra"]["bucketed_percentiles"] is True
    assert imported["run"]["tool"] == "locust"
    assert imported["run"]["target"] == "rest"
    csv_row = imported["extra"]["locust_csv"]
    assert imported["summary"]["requests"] == int(csv_row["Request Count"])
    # Locust rewrites its CSV every second and not at exit: it may miss the last requests
    assert 0 < imported["summary"]["requests"] <= measured["summary"]["requests"]
    assert imported["timeseries"]
    csv_p99 = float(csv_row["99%"])
    assert imported["summary"]["latency_ms"]["p99"] == pytest.approx(csv_p99, rel=0.002)
    assert "approximate" in imported["verdict"]["warnings"][0]


def test_import_locust_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loadtests.cli.app import main

    assert main(["import-locust", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "missing_stats.csv: no such file" in error
    (tmp_path / "bad_stats.csv").write_text("Type,Name,Request Count\nPOST,/v1/predict,3\n")
    assert main(["import-locust", str(tmp_path / "bad"), "--out", str(tmp_path / "x")]) == 2
    assert "no 'Aggregated' row" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _quick(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _locust("--headless", "-u", "1", "-t", "2s", *args), cwd=cwd, env=_env(),
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def test_malformed_threshold_is_refused_before_any_load(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run = _quick("--host", "http://127.0.0.1:9", "RestUser", "--threshold", "p99<<5ms",
                 "--result", str(out), cwd=tmp_path)  # fmt: skip
    assert run.returncode == 2
    assert "argument --threshold: threshold 'p99<<5ms'" in run.stderr
    assert "Ramping" not in run.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "target",
    [("--host", "http://192.0.2.10:8000", "RestUser"),
     ("--grpc-host", "203.0.113.7:50051", "GrpcUser")],
)  # fmt: skip
def test_non_loopback_target_is_refused_before_any_load(
    tmp_path: Path, target: tuple[str, str, str]
) -> None:
    out = tmp_path / "r.json"
    run = _quick(*target, "--result", str(out), cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert f"{target[0]} {target[1]!r}" in run.stderr
    assert "is not a loopback address" in run.stderr
    assert "Ramping" not in run.stderr
    assert not out.exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_distributed_master_and_two_workers_merge_exactly(
    tmp_path: Path, spawn_target: Any
) -> None:
    rest = spawn_target("rest", "--model", LOGNORMAL, "--log-level", "off")
    port, out, probe = str(_free_port()), tmp_path / "merged.json", tmp_path / "probe"
    probe.mkdir()
    files = (LOCUSTFILE, PROBE)
    worker = _locust("--worker", "--master-host", "127.0.0.1", "--master-port", port, files=files)
    master = _locust(
        "--headless", "--master", "--expect-workers", "2", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", port, "-u", "4", "-r", "4", "-t", "3s", "--host", rest.url,
        "RestUser", "--result", str(out), files=files,
    )  # fmt: skip
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=_env(probe), text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for command in (master, worker, worker)
    ]  # fmt: skip
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT_S))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert processes[0].returncode == 0, outputs[0][1][-4000:]
    seen = {pid: len(samples) for pid, samples in _probe_samples(probe).items()}
    assert len(seen) == 2, seen
    assert all(seen.values()), seen  # each worker ran requests
    document = load_result(out)
    merged = document["summary"]["requests"]
    assert merged == sum(seen.values())
    assert LatencyHistogram.decode(document["histograms"]["latency"]).total == merged
    workers = document["extra"]["workers"]
    assert {w["pid"]: w["requests"] for w in workers} == seen
    assert all(w["final"] for w in workers)
    assert document["extra"]["locust"]["requests"] == merged


def test_servelab_locust_starts_its_own_target(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "r.json"
    run = servelab_cli(
        "locust", "-u", "4", "-t", "2s", "--processes", "2", "GrpcUser",
        "--model", "synthetic:fixed:1ms",  # the model waits 1 ms an answer
        "--threshold", "p99>=1ms", "--out", str(out),
        cwd=tmp_path, env=_env(), timeout=TIMEOUT_S,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"result: {out}" in run.stdout
    assert "verdict: " in run.stdout
    document = load_result(out)
    assert document["run"]["target"] == "grpc"
    assert document["run"]["model"] == "synthetic:fixed:1ms"
    assert document["run"]["concurrency"] == 4
    assert len(document["extra"]["workers"]) == 2  # --processes 2: two workers, merged
    workers = document["extra"]["workers"]
    assert document["summary"]["requests"] == sum(worker["requests"] for worker in workers)
    assert document["cost"]["target_cpu_s"] > 0  # the target servelab started, measured
