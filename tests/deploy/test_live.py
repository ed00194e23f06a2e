"""The deployment files' commands and probes, run against servers really started here (loopback,
port 0, readiness polled, stopped by PID): the REST target with the Deployment's arguments and
the gRPC target with the compose file's answer every probe and health check those files name;
the Kubernetes Job's ``servelab run`` works against the REST target; a health check against a
closed port fails (so passing ones mean something)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from loadtests.jobs.launch import LaunchedTarget, launch_target
from loadtests.results.result import load_result
from tests.deploy.files import (
    COMPOSE,
    DOCKERFILE,
    container,
    final_stage,
    healthcheck_command,
    load_yaml,
    manifest,
    option,
    pod_spec,
    replace_option,
    url_in,
    without_options,
)

COMMAND_TIMEOUT_S = 60
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextlib.contextmanager
def _launch(kind: str, argv: list[str]) -> Iterator[LaunchedTarget]:
    """``servelab serve KIND`` with ``argv``'s options, on 127.0.0.1 and a free port instead of
    the deployment's address."""
    assert argv[:2] == ["serve", kind], argv
    options = without_options(argv[2:], "--host", "--port", "--model")
    with launch_target(kind, model_spec=option(argv, "--model"), extra_args=options) as target:
        yield target


@pytest.fixture(scope="module")
def rest_target() -> Iterator[LaunchedTarget]:
    with _launch("rest", container(manifest("Deployment"))["args"]) as target:
        yield target


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # released, and nothing else listens there


def _run_python_command(command: list[str], address: str, port: int) -> int:
    """A ``["python", "-c", CODE]`` health check with ``address`` in CODE pointed at ``port``
    on loopback; its exit code."""
    assert command[:2] == ["python", "-c"], command
    code = command[2].replace(address, f"127.0.0.1:{port}")
    assert code != command[2], f"{address} not in {command[2]!r}"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    return done.returncode


def test_the_rest_probes_answer_200(rest_target: LaunchedTarget) -> None:
    rest = container(manifest("Deployment"))
    paths = {
        rest[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    paths.add(url_in(" ".join(healthcheck_command(final_stage(DOCKERFILE)))).path)
    assert paths == {"/healthz", "/readyz"}
    for path in sorted(paths):
        with _LOOPBACK.open(rest_target.url + path, timeout=10) as answer:
            assert answer.status == 200, path
            assert orjson.loads(answer.read())["status"] in {"ok", "ready"}, path


def test_the_image_healthcheck_passes_on_rest_and_fails_on_a_closed_port(
    rest_target: LaunchedTarget,
) -> None:
    command = healthcheck_command(final_stage(DOCKERFILE))
    address = "127.0.0.1:8000"
    assert _run_python_command(command, address, rest_target.info["port"]) == 0
    assert _run_python_command(command, address, _closed_port()) != 0


def test_the_job_waits_for_and_loads_the_rest_target(
    rest_target: LaunchedTarget, tmp_path: Path
) -> None:
    job = manifest("Job")
    argv: list[str] = container(job)["args"]
    url = option(argv, "--url")
    (wait,) = pod_spec(job)["initContainers"]
    assert (
        _run_python_command(wait["command"], url.removeprefix("http://"), rest_target.info["port"])
        == 0
    )
    out = tmp_path / "run.json"
    # the Job's command, pointed at this target, measured for 1 s instead of 30
    for name, value in (("--url", rest_target.url), ("--duration", "1s"), ("--warmup", "0s"),
                        ("--out", str(out))):  # fmt: skip
        argv = replace_option(argv, name, value)
    # --allow-invalid: a busy shared machine may make the generator late (exit 3); the test is
    # that the Job's arguments are accepted and measure, not how fast this machine is
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.cli", *argv, "--allow-invalid"],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
    )  # fmt: skip
    # 0 or 1 (a latency gate may breach on a busy machine); never 2 (bad input)
    assert done.returncode in (0, 1), done.stderr
    result = load_result(out)
    assert result["run"]["profile"] == option(argv, "--profile")
    assert result["run"]["label"] == option(argv, "--label")
    assert result["summary"]["requests"] > 0
    assert result["summary"]["schema_success_rate"] == 1.0


def test_the_compose_grpc_healthcheck_passes_on_grpc_and_fails_on_a_closed_port() -> None:
    grpc = load_yaml(COMPOSE)["services"]["grpc"]
    _cmd, *command = grpc["healthcheck"]["test"]
    address = f"127.0.0.1:{option(grpc['command'], '--port')}"
    with _launch("grpc", grpc["command"]) as target:
        assert _run_python_command(command, address, target.info["port"]) == 0
    assert _run_python_command(command, address, _closed_port()) != 0
