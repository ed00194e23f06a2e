"""Locust's ``EdgeUser --flaky-link``: one short headless run through the fault proxy, counted
as ``servelab run --flaky-link`` counts it (``extra.link``). Locust runs in a subprocess (it
monkey-patches whatever imports it); the assertions are on counts, not on timing."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loadtests.jobs.launch import launch_target
from loadtests.locust_integration.support import add_arguments
from loadtests.results.result import load_result

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
TIMEOUT_S = 120
# up 0.9 s, down 0.6 s: a 4 s test holds the outages at 0.9 s and 2.4 s (and part of 3.9 s);
# no resets, so the breaker's closes follow from the schedule alone
PROFILE = "down=0.6s/1.5s,reset=0%,delay=5ms"


def _locust(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--only-summary",
               "--headless", *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        command, cwd=cwd, env=env, text=True, capture_output=True, timeout=TIMEOUT_S, check=False
    )


def test_the_option_takes_a_profile_or_the_default_and_refuses_a_bad_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="locust")
    add_arguments(parser)
    assert parser.parse_args([]).flaky_link is None
    assert parser.parse_args(["--flaky-link"]).flaky_link == "default"
    assert parser.parse_args(["--flaky-link", PROFILE]).flaky_link == PROFILE
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--flaky-link", "down=9s/5s"])
    assert exit_info.value.code == 2
    assert "--flaky-link 'down=9s/5s': down:" in capsys.readouterr().err


@pytest.mark.slow
def test_edge_user_rides_out_two_outages_behind_the_flaky_link(tmp_path: Path) -> None:
    out = tmp_path / "edge.json"
    with launch_target("rest", model_spec="reference") as rest:
        ran = _locust(
            tmp_path, "--host", rest.url, "EdgeUser", "-u", "2", "-r", "2", "-t", "4s",
            "--flaky-link", PROFILE, "--result", str(out),
        )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]
    assert "Traceback" not in ran.stderr, ran.stderr[-4000:]
    document: dict[str, Any] = dict(load_result(out))
    link = document["extra"]["link"]
    assert document["summary"]["failures"] == 0
    assert link["lost"] == 0
    assert link["outages"] >= 2
    assert link["outages_scheduled"] >= link["outages"]
    assert link["while_down"]["local"] > 0
    assert link["while_up"]["remote"] > 0
    assert link["breaker"]["opens"] >= 2
    assert link["breaker"]["closes"] >= 1
    assert link["proxy"]["outages_hit"][:2] == [0, 1]
    assert link["proxy"]["resets"] == 0


def test_a_flaky_link_without_a_host_is_refused_before_any_load(tmp_path: Path) -> None:
    ran = _locust(
        tmp_path, "EdgeUser", "-u", "1", "-r", "1", "-t", "2s", "--flaky-link",
        "--result", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr[-4000:]
    assert "--flaky-link needs --host" in ran.stderr
