"""One event loop for every load-generating entry point, chosen in ``loadtests.engine.loop`` and
recorded in each result (``environment.event_loop``)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from loadtests.drivers.inprocess import InProcessDriver
from loadtests.engine.harness import LoadPlan
from loadtests.engine.loop import EVENT_LOOP, run
from loadtests.engine.loop import running_loop_name as loop_name
from loadtests.jobs.api import run_load_test
from targets.spec import load_model
from tests.conftest import ServelabCli

PACKAGE = Path(__file__).resolve().parents[2] / "loadtests"
LOOP_STARTERS = {"run", "Runner", "new_event_loop", "get_event_loop", "run_until_complete"}


def _loop_starts(path: Path) -> list[str]:
    """Calls in ``path`` that start an event loop of their own choosing."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in LOOP_STARTERS:
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in {"asyncio", "uvloop"}:
                found.append(f"{path.name}:{node.lineno}: {owner.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "uvloop":
            found.append(f"{path.name}:{node.lineno}: from uvloop import")
        if isinstance(node, ast.Import) and any(alias.name == "uvloop" for alias in node.names):
            found.append(f"{path.name}:{node.lineno}: import uvloop")
    return found


def test_only_the_loop_module_chooses_a_loop() -> None:
    # clock.py runs the virtual-time loop for exact tests: simulated time, not a real loop.
    allowed = {"loop.py", "clock.py"}
    offenders = [
        start
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name not in allowed
        for start in _loop_starts(path)
    ]
    assert offenders == []


def test_the_loop_module_runs_the_loop_it_names() -> None:
    async def main() -> str | None:
        return loop_name()

    assert run(main()) == EVENT_LOOP == "uvloop"
    assert loop_name() is None  # outside a loop


def test_the_python_api_records_the_loop_it_ran_on() -> None:
    plan = LoadPlan(mode="closed", concurrency=2, duration_s=None, requests=50)
    real = run_load_test(InProcessDriver(load_model("reference")), plan=plan)
    assert real.result["environment"]["event_loop"] == EVENT_LOOP
    virtual = run_load_test(InProcessDriver(load_model("reference")), plan=plan, virtual_time=True)
    assert virtual.result["environment"]["event_loop"] == "virtual"


def test_servelab_run_records_the_loop_it_ran_on(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "r.json"
    result = servelab_cli("run", "--target", "inprocess", "--requests", "200", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["environment"]["event_loop"] == EVENT_LOOP
