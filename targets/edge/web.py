"""``servelab edge bundle --wasm``: the edge model's WebAssembly module and a JS loader for a
browser, in one directory.

``edge-model.wasm``  the module ``--runtime wasm`` runs under wasmtime (the same bytes)
``edge-model.wat``   its text, for reading
``edge-model.mjs``   an ES module: ``await loadEdgeModel()`` fetches the ``.wasm`` beside it (or
                     takes its bytes), and ``model.predict(rows)`` quantises each row with the
                     baked-in ``--quant`` and answers one prediction per row, as the edge
                     runtime's local model does
``edge-model.json``  what was bundled: model, version, quantisation, width, the module's sha256

A page must load the ``.mjs`` over http(s): browsers refuse module scripts and ``fetch`` from
``file://``. Files are written atomically, the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from targets.edge.config import EdgeConfig
from targets.edge.quantize import parse_quant
from targets.edge.wasm import module_wat
from targets.edge.wasm_model import assemble, model_weights
from targets.errors import InputError
from targets.files import user_path, write_atomic
from targets.models import input_width
from targets.spec import load_model

STEM: Final = "edge-model"

LOADER: Final = """\
// servelab edge model in a browser: the WebAssembly module `servelab run --target edge
// --runtime wasm` runs under wasmtime, with the same quantisation (see edge-model.json).
//   import { loadEdgeModel } from "./edge-model.mjs";
//   const model = await loadEdgeModel();        // fetches edge-model.wasm beside this file
//   model.predict([[0.5, 1.5], [2.0]]);         // -> one number per row
export const MANIFEST = __MANIFEST__;

export async function loadEdgeModel(source = new URL("./edge-model.wasm", import.meta.url)) {
  const bytes = source instanceof ArrayBuffer || ArrayBuffer.isView(source)
    ? source
    : await (await fetch(source)).arrayBuffer();
  const { instance } = await WebAssembly.instantiate(bytes, {});
  return new EdgeModel(instance.exports);
}

export class EdgeModel {
  constructor(exports) {
    this.exports = exports;
    const features = exports.features();
    this.features = features < 0 ? null : features;  // null: rows of any width
  }

  // One prediction per row; `quantise: false` for rows already quantised.
  predict(rows, { quantise = true } = {}) {
    const predictions = [];
    for (let start = 0; start < rows.length; ) {
      const width = rows[start].length;  // the module takes one width per call
      let end = start + 1;
      while (end < rows.length && rows[end].length === width) end += 1;
      for (const value of this.#run(rows.slice(start, end), width, quantise)) {
        predictions.push(value);
      }
      start = end;
    }
    return predictions;
  }

  #run(rows, width, quantise) {
    const module = this.exports;
    const values = rows.length * width;
    const at = module.reserve(values, rows.length);
    if (at < 0) throw new RangeError(`the module cannot hold ${rows.length} rows of ${width}`);
    // Views after reserve(): growing memory detaches the previous buffer.
    const input = new Float64Array(module.memory.buffer, at, values);
    rows.forEach((row, index) => input.set(row, index * width));
    if (module.predict(rows.length, width, quantise ? 1 : 0) !== 0) {
      throw new RangeError(`rows of ${width} values: the model takes ${this.features}`);
    }
    return new Float64Array(module.memory.buffer, at + values * 8, rows.length);
  }
}
"""


@dataclass(frozen=True, slots=True)
class WebBundle:
    """The files of a browser bundle, by name, and its manifest."""

    files: dict[str, bytes]
    manifest: dict[str, Any]


def build_web_bundle(config: EdgeConfig) -> WebBundle:
    """The module (``config``'s model and ``--quant``), its text, loader and manifest."""
    if config.remote:
        raise InputError(
            "--remote goes with the zipapp: a --wasm bundle computes every answer in the browser"
        )
    quantizer = parse_quant(config.quant)
    model = load_model(config.model)
    wat = module_wat(model_weights(model), quantizer)
    wasm = assemble(wat)
    manifest = {
        "model": model.name,
        "model_version": model.version,
        "quantization": quantizer.spec,
        "features": input_width(model),
        "wasm": f"{STEM}.wasm",
        "wasm_sha256": hashlib.sha256(wasm).hexdigest(),
    }
    manifest_json = json.dumps(manifest, indent=2, sort_keys=True)
    loader = LOADER.replace("__MANIFEST__", json.dumps(manifest, sort_keys=True))
    return WebBundle(
        files={
            f"{STEM}.wasm": wasm,
            f"{STEM}.wat": wat.encode(),
            f"{STEM}.mjs": loader.encode(),
            f"{STEM}.json": (manifest_json + "\n").encode(),
        },
        manifest=manifest,
    )


def write_web_bundle(out: str | os.PathLike[str], config: EdgeConfig) -> WebBundle:
    """Write the bundle's files into directory ``out`` (created if missing)."""
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"--out {str(out)!r} is a file; with --wasm it names a directory")
    bundle = build_web_bundle(config)
    with user_path("write", "--out", out):
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in bundle.files.items():
            write_atomic(directory / name, data)
    return bundle
