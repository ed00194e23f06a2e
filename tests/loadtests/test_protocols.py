"""--protocol: the wire contracts, unit by unit and end to end against FastAPI services that
speak them (servelab's own target for the Open Inference Protocol lives in test_oip_*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtests.cli.app import main
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.errors import ConfigError, LoadOptionError
from loadtests.protocols.base import parse_headers
from loadtests.protocols.bentoml import BentoML
from loadtests.protocols.kserve_v1 import KServeV1
from loadtests.protocols.oip import OipHttp
from loadtests.protocols.oip_grpc import OipGrpc
from loadtests.protocols.template import Template
from loadtests.protocols.tensors import TensorSpec, outputs_problem
from tests.loadtests.foreign_apps import kserve_v1_app, scoring_app, served

PAYLOADS = PayloadGenerator(
    PayloadSpec(min_instances=4, max_instances=4, rows_per_request=3, v2_share_start=1.0), 7
)
TEMPLATE = """
path = "/score"
ready_path = "/healthz"
[body]
features = "{{rows}}"
request_id = "{{request_id}}"
[response]
predictions = "results[*].score"
[response.schema]
type = "object"
required = ["results", "id"]
"""


def _v2_payload() -> Payload:
    payload = PAYLOADS.payload(0)
    assert payload.api == "v2"
    assert len(payload.rows) == 3
    return payload


def test_tensor_specs_parse_and_refuse_in_one_line() -> None:
    spec = TensorSpec.parse("input-0:fp64:-1,64")
    assert (spec.name, spec.datatype, spec.shape) == ("input-0", "FP64", (-1, 64))
    assert spec.features == 64
    assert TensorSpec.parse("x:INT32:-1,-1").features is None
    for bad in ("input-0", "x:FP64", "x:FLOAT:-1,4", "x:FP64:-1,0", "x:FP64:a,b"):
        with pytest.raises(LoadOptionError, match="--tensor"):
            TensorSpec.parse(bad)


def test_a_tensor_carries_the_rows_in_its_datatype() -> None:
    rows = [[0.4, -1.6], [2.5, 3.0]]
    assert TensorSpec.parse("x:FP64:-1,2").tensor(rows) == {
        "name": "x", "datatype": "FP64", "shape": [2, 2], "data": [0.4, -1.6, 2.5, 3.0]
    }  # fmt: skip
    assert TensorSpec.parse("x:INT64:-1,2").tensor(rows)["data"] == [0, -2, 2, 3]
    assert TensorSpec.parse("x:BOOL:-1,2").tensor(rows)["data"] == [True, False, True, True]
    with pytest.raises(LoadOptionError, match="set --instances 3"):
        TensorSpec.parse("x:FP64:-1,3").tensor(rows)


def test_an_oip_answer_needs_named_typed_outputs_of_the_rows_sent() -> None:
    good = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [2, 1], "data": [1.0, 2.0]}]}
    assert outputs_problem(good, 2) is None
    nested = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [2, 1], "data": [[1], [2]]}]}
    assert outputs_problem(nested, 2) is None
    assert outputs_problem(good, 3) is not None  # shape[0] is not the rows sent
    short = {"outputs": [{"name": "p", "datatype": "FP64", "shape": [2, 1], "data": [1.0]}]}
    assert outputs_problem(short, 2) is not None
    assert outputs_problem({"outputs": []}, 2) is not None
    assert outputs_problem({"outputs": [{"shape": [2], "data": [1, 2]}]}, 2) is not None


def test_oip_takes_its_inputs_from_the_metadata_or_says_what_to_give() -> None:
    contract = OipHttp(model_name="digits")
    contract.describe({"inputs": [{"name": "in", "datatype": "FP32", "shape": [-1, 4]}]})
    assert contract.row_width() == 4
    payload = _v2_payload()
    request = contract.request(payload)
    body = json.loads(request.body)
    assert request.path == "/v2/models/digits/infer"
    assert body["inputs"][0]["shape"] == [3, 4]
    assert body["inputs"][0]["datatype"] == "FP32"
    with pytest.raises(LoadOptionError, match="lists no inputs: give them with --tensor"):
        OipHttp(model_name="sk").describe({"name": "sk", "inputs": []})
    with pytest.raises(LoadOptionError, match="--model-name"):
        OipHttp()


def test_invalid_payloads_become_requests_a_server_refuses() -> None:
    generator = PayloadGenerator(PayloadSpec(invalid_fraction=0.5, distinct=64), 3)
    pool = [generator.payload(i) for i in range(64)]
    invalid = [next(p for p in pool if not p.valid and p.slot % 3 == kind) for kind in range(3)]
    contract = OipHttp(model_name="m", tensors=(TensorSpec.parse("x:FP64:-1,8"),))
    kinds = {json.dumps(json.loads(contract.request(p).body), sort_keys=True) for p in invalid}
    assert len(kinds) == 3  # wrong shape, unknown datatype, no input
    v1 = KServeV1(model_name="m")
    for payload in invalid:
        assert "instances" not in json.loads(v1.request(payload).body) or payload.slot % 3 != 2
        assert v1.judge(payload, 400, b"{}").outcome == Outcome.EXPECTED_REJECTION
        assert v1.judge(payload, 200, b"{}").error_class == "accepted_invalid"


def test_bentoml_reads_its_request_field_from_the_openapi_document() -> None:
    contract = BentoML(api="classify")
    contract.describe({
        "paths": {"/classify": {"post": {"requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Classify"}}}}}}},
        "components": {"schemas": {"Classify": {"properties": {"rows": {"type": "array"}}}}},
    })  # fmt: skip
    payload = _v2_payload()
    request = contract.request(payload)
    assert request.path == "/classify"
    assert list(json.loads(request.body)) == ["rows"]
    answer = json.dumps([1.0, 2.0, 3.0]).encode()
    assert contract.judge(payload, 200, answer).outcome == Outcome.OK
    assert contract.judge(payload, 200, b"[1.0]").error_class == "schema"


def test_headers_and_templates_refuse_bad_input_in_one_line(tmp_path: Path) -> None:
    assert parse_headers(["x-api-key: s3cret", "A:b:c"]) == (("x-api-key", "s3cret"), ("A", "b:c"))
    with pytest.raises(LoadOptionError, match="NAME:VALUE"):
        parse_headers(["nocolon"])
    bad = tmp_path / "t.toml"
    for text, words in (
        ("path = '/x'", "response.predictions"),
        ("path = 'x'\n[response]\npredictions = 'a'", "paths start with '/'"),
        ("[response]\npredictions = 'a[?'", "response.predictions"),
        ("verb = 1\n[response]\npredictions = 'a'", "unknown key"),
        ("[response]\npredictions = 'a'\nschema = {type = 'nope'}", "response.schema"),
    ):
        bad.write_text(text)
        with pytest.raises(ConfigError, match=words):
            Template.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        Template.load(tmp_path / "missing.toml")


def _run(tmp_path: Path, url: str, *args: str) -> dict[str, object]:
    out = tmp_path / "r.json"
    code = main(["run", "--target", "rest", "--url", url, "--requests", "300", "--concurrency",
                 "4", "--no-progress", "--out", str(out), *args])  # fmt: skip
    result: dict[str, object] = json.loads(out.read_text())
    result["exit_code"] = code
    return result


@pytest.mark.parametrize("client", ["fast", "aiohttp"])
def test_a_users_own_fastapi_contract_runs_from_a_template(tmp_path: Path, client: str) -> None:
    template = tmp_path / "score.toml"
    template.write_text(TEMPLATE)
    with served(scoring_app()) as url:
        result = _run(tmp_path, url, "--protocol", "template", "--request-template",
                      str(template), "--rows-per-request", "3", "--api", "v2",
                      "--invalid-fraction", "0.2", "--client", client)  # fmt: skip
    summary = result["summary"]
    assert result["exit_code"] == 0, result["verdict"]
    assert summary["schema_success_rate"] == 1.0  # type: ignore[index]
    assert summary["failures"] == 0  # type: ignore[index]
    assert 0 < summary["expected_rejections"] < 300  # type: ignore[index]  # the 422s


def test_kserve_v1_contract_end_to_end_and_a_wrong_model_name_is_exit_2(tmp_path: Path) -> None:
    with served(kserve_v1_app("digits")) as url:
        result = _run(tmp_path, url, "--protocol", "kserve-v1", "--model-name", "digits")
        assert result["exit_code"] == 0, result["verdict"]
        assert result["summary"]["schema_success_rate"] == 1.0  # type: ignore[index]
        code = main(["run", "--target", "rest", "--url", url, "--protocol", "kserve-v1",
                     "--model-name", "nope", "--requests", "10", "--out",
                     str(tmp_path / "x.json")])  # fmt: skip
    assert code == 2
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--target", "grpc", "--protocol", "kserve-v1"], "goes with --target rest"),
        (["--target", "inprocess", "--protocol", "oip"], "goes with --target"),
        (["--target", "grpc-stream", "--protocol", "kserve-v1"], "goes with --target rest"),
        (["--target", "grpc", "--protocol", "oip"], "--model-name"),
        (["--target", "rest", "--protocol", "oip"], "--model-name"),
        (["--target", "rest", "--protocol", "template"], "--request-template"),
        (["--target", "rest", "--url", "http://127.0.0.1:9", "--insecure"], "https://"),
        (["--target", "rest", "--header", "broken"], "NAME:VALUE"),
    ],
)
def test_protocol_options_that_cannot_work_are_one_line_exit_2(
    args: list[str], words: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["run", *args, "--requests", "5", "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert words in err, err


def test_oip_against_servelabs_own_target_reads_the_metadata_and_counts_rejections(
    tmp_path: Path,
) -> None:
    out = tmp_path / "oip.json"
    code = main(["run", "--target", "rest", "--protocol", "oip", "--model-name", "digits",
                 "--model", "digits", "--requests", "400", "--invalid-fraction", "0.2",
                 "--no-progress", "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert code == 0, result["verdict"]
    summary = result["summary"]
    assert summary["schema_success_rate"] == 1.0
    assert summary["failures"] == 0
    assert summary["expected_rejections"] > 0  # wrong shape, unknown datatype, no input: 400s
    assert summary["successes"] + summary["expected_rejections"] == 400


@pytest.mark.parametrize(
    ("target", "raw"),
    [("grpc", False), ("grpc", True), ("grpc-stream", False)],
    ids=["unary-typed", "unary-raw", "ModelStreamInfer"],
)
def test_oip_over_grpc_against_servelabs_own_target(tmp_path: Path, target: str, raw: bool) -> None:
    out = tmp_path / "grpc-oip.json"
    raw_option = ["--raw-tensors"] if raw else []
    code = main(["run", "--target", target, "--protocol", "oip", "--model-name", "digits",
                 "--model", "digits", "--requests", "300", "--invalid-fraction", "0.2",
                 "--no-progress", "--out", str(out), *raw_option])  # fmt: skip
    result = json.loads(out.read_text())
    assert code == 0, result["verdict"]
    summary = result["summary"]
    assert summary["schema_success_rate"] == 1.0
    assert summary["failures"] == 0
    assert summary["expected_rejections"] > 0  # INVALID_ARGUMENT, or error_message in place
    assert result["run"]["transport"] == target


def test_the_grpc_contract_checks_outputs_as_the_rest_one_does() -> None:
    from targets.rpc import inference_pb2 as pb

    contract = OipGrpc(model_name="m", tensors=(TensorSpec.parse("x:FP64:-1,4"),))
    payload = _v2_payload()  # 3 rows
    request = pb.ModelInferRequest.FromString(contract.request_bytes(payload))
    assert list(request.inputs[0].shape) == [3, 4]
    assert len(request.inputs[0].contents.fp64_contents) == 12

    def answer(shape: list[int], values: int, raw: bool = False) -> bytes:
        response = pb.ModelInferResponse(model_name="m")
        output = response.outputs.add(name="predict", datatype="INT64")
        output.shape.extend(shape)
        if raw:
            response.raw_output_contents.append(b"\0" * 8 * values)
        else:
            output.contents.int64_contents.extend([1] * values)
        return bytes(response.SerializeToString())

    assert contract.judge(payload, answer([3, 1], 3)).outcome == Outcome.OK
    assert contract.judge(payload, answer([3], 3, raw=True)).outcome == Outcome.OK
    assert contract.judge(payload, answer([2, 1], 2)).error_class == "schema"
    assert contract.judge(payload, answer([3, 1], 2)).error_class == "schema"
    assert contract.judge(payload, b"\xff\xff").error_class == "schema"


def test_rows_a_server_cannot_take_get_a_hint_not_just_500s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with served(kserve_v1_app("digits", width=64)) as url:
        result = _run(tmp_path, url, "--protocol", "kserve-v1", "--model-name", "digits")
        err = capsys.readouterr().err
        assert result["exit_code"] == 1  # the default gate: nothing succeeded
        assert result["errors"] == {"http_500": 300}
        assert "do the rows fit its model?" in err
        fixed = _run(tmp_path, url, "--protocol", "kserve-v1", "--model-name", "digits",
                     "--instances", "64")  # fmt: skip
    assert fixed["exit_code"] == 0
    assert "do the rows fit" not in capsys.readouterr().err
