"""``--runtime wasm``: the edge model computed by its WebAssembly module, run with wasmtime.

``model_weights`` reads what ``targets.edge.wasm`` bakes into a module from a loaded model (the
reference model has none; ``digits``' logistic regression gives its coefficients), ``assemble``
turns the module's text into bytes with ``wasmtime.wat2wasm``, and ``WasmModel`` is a ``Model``
whose predictions the module computes. ``wasmtime`` (and, for ``digits``, numpy) is imported
only here and only when a wasm runtime is built, so the stdlib edge runtime never needs it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

from targets.edge.quantize import Quantizer
from targets.edge.wasm import STATUS_OK, LinearWeights, ModelWeights, module_wat
from targets.errors import InputError
from targets.models import Model, ReferenceModel, Rows, input_width

WASM_MODELS: Final = "'reference' and 'digits'"


def model_weights(model: Model) -> ModelWeights:
    """The weights a module needs for ``model``; ``InputError`` for a model it cannot compute."""
    if isinstance(model, ReferenceModel):
        return None
    estimator: Any = getattr(model, "estimator", None)  # digits: a fitted LogisticRegression
    if model.name == "digits" and hasattr(estimator, "coef_"):
        return LinearWeights(
            coef=tuple(tuple(float(v) for v in row) for row in estimator.coef_),
            intercept=tuple(float(v) for v in estimator.intercept_),
            labels=tuple(float(v) for v in estimator.classes_),
        )
    raise InputError(
        f"--runtime wasm computes the {WASM_MODELS} models, not --model {model.name!r}"
    )


def assemble(wat: str) -> bytes:
    """The module's bytes (``wasmtime.wat2wasm``); ``InputError`` when wasmtime is missing."""
    try:
        import wasmtime
    except ImportError as exc:
        raise InputError(
            "--runtime wasm needs the wasmtime package (pip install wasmtime)"
        ) from exc
    return bytes(wasmtime.wat2wasm(wat))


def module_bytes(model: Model, quantizer: Quantizer) -> bytes:
    """The assembled module for ``model`` with ``quantizer`` baked in."""
    return assemble(module_wat(model_weights(model), quantizer))


class WasmModule:
    """One instance of an edge module under wasmtime, and calls into its ABI (``wasm.py``)."""

    def __init__(self, wasm: bytes) -> None:
        import wasmtime

        self._store = wasmtime.Store(wasmtime.Engine())
        instance = wasmtime.Instance(self._store, wasmtime.Module(self._store.engine, wasm), [])
        exports = instance.exports(self._store)
        self._memory: wasmtime.Memory = exports["memory"]  # type: ignore[assignment]
        self._funcs: dict[str, Any] = {
            name: exports[name]
            for name in ("reserve", "predict", "decision", "classes", "features")
            if name in exports
        }
        self._heap: int = self._call("reserve", 0, 0)
        self._room = 0
        self.features: int | None = self._call("features")
        if self.features is not None and self.features < 0:
            self.features = None

    def _call(self, name: str, *args: int) -> Any:
        return self._funcs[name](self._store, *args)

    def _run(self, name: str, rows: Sequence[Sequence[float]], width: int, per_row: int,
             *flags: int) -> list[float]:  # fmt: skip
        values = [value for row in rows for value in row]
        outputs = len(rows) * per_row
        ptr = self._reserve(len(values) + outputs)
        self._memory.write(self._store, struct.pack(f"<{len(values)}d", *values), ptr)
        status = self._call(name, len(rows), width, *flags)
        if status != STATUS_OK:
            raise ValueError(f"the module refused rows of width {width} (status {status})")
        start = ptr + 8 * len(values)
        return list(
            struct.unpack(
                f"<{outputs}d", self._memory.read(self._store, start, start + 8 * outputs)
            )
        )

    def _reserve(self, count: int) -> int:
        """The input address, with room for ``count`` f64 after it; a call into the module
        (tens of microseconds from Python) only when the room must grow."""
        if count > self._room:
            self._heap = self._call("reserve", count, 0)
            if self._heap < 0:
                raise MemoryError(f"the module cannot hold {count} values")
            self._room = count
        return self._heap

    def predict(self, rows: Rows, *, quantise: bool) -> list[float]:
        """One prediction per row; ``quantise``: the module quantises them first. Rows of
        different widths go in runs of one width (the ABI takes a width per call)."""
        predictions: list[float] = []
        start = 0
        while start < len(rows):
            width = len(rows[start])
            end = start + 1
            while end < len(rows) and len(rows[end]) == width:
                end += 1
            predictions += self._run("predict", rows[start:end], width, 1, int(quantise))
            start = end
        return predictions

    def decision(self, rows: Rows) -> list[list[float]]:
        """A linear module's scores, one list per row (raises ``KeyError`` for reference)."""
        if not rows:
            return []
        width = len(rows[0])
        classes: int = self._call("classes")
        flat = self._run("decision", rows, width, classes)
        return [flat[i * classes : (i + 1) * classes] for i in range(len(rows))]


class WasmModel:
    """A ``Model`` computed by its module: the same name, version and width as ``source``,
    predictions from ``predict(..., quantise=0)`` (the runtime quantises before its model)."""

    def __init__(self, source: Model, quantizer: Quantizer) -> None:
        self.source = source
        self.wasm = module_bytes(source, quantizer)
        self.module = WasmModule(self.wasm)
        self.features: int | None = input_width(source)
        self._name = source.name
        self._version = source.version

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    def predict(self, rows: Rows) -> list[float]:
        return self.module.predict(rows, quantise=False)

    async def predict_async(self, rows: Rows) -> list[float]:
        return self.predict(rows)
