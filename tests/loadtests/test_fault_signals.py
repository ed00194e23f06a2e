"""Faults around the ``servelab`` process itself: its target killed mid-run, SIGTERM of ``run``
and ``bench``, and ``kill -9`` of a run whose event log then recomputes the result."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from loadtests.results.environment import process_tree_cpu_s
from loadtests.results.events import UNFINISHED
from loadtests.results.result import load_result
from tests.conftest import ServelabCli

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _servelab(servelab_cli: ServelabCli, *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        servelab_cli.argv(*args),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**ENV, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _descendants(pid: int) -> Iterator[int]:
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            yield child
            yield from _descendants(child)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_for_load(target_pid: int) -> None:
    """Poll until the target has served load: its CPU clock moves only with requests."""
    baseline_s = process_tree_cpu_s(target_pid)
    deadline = time.monotonic() + WAIT_S
    while process_tree_cpu_s(target_pid) - baseline_s < 0.2:
        assert time.monotonic() < deadline, "the target never served load"
        time.sleep(0.05)


def _started_target_pid(process: subprocess.Popen[str]) -> int:
    assert process.stderr is not None
    started = process.stderr.readline()  # blocks until the load starts (the run is bounded)
    assert started.startswith("servelab: load started: rest at http://127.0.0.1:"), started
    return int(started.rsplit("target pid ", 1)[1].rstrip(")\n"))


def _finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_target_killed_mid_run_leaves_a_result_with_classified_failures(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "run.json"
    process = _servelab(
        servelab_cli,
        "run", "--target", "rest", "--concurrency", "2", "--duration", "8s", "--timeout", "1s",
        "--out", str(out), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    try:
        target_pid = _started_target_pid(process)
        _wait_for_load(target_pid)
        os.kill(target_pid, signal.SIGKILL)  # the target dies; the run must go on measuring
    finally:
        _, stderr = _finish(process)
    # the run went on and wrote its result; the default gate (success rate >= 99 %) fails it
    assert process.returncode == 1, stderr
    assert "BREACHED 'success_rate>=0.99'" in stderr
    result = load_result(out)
    summary, errors = result["summary"], result["errors"]
    assert result["run"]["partial"] is False
    assert summary["successes"] > 0
    assert summary["failures"] == sum(errors.values()) > 0
    assert summary["requests"] == summary["successes"] + summary["failures"]
    assert errors.get("connect", 0) > 0, errors  # nothing listens after the kill
    assert set(errors) <= {"connect", "disconnected", "reset"}, errors


def test_sigterm_of_run_writes_a_partial_result_and_stops_the_target(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "partial.json"
    process = _servelab(
        servelab_cli,
        "run", "--target", "rest", "--concurrency", "2", "--duration", "60s",
        "--out", str(out), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    try:
        target_pid = _started_target_pid(process)
        _wait_for_load(target_pid)
        process.send_signal(signal.SIGTERM)
    finally:
        _, stderr = _finish(process)
    assert process.returncode != 0, stderr
    result = load_result(out)
    assert result["run"]["partial"] is True
    assert "interrupted" in result["verdict"]["reasons"]
    assert result["summary"]["requests"] > 0
    assert not _alive(target_pid)


BENCH = """
[bench]
warmup = "0s"
[[cells]]
target = "inprocess"
concurrency = 1
duration = "1s"
[[cells]]
target = "rest"
concurrency = 2
duration = "60s"
"""


def test_sigterm_of_bench_keeps_finished_results_and_stops_every_target(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(BENCH)
    out = tmp_path / "out"
    process = _servelab(
        servelab_cli, "bench", "--config", str(config), "--out", str(out), cwd=tmp_path
    )
    started: list[int] = []
    try:
        assert process.stdout is not None
        for _ in range(100):  # bounded: the bench prints a handful of lines before run 2
            line = process.stdout.readline()
            assert line, "bench ended before its second run"
            if line.startswith("[2/2]"):
                break
        deadline = time.monotonic() + WAIT_S
        while not (started := list(_descendants(process.pid))):
            assert time.monotonic() < deadline, "bench started no target"
            time.sleep(0.05)
        _wait_for_load(started[0])
        process.send_signal(signal.SIGTERM)
    finally:
        _, stderr = _finish(process)
    assert process.returncode == 130, stderr
    assert "interrupted; finished results kept" in stderr
    first, second = sorted(out.glob("*.json"))
    assert load_result(first)["run"]["partial"] is False
    assert load_result(second)["run"]["partial"] is True
    assert started
    assert not [pid for pid in started if _alive(pid)]


def _event_lines(path: Path) -> int:
    count = 0
    for line in path.read_bytes().split(b"\n")[1:]:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # empty, or the line the kill cut short
        count += "end" not in event
    return count


def test_kill_9_mid_run_then_recompute_from_the_event_log(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    events = tmp_path / "events.jsonl"
    process = _servelab(
        servelab_cli,
        "run", "--target", "inprocess", "--rate", "2000", "--duration", "60s",
        "--events", str(events), "--out", str(tmp_path / "never.json"), "--no-progress",
        cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_S
        while not events.exists() or events.read_bytes().count(b"\n") < 100:  # a tick flushed
            assert process.poll() is None, "the run ended early"
            assert time.monotonic() < deadline, "no events flushed"
            time.sleep(0.05)
        process.kill()  # SIGKILL: no handler, no clean-up, no result file
    finally:
        _finish(process)
    assert not (tmp_path / "never.json").exists()
    lines = _event_lines(events)
    out = tmp_path / "recomputed.json"
    recompute = servelab_cli(
        "recompute", str(events), "--out", str(out),
        timeout=WAIT_S, cwd=tmp_path, env={**ENV, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert recompute.returncode == 0, recompute.stderr
    result = load_result(out)
    assert result["summary"]["requests"] == lines >= 99
    assert result["run"]["partial"] is True
    assert result["run"]["target"] == "inprocess"
    assert UNFINISHED in result["verdict"]["reasons"]


def _starting(pid: int) -> bool:
    """The child runs ``servelab serve`` and has used some CPU importing it: ``Popen`` in
    servelab has long returned. (A signal *inside* ``Popen`` would still orphan the child: that
    window is ``loadtests.jobs.launch``'s to close.)"""
    try:
        serve = b"loadtests.cli" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return serve and process_tree_cpu_s(pid) > 0.05


def test_sigterm_while_the_target_starts_still_stops_it(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    process = _servelab(
        servelab_cli,
        "run", "--target", "rest", "--concurrency", "2", "--duration", "60s",
        "--out", str(tmp_path / "r.json"), "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while not (started := list(_descendants(process.pid))) or not _starting(started[0]):
            assert process.poll() is None, "servelab run ended early"
            assert time.monotonic() < deadline, "servelab run started no target"
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)  # most likely before it is ready: no load yet
    finally:
        _, stderr = _finish(process)
    assert process.returncode != 0, stderr
    assert "Traceback" not in stderr
    alive = [(pid, Path(f"/proc/{pid}/cmdline").read_bytes()) for pid in started if _alive(pid)]
    assert not alive, stderr


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_sigterm_of_servelab_locust_writes_a_partial_result_and_stops_everything(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "locust.json"
    process = _servelab(
        servelab_cli,
        "locust", "-u", "2", "-t", "60s", "--only-summary", "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    started: list[int] = []
    try:
        deadline = time.monotonic() + WAIT_S
        while True:  # polled: the REST target servelab started, and Locust beside it
            started = list(_descendants(process.pid))
            serving = [pid for pid in started if b"loadtests.cli" in _cmdline(pid)]
            if serving and any(b"locust" in _cmdline(pid) for pid in started):
                break
            assert process.poll() is None, "servelab locust ended early"
            assert time.monotonic() < deadline, "servelab locust started no target and Locust"
            time.sleep(0.05)
        _wait_for_load(serving[0])
        started = list(_descendants(process.pid))
        process.send_signal(signal.SIGTERM)
    finally:
        _, stderr = _finish(process)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    result = load_result(out)
    assert result["run"]["tool"] == "locust"
    assert result["run"]["partial"] is True
    assert result["verdict"]["valid"] is False
    assert "interrupted" in result["verdict"]["reasons"]
    assert result["summary"]["requests"] > 0
    assert not [pid for pid in started if _alive(pid)], stderr
