"""Locust's ``RestUser`` speaks ``--protocol`` as ``servelab run`` does: the same options (one
declaration), the contract built and prepared once per process (readiness, the model's
metadata), each distinct payload encoded once, answers judged by the contract, the protocol
recorded; a target that cannot be loaded is refused in one line before any load.

The Locust runs are real and short (2 s, 2 users, one after another) against FastAPI apps with
foreign contracts and servelab's own REST target speaking the Open Inference Protocol."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from loadtests.engine.workload import Payload
from loadtests.locust_integration.contracts import protocol_refusal
from loadtests.locust_integration.session import Session
from loadtests.locust_integration.support import Workload, add_arguments
from loadtests.options import PROTOCOL_OPTIONS, add_protocol_options
from loadtests.protocols.base import HttpRequest
from loadtests.protocols.kserve_v1 import KServeV1
from loadtests.results.result import load_result
from tests.conftest import ServelabCli
from tests.loadtests.foreign_apps import kserve_v1_app, scoring_app, served
from tests.loadtests.test_protocols import TEMPLATE

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
GOLDEN = Path(__file__).parent / "golden" / "result-v2.json"
TIMEOUT_S = 120
API_KEY = ("x-api-key", "s3cret")
SHORT = ("-u", "2", "-t", "2s")


def _locust_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locust")
    add_arguments(parser)
    return parser


# -- in process: options, refusals, encoding, preparing once ------------------------------------


def test_locust_declares_the_protocol_options_servelab_run_declares() -> None:
    run = argparse.ArgumentParser()
    add_protocol_options(run)
    locust = _locust_parser()
    for name, _spec in PROTOCOL_OPTIONS:
        ours = next(a for a in locust._actions if name in a.option_strings)
        theirs = next(a for a in run._actions if name in a.option_strings)
        assert (ours.default, ours.choices, ours.metavar) == (
            theirs.default, theirs.choices, theirs.metavar
        ), name  # fmt: skip
        assert ours.help == f"servelab: {theirs.help}"
    options = locust.parse_args(["--protocol", "oip", "--tensor", "a:FP64:-1,4",
                                 "--tensor", "b:INT64:-1,4", "--header", "k:v"])  # fmt: skip
    assert options.tensor == ["a:FP64:-1,4", "b:INT64:-1,4"]  # plain lists: they go to workers
    assert locust.parse_args([]).tensor == []  # each parse its own list


def test_a_protocol_is_refused_for_the_users_that_do_not_speak_it() -> None:
    parse = _locust_parser().parse_args
    both = {"RestUser": "rest", "GrpcUser": "grpc", "MyUser": "locust"}
    refusal = protocol_refusal(parse(["--protocol", "kserve-v1", "--model-name", "m"]), both)
    assert refusal == "--protocol kserve-v1 is not spoken by GrpcUser (it goes with --target rest)"
    assert protocol_refusal(parse([]), both) is None  # servelab's own contract: every user
    oip = parse(["--protocol", "oip", "--model-name", "m"])  # ModelInfer / ModelStreamInfer
    assert protocol_refusal(oip, {**both, "GrpcStreamUser": "grpc-stream"}) is None
    edge = protocol_refusal(oip, {"EdgeUser": "edge"})
    assert (
        edge == "--protocol oip is not spoken by EdgeUser (it goes with --target grpc or "
        "grpc-stream or rest)"
    )
    assert protocol_refusal(parse(["--protocol", "oip"]), both) == (
        "--protocol oip needs --model-name NAME"
    )
    assert "NAME:VALUE" in (protocol_refusal(parse(["--header", "nocolon"]), both) or "")


def test_each_distinct_payload_is_encoded_once() -> None:
    calls: list[Payload] = []

    class Counting(KServeV1):
        def request(self, payload: Payload) -> HttpRequest:
            calls.append(payload)
            return KServeV1.request(self, payload)

    workload = Workload(_locust_parser().parse_args(["--distinct", "5"]), row_width=3)
    contract = Counting(model_name="m")
    requests = [workload.request(workload.next_payload(), contract) for _ in range(20)]
    assert len(calls) == 5
    assert {len(json.loads(r.body)["instances"][0]) for r in requests} == {3}  # the width fixed
    assert requests[0] is requests[5]


def test_a_result_file_from_before_protocols_loads_as_servelab(tmp_path: Path) -> None:
    document = json.loads(GOLDEN.read_text())
    del document["run"]["protocol"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(document))
    assert load_result(older)["run"]["protocol"] == "servelab"


def oip_app_listing_no_inputs(model: str = "sk") -> FastAPI:
    """The Open Inference Protocol as MLServer's sklearn runtime serves it: metadata without
    inputs (so ``--tensor`` is needed), behind an API key."""
    app = FastAPI()
    seen = {"ready": 0}

    @app.middleware("http")
    async def api_key(request: Request, call_next: Any) -> Any:
        if request.headers.get(API_KEY[0]) != API_KEY[1]:
            return JSONResponse({"error": "no key"}, status_code=401)
        return await call_next(request)

    @app.get(f"/v2/models/{model}/ready")
    def ready() -> dict[str, object]:
        seen["ready"] += 1
        return {}

    @app.get(f"/v2/models/{model}")
    def metadata() -> dict[str, object]:
        return {"name": model, "platform": "sklearn", "versions": []}

    @app.post(f"/v2/models/{model}/infer")
    async def infer(request: Request) -> Any:
        inputs = (await request.json()).get("inputs") or [{}]
        shape, data = inputs[0].get("shape", [0, 0]), inputs[0].get("data", [])
        if inputs[0].get("datatype") != "FP64" or len(data) != shape[0] * shape[1] or not data:
            return JSONResponse({"error": "bad input"}, status_code=400)
        rows = shape[0]
        return {"model_name": model,
                "outputs": [{"name": "predict", "datatype": "INT64", "shape": [rows, 1],
                             "data": [0] * rows}]}  # fmt: skip

    app.state.seen = seen
    return app


def test_a_session_prepares_its_contract_once_per_process(tmp_path: Path) -> None:
    app = oip_app_listing_no_inputs()
    with served(app) as url:
        options = _locust_parser().parse_args([
            "--protocol", "oip", "--model-name", "sk", "--tensor", "input-0:FP64:-1,4",
            "--header", ":".join(API_KEY), "--result", str(tmp_path / "r.json"),
        ])  # fmt: skip
        hooks = SimpleNamespace(add_listener=lambda listener: None)
        environment = SimpleNamespace(
            host=url, parsed_options=options, runner=None, shape_class=None,
            events=SimpleNamespace(**dict.fromkeys(("test_start", "test_stop", "quitting",
                                                    "request"), hooks)),
            user_classes=[type("RestUser", (), {"servelab_target": "rest"})],
        )  # fmt: skip
        session = Session(environment, "local")
        assert session.configuration_error() is None
        assert session.prepare_contract() is None  # at init
        session.on_test_start()  # the test starts: already prepared for this host
        assert session.rest_contract().row_width() == 4
        assert len(session.workload().next_payload().rows[0]) == 4
    assert app.state.seen["ready"] == 1


# -- real Locust runs -----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


Run = Callable[..., tuple[subprocess.CompletedProcess[str], dict[str, Any]]]


@pytest.fixture
def cli(servelab_cli: ServelabCli, tmp_path: Path) -> Run:
    """``servelab locust`` for 2 s with 2 users: it must exit 0; its output and result."""

    def run(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        out = tmp_path / "r.json"
        done = servelab_cli("locust", *SHORT, *args, "--out", str(out), cwd=tmp_path,
                            env=_env(), timeout=TIMEOUT_S)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return done, dict[str, Any](load_result(out))

    return run


def test_restuser_speaks_kserve_v1_to_a_fastapi_app(cli: Run) -> None:
    with served(kserve_v1_app("digits")) as url:
        _, result = cli("RestUser", "--host", url, "--protocol", "kserve-v1",
                        "--model-name", "digits")  # fmt: skip
    summary = result["summary"]
    assert result["run"]["protocol"] == "kserve-v1"
    assert summary["requests"] > 0
    assert (summary["schema_success_rate"], summary["failures"]) == (1.0, 0)


def test_restuser_speaks_a_users_own_contract_from_a_template(cli: Run, tmp_path: Path) -> None:
    template = tmp_path / "score.toml"
    template.write_text(TEMPLATE)
    with served(scoring_app()) as url:
        _, result = cli("RestUser", "--host", url, "--protocol", "template",
                        "--request-template", str(template), "--api", "v2",
                        "--rows-per-request", "3", "--invalid-fraction", "0.2")  # fmt: skip
    summary = result["summary"]
    assert result["run"]["protocol"] == "template"
    assert (summary["schema_success_rate"], summary["failures"]) == (1.0, 0)
    assert 0 < summary["expected_rejections"] < summary["requests"]  # the app's 422s


def test_restuser_speaks_oip_to_servelabs_own_target(cli: Run) -> None:
    # no --host: servelab locust starts its REST target, serving digits (64 features: the
    # metadata says so, and the payloads follow)
    done, result = cli("--model", "digits", "RestUser", "--protocol", "oip",
                       "--model-name", "digits", "--invalid-fraction", "0.2")  # fmt: skip
    summary = result["summary"]
    assert result["run"]["protocol"] == "oip"
    assert (summary["schema_success_rate"], summary["failures"]) == (1.0, 0)
    assert summary["expected_rejections"] > 0  # wrong shape, unknown datatype, no input: 400s
    assert "/v2/models/digits/infer" in done.stderr  # Locust's table names the contract's path


def test_tensors_and_headers_reach_a_server_whose_metadata_lists_no_inputs(cli: Run) -> None:
    with served(oip_app_listing_no_inputs("sk")) as url:
        _, result = cli("RestUser", "--host", url, "--protocol", "oip", "--model-name", "sk",
                        "--tensor", "input-0:FP64:-1,4", "--header", ":".join(API_KEY))  # fmt: skip
    assert result["summary"]["schema_success_rate"] == 1.0
    assert result["summary"]["failures"] == 0


def _refused(tmp_path: Path, url: str, *args: str) -> str:
    out = tmp_path / "r.json"
    done = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
         *SHORT, "--host", url, "RestUser", "--result", str(out), *args],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-4000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("servelab:")]
    assert len(lines) == 1, done.stderr
    assert "Ramping" not in done.stderr
    assert not out.exists()
    return lines[0]


def test_a_wrong_model_name_is_refused_in_one_line_before_any_load(tmp_path: Path) -> None:
    with served(kserve_v1_app("digits")) as url:
        line = _refused(tmp_path, url, "--protocol", "kserve-v1", "--model-name", "nope")
    assert f"{url}/v1/models/nope answered HTTP 404" in line
    assert "a wrong --model-name" in line


@pytest.mark.parametrize("user", ["GrpcUser", "GrpcStreamUser"])
def test_grpc_users_speak_oip_to_servelabs_own_grpc_target(cli: Run, user: str) -> None:
    # servelab locust starts its gRPC target serving digits: ModelMetadata names the 64-wide
    # input, ModelInfer / ModelStreamInfer answer; the invalid payloads are refused in place
    done, result = cli("--model", "digits", user, "--protocol", "oip", "--model-name", "digits",
                       "--invalid-fraction", "0.2")  # fmt: skip
    summary = result["summary"]
    assert result["run"]["protocol"] == "oip"
    assert summary["requests"] > 0
    assert (summary["schema_success_rate"], summary["failures"]) == (1.0, 0)
    assert summary["expected_rejections"] > 0  # INVALID_ARGUMENT / error_message
    method = "ModelInfer" if user == "GrpcUser" else "ModelStreamInfer"
    assert method in done.stderr  # Locust's table names the RPC


def test_a_grpc_user_is_refused_in_one_line_for_a_model_not_ready(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "r.json"
    done = servelab_cli("locust", *SHORT, "--model", "digits", "GrpcUser", "--protocol", "oip",
                        "--model-name", "nope", "--out", str(out), cwd=tmp_path, env=_env(),
                        timeout=TIMEOUT_S)  # fmt: skip
    assert done.returncode == 2, done.stderr[-4000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("servelab:")]
    assert any("ModelReady failed: NOT_FOUND" in line or "is not ready" in line for line in lines)
    assert not out.exists()


def test_missing_tensors_are_refused_in_one_line_before_any_load(tmp_path: Path) -> None:
    with served(oip_app_listing_no_inputs("sk")) as url:
        line = _refused(tmp_path, url, "--protocol", "oip", "--model-name", "sk",
                        "--header", ":".join(API_KEY))  # fmt: skip
    assert "metadata lists no inputs: give them with --tensor NAME:DATATYPE:SHAPE" in line
