"""servelab bench: config validation up front, the run plan, and a small end-to-end bench."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loadtests.errors import ConfigError
from loadtests.jobs.bench import plan_runs, settings_for
from loadtests.jobs.bench_config import default_config, load_config, parse_config
from tests.conftest import ServelabCli

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_example_configs_are_valid() -> None:
    for name in ("bench.toml", "profiles.toml"):
        config = load_config(ROOT / "examples" / name)
        assert plan_runs(config)
    profiles = load_config(ROOT / "examples" / "profiles.toml")
    assert [p.name for p in profiles.profiles] == ["1core-1worker", "1core-2workers"]
    assert len(plan_runs(profiles)) == 4  # 2 profiles x 1 level x 2 repeats


def test_default_matrix_has_all_seven_patterns() -> None:
    config = default_config(quick=True, model="reference")
    targets = [run.cell.target for run in plan_runs(config)]
    assert targets == ["inprocess", "rest", "grpc", "grpc-stream", "stream", "batch", "edge"]
    assert sum(cell.duration_s + cell.warmup_s for cell in config.cells) <= 20


def test_the_full_default_matrix_adds_a_bursty_serverless_cell() -> None:
    config = default_config(quick=False, model="reference")
    cell = next(cell for cell in config.cells if cell.target == "function")
    assert (cell.target, cell.loads, cell.warmup_s) == ("function", (("stages", 0.0),), 0.0)
    assert cell.stages is not None
    gaps = [duration for duration, rate in cell.stages if rate == 0]
    assert gaps
    assert min(gaps) > 2 * 0.5  # idle gaps well past the front's idle timeout
    assert cell.server_args == ("--idle-timeout", "0.5s", "--max-function-instances", "1")
    assert cell.duration_s <= 8
    # a cold start's backlog waits at the front, not for one of the client's connections
    assert cell.connections is not None
    assert cell.connections >= max(rate for _, rate in cell.stages) * 0.5


def test_a_cell_names_its_connections_as_run_does() -> None:
    config = parse_config(_cell(rates=[50], connections=16), "t.toml")
    run = plan_runs(config)[0]
    assert config.cells[0].connections == 16
    assert settings_for(run, config, None).connections == 16
    with pytest.raises(ConfigError, match="connections"):
        parse_config(_cell(connections="many"), "t.toml")


def test_the_full_default_matrix_measures_real_freshness() -> None:
    config = default_config(quick=False, model="reference")
    cell = config.cells[-1]
    assert cell.freshness is not None
    assert cell.freshness.schedules_s == (900, 3600, 86400)  # 15 min, hourly, nightly
    assert len(cell.freshness.windows_ms) >= 2  # streaming windows beside them
    # the real streaming runs (the backfills run on virtual time)
    streamed = len(cell.freshness.windows_ms) * (cell.duration_s + cell.warmup_s)
    assert streamed <= 3
    assert [run.cell.target for run in plan_runs(config)][-1] == "freshness"


def test_a_stages_cell_lasts_its_stages_without_warm_up() -> None:
    config = parse_config(
        {"cells": [{"target": "function", "stages": "1s:5,2s:0,1s:5", "idle_timeout": "1s"}]},
        "t.toml",
    )
    cell = config.cells[0]
    assert (cell.stages, cell.duration_s, cell.warmup_s) == (((1, 5), (2, 0), (1, 5)), 4, 0)
    assert cell.server_args == ("--idle-timeout", "1s")
    assert [run.name for run in plan_runs(config)] == ["001-function-stages-default-rep0"]


def _rest(**top: object) -> dict[str, object]:
    return {"cells": [{"target": "rest"}], **top}


def _cell(**cell: object) -> dict[str, object]:
    return {"cells": [{"target": "rest", **cell}]}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (_rest(bench={"durration": "1s"}), "bench.durration: unknown key"),
        (_cell(concurrency="many"), "cells[0].concurrency: expected an integer"),
        (_cell(target="ftp"), "cells[0].target: expected one of"),
        ({"cells": [{"concurrency": 2}]}, "cells[0]: missing key 'target'"),
        (_rest(bench={"duration": 10}), "bench.duration: expected a duration"),
        (_rest(bench={"duration": "10"}), "bench.duration: duration '10'"),
        (_cell(model="synthetic:x:1ms"), "cells[0].model: bad --model"),
        (_cell(rates=[-5]), "cells[0].rates: expected a number"),
        ({"cells": []}, "cells: expected at least one"),
        (_rest(bench={"thresholds": ["p99<<1"]}), "bench.thresholds:"),
        (_rest(profiles=[{"name": "a", "cpus": [4096]}]), "not available here"),
        (_rest(profiles=[{"name": "a", "workers": 0}]), "profiles[0].workers"),
        (_cell(profiles=["nope"]), "unknown profile 'nope'"),
        (_rest(extra=1), "top level.extra: unknown key"),
        (_cell(stages="1s"), "cells[0].stages: expected DURATION:RATE"),
        (_cell(stages="1s:5", concurrency=2), "cells[0].stages: give stages or"),
        (_cell(idle_timeout="1s"), 'cells[0].idle_timeout: goes with target = "function"'),
    ],
)
def test_bad_configs_name_the_key(data: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "bench.toml")
    assert str(caught.value).startswith("bench.toml: ")
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unreadable_and_broken_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[bench\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


def _bench(
    servelab_cli: ServelabCli, tmp_path: Path, config: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bench.toml"
    path.write_text(config)
    return servelab_cli(
        "bench", "--config", str(path), "--out", str(tmp_path / "out"), *extra,
        timeout=180, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


SMALL = """
[bench]
duration = "1s"
warmup = "200ms"
[[profiles]]
name = "pinned"
cpus = [0]
workers = 2
threads = 1
[[cells]]
target = "inprocess"
concurrency = 2
[[cells]]
target = "rest"
concurrency = 2
"""


def test_a_small_bench_writes_every_result_with_the_measured_profile(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    result = _bench(servelab_cli, tmp_path, SMALL)
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted((tmp_path / "out").glob("*.json"))
    assert [f.name for f in files] == [
        "001-inprocess-c2-pinned-rep0.json",
        "002-rest-c2-pinned-rep0.json",
    ]
    rest = json.loads(files[1].read_text())
    profile = rest["extra"]["profile"]
    assert profile["name"] == "pinned"
    assert profile["server_cpus_measured"] == [0]
    assert profile["workers_measured"] == 2
    assert profile["thread_caps"]["OMP_NUM_THREADS"] == "1"
    assert rest["run"]["profile"] == "pinned"
    assert rest["summary"]["schema_success_rate"] == 1.0
    assert "VALID" in result.stdout


def test_a_breached_threshold_exits_1_and_says_which(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    config = SMALL.split("[[cells]]", maxsplit=1)[0] + (
        '[[cells]]\ntarget = "inprocess"\nconcurrency = 1\n'
    )
    result = _bench(servelab_cli, tmp_path, config, "--threshold", "throughput_rps>=1e12")
    assert result.returncode == 1
    assert "threshold breached: 001-inprocess-c1-pinned-rep0: throughput_rps>=1e12" in result.stderr


def test_a_bad_config_is_exit_2_before_anything_runs(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    result = _bench(servelab_cli, tmp_path, '[[cells]]\ntarget = "rest"\nconcurrency = 0\n')
    assert result.returncode == 2
    assert "cells[0].concurrency" in result.stderr
    assert not (tmp_path / "out").exists()
