"""``--runtime wasm``: the edge model as a WebAssembly module (WAT generated from its weights,
assembled and run with wasmtime), and ``servelab edge bundle --wasm`` loaded in headless
Chromium, whose predictions must equal wasmtime's to the bit."""

from __future__ import annotations

import json
import os
import random
import struct
import threading
from collections.abc import Iterator, Sequence
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from targets.edge.config import EdgeConfig
from targets.edge.quantize import parse_quant
from targets.edge.runtime import EdgeRuntime
from targets.edge.wasm import module_wat
from targets.edge.wasm_model import WasmModel, WasmModule, model_weights
from targets.edge.web import build_web_bundle, write_web_bundle
from targets.errors import InputError
from targets.spec import load_model
from tests.conftest import ServelabCli
from tests.targets.chromium import DONE_ID, chromium_path, page_marker

ROWS = 1_000
TOLERANCE = 1e-9
# The two bundles the browser loads: the reference model on rows of mixed widths, and digits.
CASES = {"reference": ("reference", "int8:8"), "digits": ("digits", "int8:16")}


def seeded_rows(model: str, count: int = ROWS, seed: int = 16) -> list[list[float]]:
    """Seeded rows: digits' 64 pixels in 0..16, or 0..12 values in -12..12 (int8:8 saturates)."""
    rng = random.Random(seed)
    if model == "digits":
        return [[rng.uniform(0.0, 16.0) for _ in range(64)] for _ in range(count)]
    return [[rng.uniform(-12.0, 12.0) for _ in range(rng.randint(0, 12))] for _ in range(count)]


def hex_of(values: Sequence[float]) -> list[str]:
    """Each double's bit pattern, as the page writes it (big-endian hex)."""
    return [struct.pack(">d", value).hex() for value in values]


def python_runtime(model: str, quant: str, rows: Sequence[Sequence[float]]) -> list[float]:
    """What the Python edge runtime answers, one v1 request per row, no cache."""
    config = EdgeConfig(model=model, quant=quant, cache_size=0, drift_every=0)
    with EdgeRuntime.from_config(config) as runtime:
        return [runtime.handle({"instances": list(row)})["predictions"][0] for row in rows]


@pytest.mark.parametrize("quant", ["int8:8", "fixed:3"])
def test_the_module_quantises_as_python_does_and_predicts_within_tolerance(quant: str) -> None:
    quantizer = parse_quant(quant)
    rows = seeded_rows("reference", 300)
    model = WasmModel(load_model("reference"), quantizer)
    quantised = [quantizer.quantize_row(row) for row in rows]
    inside = model.module.predict(rows, quantise=True)  # the module quantises
    assert hex_of(inside) == hex_of(model.predict(quantised))  # Python quantised: same bits
    expected = load_model("reference").predict(quantised)
    assert max(abs(a - b) for a, b in zip(inside, expected, strict=True)) <= TOLERANCE


def test_the_module_rounds_to_4_places_as_python_does_on_ties_and_near_them() -> None:
    """One-value rows: the mean is the value, so only ``round(v * 0.8 + 0.1, 4)`` can differ.
    Dyadic values land on exact decimal ties, where ``nearest(v * 1e4)`` alone goes astray."""
    rng = random.Random(4)
    values = [k / 2 ** rng.randint(0, 12) for k in range(-4000, 4000)]
    values += [(k + 0.5) / 1e4 for k in range(-2000, 2000)] + [
        rng.uniform(-99, 99) for _ in range(4000)
    ]
    rows = [[value] for value in values]
    module = WasmModel(load_model("reference"), parse_quant("fixed:52")).module
    assert hex_of(module.predict(rows, quantise=False)) == hex_of(
        load_model("reference").predict(rows)
    )


def test_digits_module_carries_the_weights_and_predicts_the_estimators_labels() -> None:
    digits = load_model("digits")
    weights = model_weights(digits)
    assert weights is not None
    assert (weights.classes, weights.features) == (10, 64)
    estimator = digits.estimator  # type: ignore[attr-defined]
    wat = module_wat(weights, parse_quant("int8:16"))
    first = struct.pack("<d", float(estimator.coef_[0][0])).hex()
    assert "(data (i32.const 0)" in wat
    assert first in wat.replace("\\", "")
    module = WasmModel(digits, parse_quant("int8:16")).module
    rows = seeded_rows("digits", 200)
    assert module.predict(rows, quantise=False) == digits.predict(rows)
    scores = np.asarray(module.decision(rows))
    assert np.abs(scores - estimator.decision_function(np.asarray(rows))).max() < 1e-12
    with pytest.raises(ValueError, match="width 3"):
        module.predict([[1.0, 2.0, 3.0]], quantise=False)


def test_the_wasm_runtime_answers_as_the_python_runtime() -> None:
    rows = [[1.0, 2.0], [1.0, 2.0], [0.25, -3.5, 7.0], []]
    answers = {}
    for runtime in ("python", "wasm"):
        config = EdgeConfig(quant="fixed:4", runtime=runtime)
        with EdgeRuntime.from_config(config) as edge:
            answers[runtime] = [edge.handle({"instances": row}) for row in rows]
            assert edge.stats()["model_runtime"] == runtime
    for python, wasm in zip(answers["python"], answers["wasm"], strict=True):
        assert wasm["predictions"] == pytest.approx(python["predictions"], abs=TOLERANCE)
        for key in ("source", "model_name", "model_version", "quantization"):
            assert wasm["metadata"][key] == python["metadata"][key]
        assert wasm["metadata"]["quantization_drift"] == pytest.approx(
            python["metadata"]["quantization_drift"], abs=TOLERANCE
        )


