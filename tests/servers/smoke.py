"""Smoke-test each third-party server that ``make servers`` built: one at a time, on loopback.

    .venv/bin/python -m tests.servers.smoke [--servers mlserver kserve bentoml] [--model PATH]
                                            [--rows 2] [--json OUT] [--keep DIR]

Each server is started with ``tests.servers.launch.start`` serving the digits model, sent a few
requests in each of its protocols, and stopped. Every answer is checked against the predictions
the same model gives locally (computed in the server's own environment, which holds the same
scikit-learn), and a sample of each answer is printed, with the ready time, the server's resident
memory and the Prometheus families that count requests, time them or show a queue.

gRPC uses servelab's Open Inference Protocol stubs (targets/rpc/inference_pb2*.py) where they
exist, else the ones MLServer's environment ships (tritonclient.grpc.service_pb2); the call runs
in a child process of that interpreter. Exit status 0 when every check passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.servers.launch import (
    ENVS_DIR,
    ROOT,
    RunningServer,
    env_dir_for,
    is_built,
    resolve_model_path,
    start,
)

SERVERS = ("mlserver", "kserve", "bentoml")
TIMEOUT_S = 10.0
SAMPLE_CHARS = 600
METRIC_WORDS = ("request", "latency", "duration", "queue", "batch", "inference")


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    sample: str = ""


@dataclass
class ServerReport:
    name: str
    ready_s: float = 0.0
    rss_mib: float = 0.0
    checks: list[Check] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    server: RunningServer
    client: httpx.Client
    rows: list[list[float]]
    expected: list[int]


DIGITS_ROWS = """
import json, sys
import joblib
from sklearn.datasets import load_digits
rows = load_digits().data[: int(sys.argv[2])]
labels = joblib.load(sys.argv[1]).predict(rows)
print(json.dumps({"rows": rows.tolist(), "expected": labels.tolist()}))
"""

TRAIN_DIGITS = """
import sys
import joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
features, labels = load_digits(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=2000, random_state=0).fit(features, labels), sys.argv[1])
"""

GRPC_INFER = """
import importlib, json, struct, sys
import grpc
pb2, pb2_grpc = (importlib.import_module(name) for name in sys.argv[1:3])
address, model, rows = sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
request = pb2.ModelInferRequest(model_name=model)
tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[len(rows), len(rows[0])])
tensor.contents.fp64_contents.extend(value for row in rows for value in row)
with grpc.insecure_channel(address) as channel:
    stub = pb2_grpc.GRPCInferenceServiceStub(channel)
    ready = stub.ModelReady(pb2.ModelReadyRequest(name=model), timeout=10).ready
    metadata = stub.ModelMetadata(pb2.ModelMetadataRequest(name=model), timeout=10)
    answer = stub.ModelInfer(request, timeout=10)
fields = {"INT64": "int64_contents", "INT32": "int_contents", "FP64": "fp64_contents",
          "FP32": "fp32_contents", "BOOL": "bool_contents"}
formats = {"INT64": "q", "INT32": "i", "FP64": "d", "FP32": "f", "BOOL": "?"}
outputs = []
for index, output in enumerate(answer.outputs):
    if answer.raw_output_contents:
        raw = answer.raw_output_contents[index]
        code = formats[output.datatype]
        data = list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(code), code), raw))
        where = "raw_output_contents"
    else:
        data = list(getattr(output.contents, fields[output.datatype]))
        where = "contents." + fields[output.datatype]
    outputs.append({"name": output.name, "datatype": output.datatype,
                    "shape": list(output.shape), "data": data, "in": where})
print(json.dumps({"ready": ready, "metadata_inputs": [i.name for i in metadata.inputs],
                  "outputs": outputs}))
"""


def _sample(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= SAMPLE_CHARS else text[:SAMPLE_CHARS] + "..."


def digits_rows(model_path: Path, count: int) -> tuple[list[list[float]], list[int]]:
    """The first ``count`` load_digits() rows and the model's own labels for them."""
    python = next(env_dir_for(n) / "bin" / "python" for n in SERVERS if is_built(n))
    argv = [str(python), "-c", DIGITS_ROWS, str(model_path), str(count)]
    answer = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    return answer["rows"], answer["expected"]


def export_model(directory: Path) -> Path:
    """servelab's digits model (targets.learned.export_digits) where it imports, else an
    equivalent LogisticRegression trained in a server environment."""
    try:
        from targets.learned import export_digits
    except ImportError:
        python = next(env_dir_for(n) / "bin" / "python" for n in SERVERS if is_built(n))
        path = directory / "digits.joblib"
        subprocess.run([str(python), "-c", TRAIN_DIGITS, str(path)], check=True)
        return path
    joblib_path, _onnx_path = export_digits(directory)
    return joblib_path


