"""``--runtime python|wasm`` through the registry, the run settings, ``servelab run`` and the
bench config: the edge computes with the runtime asked for, and the result says which."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from loadtests.drivers.edge import EdgeDriver
from loadtests.drivers.registry import DriverOptions, target
from loadtests.engine.driver import Reply
from loadtests.engine.workload import Payload
from loadtests.errors import ConfigError, LoadOptionError
from loadtests.jobs.bench_config import parse_config
from loadtests.jobs.settings import RunSettings
from tests.conftest import ServelabCli


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens: an edge whose remote is down answers locally."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_the_edge_factory_builds_the_runtime_asked_for() -> None:
    async def three_requests(driver: EdgeDriver) -> None:
        await driver.open()
        for row in ([1.0, 2.0], [3.0], [1.0, 2.0]):
            reply = await driver.send(Payload("v1", [row], {"instances": row}))
            assert reply == Reply.ok(1)  # one prediction, its answer checked
        await driver.close()

    for runtime in ("python", "wasm"):
        driver = target("edge").make_driver(DriverOptions(model="reference", edge_runtime=runtime))
        assert isinstance(driver, EdgeDriver)
        asyncio.run(three_requests(driver))
        extra = driver.extra()
        assert extra["model_runtime"] == runtime
        assert extra["runtime"]["model_runtime"] == runtime
        assert {s: v["count"] for s, v in extra["sources"].items()} == {
            "cache": 1, "remote": 0, "local": 2,
        }  # fmt: skip


def test_runtime_is_an_edge_option_with_two_values() -> None:
    assert RunSettings(target="edge", edge_runtime="wasm").edge_runtime == "wasm"
    with pytest.raises(LoadOptionError, match="--runtime goes with --target edge, not rest"):
        RunSettings(target="rest", edge_runtime="wasm")
    with pytest.raises(LoadOptionError, match="--runtime must be one of python, wasm"):
        RunSettings(target="edge", edge_runtime="js")


def test_bench_cells_take_a_runtime_key_for_edge_cells_only() -> None:
    config = parse_config(
        {"cells": [{"target": "edge"}, {"target": "edge", "runtime": "wasm"}]}, "b.toml"
    )
    assert [cell.runtime for cell in config.cells] == ["python", "wasm"]
    with pytest.raises(ConfigError, match=r"cells\[0\]\.runtime: goes with target = \"edge\""):
        parse_config({"cells": [{"target": "rest", "runtime": "wasm"}]}, "b.toml")
    with pytest.raises(ConfigError, match=r"cells\[0\]\.runtime: expected one of python, wasm"):
        parse_config({"cells": [{"target": "edge", "runtime": "js"}]}, "b.toml")


def test_servelab_run_target_edge_runtime_wasm(
    tmp_path: Path, servelab_cli: ServelabCli, refused_url: str
) -> None:
    out = tmp_path / "edge-wasm.json"
    ran = servelab_cli(
        "run", "--target", "edge", "--runtime", "wasm", "--url", refused_url,
        "--requests", "200", "--concurrency", "2", "--distinct", "16", "--instances", "3",
        "--out", str(out),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    result = json.loads(out.read_text())
    assert result["extra"]["model_runtime"] == "wasm"
    assert result["summary"]["successes"] == 200
    sources = result["extra"]["sources"]
    assert sources["local"]["count"] + sources["cache"]["count"] == 200  # the remote is down
    assert sources["local"]["count"] > 0
    refused = servelab_cli("run", "--target", "rest", "--runtime", "wasm", "--requests", "1")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "--runtime goes with --target edge" in refused.stderr