def test_wasm_runtime_refuses_a_model_it_cannot_compute() -> None:
    with pytest.raises(InputError, match="--runtime wasm computes the 'reference' and 'digits'"):
        EdgeRuntime.from_config(EdgeConfig(model="synthetic:fixed:1ms", runtime="wasm"))
    with pytest.raises(InputError, match="--runtime must be one of python, wasm"):
        EdgeConfig(runtime="java")
    with pytest.raises(InputError, match="--remote goes with the zipapp"):
        build_web_bundle(EdgeConfig(remote="http://127.0.0.1:1"))


def test_servelab_edge_bundle_wasm_writes_module_loader_and_manifest(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    out = tmp_path / "web"
    done = servelab_cli("edge", "bundle", "--wasm", "--model", "digits", "--out", str(out))
    assert done.returncode == 0, done.stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == ["edge-model.json", "edge-model.mjs", "edge-model.wasm", "edge-model.wat"]
    manifest = json.loads((out / "edge-model.json").read_text())
    assert manifest["model"] == "digits"
    assert manifest["features"] == 64
    wasm = (out / "edge-model.wasm").read_bytes()
    assert wasm == WasmModel(load_model("digits"), parse_quant("int8:8")).wasm
    assert json.dumps(manifest, sort_keys=True) in (out / "edge-model.mjs").read_text()
    for bad, says in (
        (["--model", "synthetic:fixed:1ms"], "--runtime wasm computes"),
        (["--remote", "http://127.0.0.1:1"], "--remote goes with the zipapp"),
        (["--out", str(out / "edge-model.json")], "is a file"),
    ):
        refused = servelab_cli("edge", "bundle", "--wasm", "--out", str(tmp_path / "x"), *bad)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr
        assert refused.stderr.count("\n") == 1


def test_servelab_edge_run_runtime_wasm(servelab_cli: ServelabCli) -> None:
    ran = servelab_cli(
        "edge", "run", "--runtime", "wasm", "--quant", "fixed:8",
        input='{"instances": [0.5, 1.25]}\n{"instances": [0.5, 1.25]}\n',
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    answers = [json.loads(line) for line in ran.stdout.splitlines()]
    assert [a["metadata"]["source"] for a in answers] == ["local", "cache"]
    assert answers[0]["predictions"] == python_runtime("reference", "fixed:8", [[0.5, 1.25]])
    assert '"model_runtime": "wasm"' in ran.stderr


PAGE = f"""<!doctype html>
<html><body><script type="module">
const view = new DataView(new ArrayBuffer(8));
const hex = value => {{ view.setFloat64(0, value); return view.getBigUint64(0)
  .toString(16).padStart(16, "0"); }};
const marker = text => {{ const done = document.createElement("pre");
  done.id = "{DONE_ID}"; done.textContent = text; document.body.append(done); }};
try {{
  const results = {{}};
  for (const name of {json.dumps(sorted(CASES))}) {{
    const {{ loadEdgeModel }} = await import(`./${{name}}/edge-model.mjs`);
    const rows = await (await fetch(`./${{name}}/rows.json`)).json();
    results[name] = (await loadEdgeModel()).predict(rows).map(hex);
  }}
  marker(JSON.stringify(results));
}} catch (error) {{
  marker(JSON.stringify({{ error: String(error) }}));
}}
</script></body></html>
"""


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {".mjs": "text/javascript", ".wasm": "application/wasm"}  # noqa: RUF012

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the page, not the access log."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``tmp_path`` over http on a free loopback port (the server is listening once bound)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _chromium() -> str:
    """Chromium's path. Missing: a skip here, a failure under CI, where ``.ci/run`` installs
    it (a CI run without the browser would otherwise pass without checking the browser)."""
    found = chromium_path()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed under CI (.ci/run installs it with apt-get)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return found


def test_chromium_predicts_what_wasmtime_does_bit_for_bit(tmp_path: Path, served: str) -> None:
    browser = _chromium()
    expected: dict[str, list[float]] = {}
    for name, (model, quant) in CASES.items():
        config = EdgeConfig(model=model, quant=quant)
        bundle = write_web_bundle(tmp_path / name, config)
        rows = seeded_rows(model)
        (tmp_path / name / "rows.json").write_text(json.dumps(rows))
        wasm = WasmModule(bundle.files["edge-model.wasm"])
        expected[name] = wasm.predict(rows, quantise=True)
        python = python_runtime(model, quant, rows)
        difference = max(abs(a - b) for a, b in zip(expected[name], python, strict=True))
        assert difference <= TOLERANCE, (name, difference)
    (tmp_path / "index.html").write_text(PAGE)
    results = json.loads(page_marker(browser, f"{served}/index.html"))
    assert "error" not in results, results
    for name, predictions in expected.items():
        assert results[name] == hex_of(predictions), name
        assert len(results[name]) == ROWS
