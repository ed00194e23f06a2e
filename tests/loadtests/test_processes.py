"""``servelab run --processes N`` end to end: the merged result counts exactly what the processes
measured, a process that dies makes the run INVALID with the others' results kept, Ctrl-C stops
every process and keeps what each measured, bad values are one line and exit 2."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from loadtests.engine.histogram import LatencyHistogram
from loadtests.jobs.bench_config import parse_config
from loadtests.jobs.processes import cpu_plan, split
from loadtests.jobs.settings import RunSettings, load_plan
from loadtests.results.result import load_result
from tests.conftest import CLI_TIMEOUT_S, ServelabCli
from tests.loadtests.process_models import EXIT_CODE

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def _processes(document: Any) -> list[dict[str, Any]]:
    processes: list[dict[str, Any]] = document["extra"]["generator"]["processes"]
    return processes


def _histogram_total(document: Any, name: str) -> int:
    return LatencyHistogram.decode(document["histograms"][name]).total


@pytest.mark.parametrize(
    "load",
    [
        ["--concurrency", "4", "--requests", "3001"],
        ["--rate", "3000", "--arrival", "poisson", "--requests", "1500", "--warmup", "0.2s"],
        ["--loop", "tight", "--requests", "100001"],
    ],
    ids=["closed", "open", "tight"],
)
def test_two_processes_measure_exactly_the_requests_asked_and_merge_their_counts(
    tmp_path: Path, servelab_cli: ServelabCli, load: list[str]
) -> None:
    out = tmp_path / "r.json"
    done = servelab_cli(
        "run", "--target", "inprocess", "--processes", "2", *load, "--out", str(out),
        cwd=tmp_path, env=ENV,
    )  # fmt: skip
    # in-process and closed, nothing can be late; open: VALID or INVALID by the machine's load
    assert done.returncode in (0, 3), done.stderr
    document = load_result(out)
    asked = int(load[load.index("--requests") + 1])
    summary = document["summary"]
    assert summary["requests"] == summary["successes"] == asked
    processes = _processes(document)
    assert [p["fate"] for p in processes] == ["ok", "ok"]
    assert sum(p["requests"] for p in processes) == asked
    assert min(p["requests"] for p in processes) > 0
    assert len({p["pid"] for p in processes}) == 2
    assert _histogram_total(document, "latency") == asked  # the merged HDR: both parts' counts
    assert _histogram_total(document, "service_latency") == asked
    assert _histogram_total(document, "send_lateness") == asked
    assert sum(int(row["requests"]) for row in document["timeseries"]) == asked
    assert document["run"]["requests_limit"] == asked
    if "--loop" in load:
        assert document["run"]["concurrency"] == 2  # one back-to-back caller per process


def test_a_process_that_dies_makes_the_run_invalid_and_keeps_the_others_results(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "r.json"
    env = {**ENV, "SERVELAB_TEST_DIE_CLAIM": str(tmp_path / "claim")}  # one process claims it
    done = servelab_cli(
        "run", "--target", "inprocess", "--model", "tests.loadtests.process_models:DyingModel",
        "--processes", "2", "--concurrency", "2", "--requests", "4000", "--out", str(out),
        cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # INVALID measurement
    assert "died (exit code 7)" in done.stdout
    document = load_result(out)
    assert document["verdict"]["valid"] is False
    (reason,) = document["verdict"]["reasons"]
    assert f"died (exit code {EXIT_CODE}) before it reported" in reason
    dead, alive = sorted(_processes(document), key=lambda p: p["fate"] != "died")
    assert (dead["fate"], dead["exit_code"], alive["fate"]) == ("died", EXIT_CODE, "ok")
    assert alive["requests"] == 2000  # its whole share, kept
    assert document["summary"]["requests"] == 2000
    assert _histogram_total(document, "latency") == 2000


def test_ctrl_c_stops_every_process_and_keeps_what_each_measured(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out, marks = tmp_path / "r.json", tmp_path / "marks"
    marks.mkdir()
    command = servelab_cli.argv(
        "run", "--target", "inprocess", "--model", "tests.loadtests.process_models:MarkingModel",
        "--processes", "2", "--duration", "60s", "--out", str(out),
    )  # fmt: skip
    env = {**ENV, "SERVELAB_TEST_MARK_DIR": str(marks)}
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline_s = time.monotonic() + CLI_TIMEOUT_S
        while len(list(marks.iterdir())) < 2 and process.poll() is None:  # readiness: each
            assert time.monotonic() < deadline_s, "the processes never began measuring"
            time.sleep(0.05)  # process has called the model once
        process.send_signal(signal.SIGINT)  # to the parent alone: the children have their own
        _, stderr = process.communicate(timeout=CLI_TIMEOUT_S)  # process group
    assert process.returncode == 130, stderr
    document = load_result(out)
    assert document["run"]["partial"] is True
    assert "interrupted" in document["verdict"]["reasons"]
    processes = _processes(document)
    assert [p["fate"] for p in processes] == ["ok", "ok"]  # each stopped and reported
    assert all(p["requests"] > 0 for p in processes)
    assert document["summary"]["requests"] == sum(p["requests"] for p in processes)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--processes", "0"], "--processes: expected an integer in [1, 256], got '0'"),
        (["--processes", "two"], "--processes: expected an integer in [1, 256], got 'two'"),
        (["--processes", "3", "--concurrency", "2"], "--processes 3 exceeds --concurrency 2"),
        (["--processes", "3", "--requests", "2", "--rate", "9"], "exceeds --requests 2"),
        (["--processes", "2", "--loop", "tight", "--concurrency", "3"], "one caller per process"),
        (["--processes", "2", "--events", "e.jsonl"], "--events logs one process's requests"),
    ],
)
def test_bad_processes_values_are_one_line_exit_2(
    tmp_path: Path, servelab_cli: ServelabCli, args: list[str], words: str
) -> None:
    done = servelab_cli("run", "--target", "inprocess", *args, cwd=tmp_path, env=ENV)
    assert done.returncode == 2
    assert words in done.stderr
    assert done.stderr.strip().count("\n") == 0


def test_split_shares_a_closed_loop_and_keeps_an_open_schedule_whole() -> None:
    closed = RunSettings(
        target="inprocess", plan=load_plan(concurrency=5, requests=11), processes=2
    )
    parts = split(closed)
    assert [(p.plan.concurrency, p.plan.requests) for p in parts] == [(3, 6), (2, 5)]
    assert [(p.part.index, p.part.count) for p in parts if p.part] == [(0, 2), (1, 2)]
    opened = RunSettings(target="inprocess", plan=load_plan(rate=100.0, requests=9), processes=3)
    assert {p.plan for p in split(opened)} == {opened.plan}  # each part filters the schedule


def test_processes_are_pinned_to_distinct_cpus_only_where_there_are_enough() -> None:
    assert cpu_plan(2, [3, 1, 5]) == ([1, 3], "")
    cpus, warning = cpu_plan(3, [0, 1])
    assert cpus == [None, None, None]
    assert "3 generator processes on 2 CPU(s): not pinned" in warning


def test_a_bench_cell_takes_processes() -> None:
    base = {"cells": [{"target": "inprocess", "concurrency": 4, "processes": 2}]}
    (cell,) = parse_config(base, "b.toml").cells
    assert cell.processes == 2
    bad = {"cells": [{"target": "inprocess", "processes": 0}]}
    with pytest.raises(ValueError, match=r"cells\[0\]\.processes: expected an integer >= 1"):
        parse_config(bad, "b.toml")
