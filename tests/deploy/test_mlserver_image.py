"""deploy/mlserver.Dockerfile's configuration, run: MLServer from ``make servers``' environment
(the same requirements file the image installs), with the image's ``MLSERVER_*`` variables and
command (only the address, the ports and the model folder moved to loopback and a temporary
folder), loads servelab's exported digits model as the compose file hands it over, and the
image's HEALTHCHECK passes once it is ready. A missing environment fails, naming
``make servers``; ``SERVELAB_SKIP_SERVERS=1`` skips, as for the other real-server tests."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from targets.learned import export_digits
from tests.deploy.files import (
    MLSERVER_DOCKERFILE,
    env,
    exec_form,
    final_stage,
    healthcheck_command,
    only,
)
from tests.servers.configs import free_ports
from tests.servers.launch import ENVS_DIR, is_built, log_tail, stop

pytestmark = pytest.mark.slow

SKIP_VARIABLE = "SERVELAB_SKIP_SERVERS"
READY_TIMEOUT_S = 120.0
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _require_mlserver() -> Path:
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the real-server tests are skipped")
    if not is_built("mlserver"):
        pytest.fail(
            f"mlserver: no server environment in {ENVS_DIR / 'mlserver'}: run `make servers` "
            f"(or set {SKIP_VARIABLE}=1 to skip the real-server tests)",
            pytrace=False,
        )
    return ENVS_DIR / "mlserver"


def _healthcheck_passes(python: Path, command: list[str], image_port: str, port: int) -> bool:
    """The image's HEALTHCHECK command, run with its URL on ``port``."""
    code = command[2].replace(f"127.0.0.1:{image_port}", f"127.0.0.1:{port}")
    assert code != command[2], command
    done = subprocess.run([str(python), "-c", code], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        assert process.poll() is None, log_tail(log)
        assert time.monotonic() < deadline, log_tail(log)
        try:
            with _LOOPBACK.open(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)  # polling readiness


def _infer_one_row(http_port: int, name: str) -> list[object]:
    row = {"name": "input-0", "shape": [1, 64], "datatype": "FP64", "data": [0.0] * 64}
    request = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v2/models/{name}/infer",
        data=orjson.dumps({"inputs": [row]}),
        headers={"content-type": "application/json"},
    )
    with _LOOPBACK.open(request, timeout=30) as answer:
        outputs = orjson.loads(answer.read())["outputs"]
    assert len(outputs) == 1
    data: list[object] = outputs[0]["data"]
    return data


def _variables(image_env: dict[str, str], models: Path, local_models: Path) -> dict[str, str]:
    """The image's MLSERVER_* variables, with loopback, free ports and the local model folder."""
    http, grpc, metrics = free_ports(3)
    variables = {key: value for key, value in image_env.items() if key.startswith("MLSERVER_")}
    uri = image_env["MLSERVER_MODEL_URI"]
    return variables | {
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(http),
        "MLSERVER_GRPC_PORT": str(grpc),
        "MLSERVER_METRICS_PORT": str(metrics),
        "MLSERVER_MODEL_URI": uri.replace(str(models), str(local_models)),
    }


def test_the_image_configuration_serves_the_exported_model(tmp_path: Path) -> None:
    env_dir = _require_mlserver()
    python = env_dir / "bin" / "python"
    stage = final_stage(MLSERVER_DOCKERFILE)
    image_env = env(stage)
    command = exec_form(only(stage, "CMD").argument)
    models = Path(image_env["MLSERVER_MODEL_URI"]).parent  # /models: the compose volume
    assert command == ["mlserver", "start", str(models)]
    local_models = tmp_path / "models"
    export_digits(local_models)  # what the compose file's digits-model service does
    variables = _variables(image_env, models, local_models)
    http = int(variables["MLSERVER_HTTP_PORT"])
    base = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"}}
    log = tmp_path / "mlserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), str(env_dir / "bin" / "mlserver"), *command[1:-1], str(local_models)],
            cwd=tmp_path, env={**base, **variables}, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        name = image_env["MLSERVER_MODEL_NAME"]
        _wait_ready(process, f"http://127.0.0.1:{http}/v2/models/{name}/ready", log)
        check = healthcheck_command(stage)
        assert _healthcheck_passes(python, check, image_env["MLSERVER_HTTP_PORT"], http)
        (digit,) = _infer_one_row(http, name)
        assert digit in range(10)
    finally:
        stop(process)
    assert not _healthcheck_passes(python, check, image_env["MLSERVER_HTTP_PORT"], http)