def _oip_predictions(answer: Any, rows: int) -> list[int] | str:
    """The labels in an OIP answer's outputs, or what is wrong with it."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not outputs:
        return "no outputs"
    output = outputs[0]
    shape, data = output.get("shape", []), output.get("data", [])
    size = 1
    for dim in shape:
        size *= dim
    if not shape or shape[0] != rows or len(data) != size:
        return f"output shape {shape} with {len(data)} values for {rows} rows"
    return [int(value) for value in data]


def check_oip_rest(case: Case) -> Check:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(case.rows), len(case.rows[0])],
                "datatype": "FP64",
                "data": [value for row in case.rows for value in row],
            }
        ]
    }
    answer = case.client.post(case.server.infer_url, json=body)
    if answer.status_code != 200:
        return Check("oip-rest-infer", False, f"HTTP {answer.status_code}", _sample(answer.text))
    got = _oip_predictions(answer.json(), len(case.rows))
    ok = got == case.expected
    detail = f"predictions {got}, expected {case.expected}"
    return Check("oip-rest-infer", ok, detail, _sample(answer.json()))


def check_oip_metadata(case: Case) -> Check:
    assert case.server.metadata_url is not None
    answer = case.client.get(case.server.metadata_url)
    if answer.status_code != 200:
        return Check("oip-metadata", False, f"HTTP {answer.status_code}", _sample(answer.text))
    metadata = answer.json()
    inputs = metadata.get("inputs") or []
    detail = f"lists {len(inputs)} inputs, {len(metadata.get('outputs') or [])} outputs"
    return Check("oip-metadata", True, detail, _sample(metadata))


def _grpc_stubs() -> tuple[Path, list[str], Path] | None:
    """(python, [pb2 module, pb2_grpc module], cwd) for the gRPC call, or None."""
    if (ROOT / "targets" / "rpc" / "inference_pb2_grpc.py").exists():
        return (
            Path(sys.executable),
            ["targets.rpc.inference_pb2", "targets.rpc.inference_pb2_grpc"],
            ROOT,
        )
    if is_built("mlserver"):
        python = env_dir_for("mlserver") / "bin" / "python"
        return python, ["tritonclient.grpc.service_pb2", "tritonclient.grpc.service_pb2_grpc"], ROOT
    return None


def check_oip_grpc(case: Case) -> Check:
    stubs = _grpc_stubs()
    address = case.server.grpc_address
    if stubs is None or address is None:
        return Check("oip-grpc-infer", None, "skipped: no OIP stubs (targets/rpc/inference_pb2*)")
    python, modules, cwd = stubs
    argv = [str(python), "-c", GRPC_INFER, *modules, address, case.server.model_name]
    argv.append(json.dumps(case.rows))
    ran = subprocess.run(argv, check=False, cwd=cwd, capture_output=True, text=True, timeout=60)
    if ran.returncode != 0:
        return Check("oip-grpc-infer", False, f"stubs {modules[0]}", _sample(ran.stderr[-2000:]))
    answer = json.loads(ran.stdout)
    got = _oip_predictions(answer, len(case.rows))
    ok = answer["ready"] is True and got == case.expected
    detail = f"stubs {modules[0]}; ModelReady {answer['ready']}; predictions {got}"
    return Check("oip-grpc-infer", ok, detail, _sample(answer))


def check_kserve_v1(case: Case) -> Check:
    url = f"{case.server.base_url}/v1/models/{case.server.model_name}:predict"
    answer = case.client.post(url, json={"instances": case.rows})
    if answer.status_code != 200:
        return Check("kserve-v1-predict", False, f"HTTP {answer.status_code}", answer.text)
    got = answer.json().get("predictions")
    ok = got == case.expected
    return Check("kserve-v1-predict", ok, f"predictions {got}", _sample(answer.json()))


def check_bentoml_predict(case: Case) -> Check:
    answer = case.client.post(case.server.infer_url, json={"instances": case.rows})
    if answer.status_code != 200:
        return Check("bentoml-predict", False, f"HTTP {answer.status_code}", answer.text)
    got = answer.json()
    ok = got == case.expected
    return Check("bentoml-predict", ok, f"predictions {got}", _sample(got))


def _resolve(document: Any, schema: Any) -> Any:
    while isinstance(schema, dict) and "$ref" in schema:
        node = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def check_bentoml_docs(case: Case) -> Check:
    answer = case.client.get(f"{case.server.base_url}/docs.json")
    if answer.status_code != 200:
        return Check("bentoml-docs", False, f"HTTP {answer.status_code}", answer.text)
    document = answer.json()
    try:
        operation = document["paths"]["/predict"]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
    except KeyError as exc:
        return Check("bentoml-docs", False, f"no /predict request schema ({exc})")
    schema = _resolve(document, schema)
    fields = sorted(schema.get("properties", {}))
    ok = fields == ["instances"]
    return Check("bentoml-docs", ok, f"request fields {fields}", _sample(schema))


def metric_families(text: str) -> dict[str, dict[str, float | str]]:
    """Prometheus text: family -> {"type", and each sample name's value summed over labels}."""
    families: dict[str, dict[str, float | str]] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            families[name] = {"type": kind}
        elif line and not line.startswith("#"):
            sample, _, value = line.rpartition(" ")
            name = sample.split("{", 1)[0]
            family = next((f for f in families if name == f or name.startswith(f + "_")), None)
            if family is not None and not name.endswith(("_bucket", "_created")):
                previous = families[family].get(name, 0.0)
                assert isinstance(previous, float)
                families[family][name] = previous + float(value)
    return families


def check_metrics(case: Case) -> Check:
    answer = case.client.get(case.server.metrics_url)
    if answer.status_code != 200:
        return Check("metrics", False, f"HTTP {answer.status_code}", answer.text)
    families = metric_families(answer.text)
    wanted = {
        name: values
        for name, values in families.items()
        if any(word in name.lower() for word in METRIC_WORDS)
    }
    detail = f"{case.server.metrics_url}: {len(families)} families, {len(wanted)} on requests"
    return Check("metrics", bool(wanted), detail, json.dumps(wanted, indent=1))


CHECKS: dict[str, list[Callable[[Case], Check]]] = {
    "mlserver": [check_oip_rest, check_oip_metadata, check_oip_grpc, check_metrics],
    "kserve": [check_kserve_v1, check_oip_rest, check_oip_metadata, check_oip_grpc, check_metrics],
    "bentoml": [check_bentoml_predict, check_bentoml_docs, check_metrics],
}


def smoke(name: str, model_path: Path, rows: int, keep: Path | None) -> ServerReport:
    report = ServerReport(name)
    features, expected = digits_rows(model_path, rows)
    workdir = None if keep is None else keep / name
    with (
        start(name, model_path, workdir=workdir) as server,
        httpx.Client(timeout=TIMEOUT_S, trust_env=False) as client,
    ):
        report.ready_s = server.ready_s
        case = Case(server, client, features, expected)
        for check in CHECKS[name]:
            try:
                report.checks.append(check(case))
            except (httpx.HTTPError, ValueError, KeyError, subprocess.SubprocessError) as exc:
                report.checks.append(Check(check.__name__, False, f"{type(exc).__name__}: {exc}"))
        report.rss_mib = round(server.rss_bytes() / 2**20, 1)
    return report


def _print(report: ServerReport, verbose: bool) -> None:
    print(f"== {report.name}: ready in {report.ready_s} s, {report.rss_mib} MiB resident")
    for check in report.checks:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[check.ok]
        print(f"  {mark} {check.name}: {check.detail}")
        if check.sample and (verbose or check.ok is False):
            print("       " + check.sample.replace("\n", "\n       "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", nargs="+", choices=SERVERS, help="default: every one built")
    parser.add_argument("--model", type=Path, help="joblib file (default: the digits model)")
    parser.add_argument("--rows", type=int, default=2, help="rows per request (default 2)")
    parser.add_argument("--json", type=Path, help="write the reports here")
    parser.add_argument("--keep", type=Path, help="keep each server's config and log here")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    names = args.servers or [name for name in SERVERS if is_built(name)]
    missing = [name for name in names if not is_built(name)]
    if not names or missing:
        parser.error(f"not built in {ENVS_DIR}: {missing or list(SERVERS)}; run `make servers`")
    if args.rows < 1:
        parser.error(f"--rows: must be at least 1, got {args.rows}")
    with tempfile.TemporaryDirectory(prefix="servelab-smoke-") as scratch:
        model_path = resolve_model_path(args.model or export_model(Path(scratch)))
        reports = []
        for name in names:  # one server at a time: two cores
            reports.append(smoke(name, model_path, args.rows, args.keep))
            _print(reports[-1], args.verbose)
    if args.json:
        args.json.write_text(json.dumps([asdict(report) for report in reports], indent=2) + "\n")
    failed = [c.name for r in reports for c in r.checks if c.ok is False]
    print("smoke: " + (f"FAILED {failed}" if failed else "every check passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
