"""``servelab locust`` with a locustfile of the user's own, alone or beside servelab's: their users
run (servelab's only when named), recorded into servelab's result file and gated.

The plan is checked in process; the runs are Locust subprocesses (it monkey-patches whatever
imports it), one at a time beside the one REST target: two busy processes at most.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from loadtests.locust_integration.runner import LOCUSTFILE, PLUGIN, SHAPES, plan_locustfiles
from loadtests.results.result import load_result
from tests.conftest import RunningTarget, ServelabCli

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120
OWN_LOCUSTFILE = """\
from locust import FastHttpUser, task


class MyUser(FastHttpUser):
    @task
    def predict(self) -> None:
        self.client.post("/v1/predict", json={"instances": [1.0, 2.0, 3.0, 4.0]})
"""


def test_servelab_files_alone_keep_the_default_user() -> None:
    assert plan_locustfiles(str(LOCUSTFILE), []) == (str(LOCUSTFILE), "RestUser")
    both = f"{LOCUSTFILE},{SHAPES}"
    assert plan_locustfiles(both, ["GrpcUser"]) == (both, "RestUser")


def test_own_locustfile_gets_the_plugin_and_no_default_user() -> None:
    assert plan_locustfiles("my.py", ["-u", "2"]) == (f"my.py,{PLUGIN}", None)
    # servelab's locustfile listed but none of its users named: its users stay out
    assert plan_locustfiles(f"{LOCUSTFILE},my.py", ["MyUser"]) == (f"{PLUGIN},my.py", None)
    assert plan_locustfiles(f"my.py,{PLUGIN},{PLUGIN}", []) == (f"my.py,{PLUGIN}", None)


def test_own_locustfile_with_a_named_servelab_user_loads_its_locustfile() -> None:
    assert plan_locustfiles("my.py", ["RestUser", "MyUser"]) == (f"my.py,{LOCUSTFILE}", None)
    planned = plan_locustfiles(f"{LOCUSTFILE},my.py,{PLUGIN}", ["GrpcUser"])
    assert planned == (f"{LOCUSTFILE},my.py", None)


def _servelab_locust(
    servelab_cli: ServelabCli, cwd: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    return servelab_cli(
        "locust", "-u", "2", "-t", "2s", *args,
        cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=TIMEOUT_S,
    )  # fmt: skip


def test_own_user_class_is_recorded_and_gated(
    tmp_path: Path, spawn_target: Callable[..., RunningTarget], servelab_cli: ServelabCli
) -> None:
    (tmp_path / "my_locustfile.py").write_text(OWN_LOCUSTFILE)
    target = spawn_target("rest")

    alone = _servelab_locust(
        servelab_cli, tmp_path, "-f", "my_locustfile.py", "--host", target.url,
        "--out", "alone.json",
    )  # fmt: skip
    assert alone.returncode == 0, alone.stderr[-4000:]
    document = load_result(tmp_path / "alone.json")
    assert document["summary"]["requests"] > 0
    assert document["summary"]["failures"] == 0
    assert document["extra"]["user_classes"] == ["MyUser"]  # servelab's users stayed out

    beside = _servelab_locust(
        servelab_cli, tmp_path, "-f", f"{LOCUSTFILE},my_locustfile.py", "MyUser",
        "--host", target.url, "--threshold", "p99<0.001ms", "--out", "beside.json",
    )  # fmt: skip
    assert beside.returncode == 1, beside.stderr[-4000:]  # the gate, breached
    document = load_result(tmp_path / "beside.json")
    assert document["summary"]["requests"] > 0
    assert document["extra"]["user_classes"] == ["MyUser"]
    assert [check["passed"] for check in document["extra"]["thresholds"]] == [True, False]
