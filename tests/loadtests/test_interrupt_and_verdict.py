"""Ctrl-C keeps what was measured; verdict rules beyond lateness."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from loadtests.engine.harness import RunStats
from loadtests.engine.recorder import Recorder
from loadtests.results.environment import process_tree_cpu_s
from loadtests.results.result import load_result
from loadtests.results.verdict import judge_run
from tests.conftest import ServelabCli


def test_sigint_writes_a_partial_invalid_result_and_exits_nonzero(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "partial.json"
    process = subprocess.Popen(
        servelab_cli.argv("run", "--target", "rest", "--concurrency", "4", "--duration", "60s",
                          "--out", str(out), "--no-progress"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        started = process.stderr.readline()  # blocks until the load starts (bounded below)
        assert started.startswith("servelab: load started: rest at http://127.0.0.1:"), started
        target_pid = int(started.rsplit("target pid ", 1)[1].rstrip(")\n"))
        # Then poll until the target has served load: its CPU clock moves only with requests.
        baseline_s = process_tree_cpu_s(target_pid)
        deadline = time.monotonic() + 30
        while process_tree_cpu_s(target_pid) - baseline_s < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    result = load_result(out)
    assert result["run"]["partial"] is True
    assert result["verdict"]["valid"] is False
    assert "interrupted" in result["verdict"]["reasons"]
    assert result["summary"]["requests"] > 0
    assert "verdict: INVALID" in stdout


def _stats(cpu_s: float, wall_s: float) -> RunStats:
    return RunStats(measure_start_ns=0, measure_end_ns=10**9, generator_cpu_s=cpu_s, wall_s=wall_s)


def _recorder() -> Recorder:
    recorder = Recorder()
    recorder.record(0, 0, 1_000_000)
    recorder.finish()
    return recorder


def test_a_saturated_network_generator_is_flagged_generator_bound() -> None:
    verdict = judge_run(_recorder(), _stats(0.95, 1.0), mode="closed", in_process=False)
    assert verdict.valid
    assert verdict.warnings[0].startswith("generator-bound: throughput is the client's limit")


def test_in_process_runs_are_exempt_from_the_cpu_rule() -> None:
    verdict = judge_run(_recorder(), _stats(1.0, 1.0), mode="closed", in_process=True)
    assert verdict.warnings == ()


def test_a_run_with_no_requests_is_invalid() -> None:
    empty = Recorder()
    empty.finish()
    verdict = judge_run(empty, _stats(0.1, 1.0), mode="closed", in_process=True)
    assert verdict.reasons == ("no requests were measured",)


def test_a_busy_polling_generator_is_not_called_generator_bound() -> None:
    from loadtests.engine.harness import RunStats
    from loadtests.engine.recorder import Recorder
    from loadtests.results.verdict import judge_run

    recorder = Recorder()
    recorder.record(0, 0, 1_000_000)
    recorder.finish()
    spinning = RunStats(generator_cpu_s=1.0, wall_s=1.0, busy_poll=True)
    resting = RunStats(generator_cpu_s=1.0, wall_s=1.0)
    assert judge_run(recorder, spinning, mode="closed", in_process=False).warnings == ()
    warned = judge_run(recorder, resting, mode="closed", in_process=False).warnings
    assert any("generator-bound" in warning for warning in warned)
