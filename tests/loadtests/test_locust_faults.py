"""Fault injection under Locust: servelab's users against scripted faulty targets (hangs, resets,
clean closes, 5xx bursts, slow answers, gRPC UNAVAILABLE, a target killed mid-run) keep going,
classify every failure as the harness drivers do, and Locust still writes the result file.

The faulty targets run in this process, each on its own event loop thread; Locust runs in
subprocesses (it monkey-patches whatever imports it). All runs go at once and last seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from loadtests.results.result import load_result
from tests.loadtests.faulty import (
    CLOSE,
    HANG,
    OK,
    RESET,
    FaultyGrpcTarget,
    FaultyRestTarget,
    Script,
    Slow,
    Status,
    ThreadedTarget,
    burst,
)

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
TIMEOUT_S = 120
KILL_AFTER = 50  # requests the target answers before it is killed
PAIR = 2  # Locust processes running at once
UNAVAILABLE = Status(grpc.StatusCode.UNAVAILABLE)


@dataclass(frozen=True)
class Case:
    user: str
    script: Script
    request_timeout: str = "5s"
    kill: bool = False

    def target(self) -> ThreadedTarget:
        rest = self.user == "RestUser"
        make: Callable[[], FaultyRestTarget | FaultyGrpcTarget] = (
            (lambda: FaultyRestTarget(self.script)) if rest
            else (lambda: FaultyGrpcTarget(self.script))
        )  # fmt: skip
        return ThreadedTarget(make)


CASES = {
    "rest-hang": Case("RestUser", burst(HANG, 5, 8), request_timeout="1s"),
    "rest-close": Case("RestUser", burst(CLOSE, 5, 10)),
    "rest-reset": Case("RestUser", burst(RESET, 5, 10)),
    "rest-5xx": Case("RestUser", burst(Status(503), 5, 15)),
    "rest-slow": Case("RestUser", burst(Slow(0.05), 0, 4)),
    "rest-killed": Case("RestUser", lambda _: OK, kill=True),
    "grpc-unavailable": Case("GrpcUser", burst(UNAVAILABLE, 5, 15)),
    "grpc-hang": Case("GrpcUser", burst(HANG, 5, 8), request_timeout="1s"),
    "grpc-killed": Case("GrpcUser", lambda _: OK, kill=True),
    "stream-unavailable": Case("GrpcStreamUser", burst(UNAVAILABLE, 5, 15)),
}


@dataclass
class Finished:
    returncode: int
    stderr: str
    result: dict[str, Any]
    seen: int

    def explain(self) -> str:
        return f"exit {self.returncode}; errors {self.result['errors']}\n{self.stderr[-3000:]}"


def _kill_after(target: ThreadedTarget, answered: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while target.seen < answered:  # polled, bounded
        assert process.poll() is None, "Locust ended before the target was killed"
        assert time.monotonic() < deadline, "the target never served load"
        time.sleep(0.01)
    target.kill()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    base = tmp_path_factory.mktemp("locust-faults")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    finished = {}
    names = list(CASES)
    for first in range(0, len(names), PAIR):  # at most 2 Locust processes at once: 2 cores
        with ExitStack() as stack:
            started = {}
            for name in names[first : first + PAIR]:
                case = CASES[name]
                target = stack.enter_context(case.target())
                where = ["--host", target.where] if case.user == "RestUser" else [
                    "--grpc-host", target.where]  # fmt: skip
                out = base / f"{name}.json"
                # The scripted-fault runs drop the default success-rate gate: what they test is
                # that faults are classified, and Locust's own "exit 1 on any failure" is gone.
                gate = [] if case.kill else ["--no-default-gate"]
                command = [
                    sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
                    "--only-summary", "-u", "2", "-r", "2", "-t", "4s", case.user, *where,
                    "--request-timeout", case.request_timeout, "--result", str(out), *gate,
                ]  # fmt: skip
                process = subprocess.Popen(
                    command, cwd=base, env=env, text=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
                started[name] = (process, target, out)
            for name, (process, target, _out) in started.items():
                if CASES[name].kill:
                    _kill_after(target, KILL_AFTER, process)
            for name, (process, target, out) in started.items():
                try:
                    _, stderr = process.communicate(timeout=TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    _, stderr = process.communicate()
                finished[name] = Finished(
                    process.returncode, stderr, dict[str, Any](load_result(out)), target.seen
                )
    return finished


def _check_ran_through(run: Finished, faults: int) -> dict[str, Any]:
    """The result is on disk and counts every request; the load went on after the faults."""
    assert "Traceback" not in run.stderr, run.explain()
    summary: dict[str, Any] = run.result["summary"]
    assert run.result["run"]["tool"] == "locust"
    assert run.result["run"]["partial"] is False
    assert summary["failures"] == faults, run.explain()
    assert summary["successes"] == summary["requests"] - faults
    assert summary["successes"] > 20, run.explain()  # answers after the burst ended, too
    assert summary["requests"] <= run.seen  # a request Locust cut at the end has no event
    # servelab's gates decide the exit code, not Locust's "1 on any failure": with no gate
    # (--no-default-gate) a run that measured its faults exits 0
    assert run.returncode == 0, run.explain()
    return summary


@pytest.mark.parametrize(
    ("name", "errors"),
    [
        ("rest-hang", {"timeout": 3}),
        ("rest-close", {"disconnected": 5}),
        # geventhttpclient reports a reset before an answer as a closed connection
        ("rest-reset", {"disconnected": 5}),
        ("rest-5xx", {"http_503": 10}),
        ("grpc-unavailable", {"unavailable": 10}),
        ("grpc-hang", {"timeout": 3}),
        ("stream-unavailable", {"unavailable": 10}),
    ],
)
def test_locust_users_classify_scripted_faults_and_go_on(
    runs: dict[str, Finished], name: str, errors: dict[str, int]
) -> None:
    run = runs[name]
    _check_ran_through(run, sum(errors.values()))
    assert run.result["errors"] == errors, run.explain()


def test_a_broken_stream_is_reopened_by_the_next_request(runs: dict[str, Finished]) -> None:
    run = runs["stream-unavailable"]
    assert run.result["extra"]["stream_reopens"] == 10  # one per aborted stream


def test_slow_answers_under_locust_are_successes_charged_their_wait(
    runs: dict[str, Finished],
) -> None:
    run = runs["rest-slow"]
    summary = _check_ran_through(run, 0)
    assert run.result["errors"] == {}
    assert summary["latency_ms"]["max"] >= 50.0  # a lower bound, not a speed claim


@pytest.mark.parametrize(
    ("name", "gone", "cut"),
    [("rest-killed", "connect", {"disconnected", "reset"}),
     ("grpc-killed", "unavailable", {"cancelled"})],
)  # fmt: skip
def test_a_target_killed_under_locust_leaves_a_result_with_classified_failures(
    runs: dict[str, Finished], name: str, gone: str, cut: set[str]
) -> None:
    run = runs[name]
    summary, errors = run.result["summary"], run.result["errors"]
    assert "Traceback" not in run.stderr, run.explain()
    # the default gate: a target killed early leaves far under 99 % of requests answered
    assert run.returncode == 1, run.explain()
    assert "success_rate>=0.99" in run.stderr, run.explain()
    assert summary["successes"] >= KILL_AFTER
    assert summary["failures"] == sum(errors.values()) > 0
    assert summary["requests"] == summary["successes"] + summary["failures"]
    assert errors.get(gone, 0) > 0, run.explain()  # nothing listens after the kill
    assert set(errors) <= {gone, *cut}, run.explain()
