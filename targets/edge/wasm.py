"""The edge model as a WebAssembly module, written in the WebAssembly text format (WAT). Stdlib.

``module_wat(weights, quantizer)`` returns the module's text; ``wasmtime.wat2wasm`` assembles it
(``targets.edge.wasm_model``), and the same bytes run under wasmtime and in a browser
(``targets.edge.web``). Two models: ``reference`` (the mean of a row, ``* 0.8 + 0.1``, rounded
to 4 places) and ``linear`` (a multinomial linear classifier: the class of the largest
``row . coef[k] + intercept[k]``, which is what ``digits``' logistic regression predicts).
A linear model's weights are f64 little-endian in a data segment at address 0:
``coef`` (classes x features), then ``intercept`` (classes), then the class labels (classes).

The ABI, all in f64 on linear memory (one page = 64 KiB, grown on demand):

``reserve(values, outputs) -> ptr``   room for ``values`` inputs then ``outputs`` results at
                                      ``ptr`` (the first free address after the weights); -1 when
                                      memory cannot grow that far
``predict(rows, width, quantise) -> status``  predictions for ``rows`` rows of ``width`` values
                                      at ``ptr``, written after them; ``quantise`` 1: quantise
                                      each value first (the baked-in ``--quant``), as the Python
                                      runtime does before its model; 0: the rows are already
                                      quantised. Status 0, or 1 for a width the model refuses
``decision(rows, width) -> status``   (linear only) ``rows x classes`` scores, unquantised rows
``classes() -> i32``                  (linear only) the number of classes
``features() -> i32``                 the width the model takes, -1 for any

Where the module rounds unlike Python: sums run left to right in f64 (Python's reference model
uses ``math.fsum``, exact; scikit-learn's dot is BLAS's order). ``round(v, 4)`` is Python's:
the exact ``v * 1e4`` rounded halves to even (``$round_exact``), divided by 1e4. ``f64.nearest``
rounds halves to even, as Python's ``round`` does, so quantisation is the same to the bit, except
that a value quantised to zero from below is ``-0.0`` here and ``0.0`` in Python.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from targets.edge.quantize import INT8_MAX, Quantizer

PAGE_BYTES: Final = 65536
ANY_WIDTH: Final = -1
STATUS_OK: Final = 0
STATUS_BAD_WIDTH: Final = 1
ROUND_SCALE: Final = 10_000.0  # round(v, 4)
EXACT_LIMIT: Final = 2.0**52  # at or beyond it every double is an integer: nothing to round
MEAN_SCALE: Final = 2.0**-64  # as targets.models: a sum beyond a double's range is scaled


@dataclass(frozen=True, slots=True)
class LinearWeights:
    """A multinomial linear classifier: ``coef[k][j]``, ``intercept[k]``, ``labels[k]``."""

    coef: tuple[tuple[float, ...], ...]
    intercept: tuple[float, ...]
    labels: tuple[float, ...]

    def __post_init__(self) -> None:
        widths = {len(row) for row in self.coef}
        if not self.coef or len(widths) != 1 or 0 in widths:
            raise ValueError("coef must be a non-empty matrix (classes x features)")
        if not len(self.intercept) == len(self.labels) == len(self.coef):
            raise ValueError("intercept and labels need one value per class (row of coef)")

    @property
    def classes(self) -> int:
        return len(self.coef)

    @property
    def features(self) -> int:
        return len(self.coef[0])

    def data(self) -> bytes:
        """The data segment: coef row by row, intercept, labels; f64 little-endian."""
        values = [value for row in self.coef for value in row]
        values += [*self.intercept, *self.labels]
        return struct.pack(f"<{len(values)}d", *values)


ModelWeights = LinearWeights | None  # None: the reference model (no weights)


def f64(value: float) -> str:
    """A WAT f64 constant that is exactly ``value`` (hexadecimal float: no decimal rounding)."""
    return f"(f64.const {float(value).hex()})"


def _data_string(data: bytes) -> str:
    return "".join(f"\\{byte:02x}" for byte in data)


def _quantise_func(quantizer: Quantizer) -> str:
    """``$quantise``: one value as ``Quantizer.quantize_value`` computes it."""
    scale = f64(quantizer.scale)
    if quantizer.mode == "int8":
        top, bottom = f64(INT8_MAX * quantizer.scale), f64(-INT8_MAX * quantizer.scale)
        return f"""
  (func $quantise (param $x f64) (result f64) (local $steps f64)
    (local.set $steps (f64.div (local.get $x) {scale}))
    (if (f64.ge (local.get $steps) {f64(INT8_MAX)}) (then (return {top})))
    (if (f64.le (local.get $steps) {f64(-INT8_MAX)}) (then (return {bottom})))
    (f64.mul (f64.nearest (local.get $steps)) {scale}))"""
    return f"""
  (func $quantise (param $x f64) (result f64) (local $scaled f64)
    (local.set $scaled (f64.div (local.get $x) {scale}))
    ;; not finite (x - x is NaN): so large that it is already a multiple of the step
    (if (f64.ne (f64.sub (local.get $scaled) (local.get $scaled)) {f64(0)})
      (then (return (local.get $x))))
    (f64.mul (f64.nearest (local.get $scaled)) {scale}))"""


# Quantise ``count`` values in place from ``$ptr``.
_QUANTISE_ALL: Final = """
  (func $quantise_all (param $ptr i32) (param $count i32) (local $end i32)
    (local.set $end (i32.add (local.get $ptr) (i32.shl (local.get $count) (i32.const 3))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
      (f64.store (local.get $ptr) (call $quantise (f64.load (local.get $ptr))))
      (local.set $ptr (i32.add (local.get $ptr) (i32.const 8)))
      (br $next))))"""


def _sum_func() -> str:
    """``$sum``: the values left to right, each times ``$scale``."""
    return """
  (func $sum (param $row i32) (param $width i32) (param $scale f64) (result f64)
    (local $end i32) (local $total f64)
    (local.set $end (i32.add (local.get $row) (i32.shl (local.get $width) (i32.const 3))))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $row) (local.get $end)))
      (local.set $total (f64.add (local.get $total)
        (f64.mul (f64.load (local.get $row)) (local.get $scale))))
      (local.set $row (i32.add (local.get $row) (i32.const 8)))
      (br $next)))
    (local.get $total))"""


# ``value * 1e4`` rounded to an integer as Python's ``round(value, 4)`` rounds the exact product
# (halves to even): ``$scaled`` is the product in f64, and only when it is exactly a half does
# the exact product's side of it matter. That side is the sign of the product's rounding error,
# exact by Dekker's product (``value`` split in two 26-bit halves; 1e4 needs 14 bits).
_ROUND_EXACT: Final = f"""
  (func $round_exact (param $value f64) (param $scaled f64) (result f64)
    (local $split f64) (local $high f64) (local $error f64)
    (if (f64.ne (f64.abs (f64.sub (local.get $scaled) (f64.trunc (local.get $scaled))))
                {f64(0.5)})
      (then (return (f64.nearest (local.get $scaled)))))
    (local.set $split (f64.mul (local.get $value) {f64(2.0**27 + 1)}))
    (local.set $high (f64.sub (local.get $split) (f64.sub (local.get $split) (local.get $value))))
    (local.set $error (f64.add
      (f64.sub (f64.mul (local.get $high) {f64(ROUND_SCALE)}) (local.get $scaled))
      (f64.mul (f64.sub (local.get $value) (local.get $high)) {f64(ROUND_SCALE)})))
    (if (f64.gt (local.get $error) {f64(0)}) (then (return (f64.ceil (local.get $scaled)))))
    (if (f64.lt (local.get $error) {f64(0)}) (then (return (f64.floor (local.get $scaled)))))
    (f64.nearest (local.get $scaled)))"""


def _reference_funcs() -> str:
    """``$row_prediction`` for the reference model: ``round(mean(row) * 0.8 + 0.1, 4)``."""
    return (
        _sum_func()
        + _ROUND_EXACT
        + f"""
  (func $row_prediction (param $row i32) (param $width i32) (result f64)
    (local $mean f64) (local $value f64) (local $scaled f64)
    (if (i32.eqz (local.get $width)) (then (return {f64(0)})))
    (local.set $mean (f64.div (call $sum (local.get $row) (local.get $width) {f64(1)})
      (f64.convert_i32_u (local.get $width))))
    (if (f64.ne (f64.sub (local.get $mean) (local.get $mean)) {f64(0)})
      (then (local.set $mean (f64.div (f64.div
        (call $sum (local.get $row) (local.get $width) {f64(MEAN_SCALE)})
        (f64.convert_i32_u (local.get $width))) {f64(MEAN_SCALE)}))))
    (local.set $value (f64.add (f64.mul (local.get $mean) {f64(0.8)}) {f64(0.1)}))
    (local.set $scaled (f64.mul (local.get $value) {f64(ROUND_SCALE)}))
    (if (f64.ge (f64.abs (local.get $scaled)) {f64(EXACT_LIMIT)})
      (then (return (local.get $value))))
    (f64.div (call $round_exact (local.get $value) (local.get $scaled)) {f64(ROUND_SCALE)}))"""
    )


def _linear_funcs(weights: LinearWeights) -> str:
    """``$score`` of one class and ``$row_prediction``: the label of the first highest score."""
    features, classes = weights.features, weights.classes
    row_bytes = features * 8
    intercept_at = classes * row_bytes
    labels_at = intercept_at + classes * 8
    return f"""
  (func $score (param $row i32) (param $class i32) (result f64)
    (local $w i32) (local $end i32) (local $total f64)
    (local.set $w (i32.mul (local.get $class) (i32.const {row_bytes})))
    (local.set $end (i32.add (local.get $row) (i32.const {row_bytes})))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $row) (local.get $end)))
      (local.set $total (f64.add (local.get $total)
        (f64.mul (f64.load (local.get $row)) (f64.load (local.get $w)))))
      (local.set $row (i32.add (local.get $row) (i32.const 8)))
      (local.set $w (i32.add (local.get $w) (i32.const 8)))
      (br $next)))
    (f64.add (local.get $total) (f64.load offset={intercept_at}
      (i32.shl (local.get $class) (i32.const 3)))))
  (func $row_prediction (param $row i32) (param $width i32) (result f64)
    (local $class i32) (local $best i32) (local $best_score f64) (local $score f64)
    (local.set $best_score (call $score (local.get $row) (i32.const 0)))
    (local.set $class (i32.const 1))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $class) (i32.const {classes})))
      (local.set $score (call $score (local.get $row) (local.get $class)))
      (if (f64.gt (local.get $score) (local.get $best_score)) (then
        (local.set $best_score (local.get $score)) (local.set $best (local.get $class))))
      (local.set $class (i32.add (local.get $class) (i32.const 1)))
      (br $next)))
    (f64.load offset={labels_at} (i32.shl (local.get $best) (i32.const 3))))
  (func (export "classes") (result i32) (i32.const {classes}))
  (func (export "decision") (param $rows i32) (param $width i32) (result i32)
    (local $row i32) (local $out i32) (local $end i32) (local $class i32)
    (if (i32.ne (local.get $width) (i32.const {features}))
      (then (return (i32.const {STATUS_BAD_WIDTH}))))
    (local.set $row (global.get $heap))
    (local.set $end (i32.add (local.get $row) (i32.mul (local.get $rows) (i32.const {row_bytes}))))
    (local.set $out (local.get $end))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $row) (local.get $end)))
      (local.set $class (i32.const 0))
      (block $row_done (loop $next_class
        (br_if $row_done (i32.ge_u (local.get $class) (i32.const {classes})))
        (f64.store (local.get $out) (call $score (local.get $row) (local.get $class)))
        (local.set $out (i32.add (local.get $out) (i32.const 8)))
        (local.set $class (i32.add (local.get $class) (i32.const 1)))
        (br $next_class)))
      (local.set $row (i32.add (local.get $row) (i32.const {row_bytes})))
      (br $next)))
    (i32.const {STATUS_OK}))"""


def _abi_funcs(width: int) -> str:
    """``reserve``, ``predict`` and ``features`` over ``$row_prediction``."""
    width_check = (
        ""
        if width == ANY_WIDTH
        else f"""
    (if (i32.ne (local.get $width) (i32.const {width}))
      (then (return (i32.const {STATUS_BAD_WIDTH}))))"""
    )
    return f"""
  (func (export "features") (result i32) (i32.const {width}))
  (func (export "reserve") (param $values i32) (param $outputs i32) (result i32)
    (local $need i64) (local $pages i64)
    (local.set $need (i64.add (i64.extend_i32_u (global.get $heap)) (i64.shl (i64.add
      (i64.extend_i32_u (local.get $values)) (i64.extend_i32_u (local.get $outputs)))
      (i64.const 3))))
    (local.set $pages (i64.div_u (i64.add (local.get $need) (i64.const {PAGE_BYTES - 1}))
      (i64.const {PAGE_BYTES})))
    (if (i64.gt_u (local.get $pages) (i64.const 65536)) (then (return (i32.const -1))))
    (if (i64.gt_u (local.get $pages) (i64.extend_i32_u (memory.size))) (then
      (if (i32.eq (memory.grow (i32.sub (i32.wrap_i64 (local.get $pages)) (memory.size)))
                  (i32.const -1))
        (then (return (i32.const -1))))))
    (global.get $heap))
  (func (export "predict") (param $rows i32) (param $width i32) (param $quantise i32)
    (result i32) (local $row i32) (local $out i32) (local $end i32) (local $row_bytes i32)
    {width_check}
    (local.set $row (global.get $heap))
    (local.set $row_bytes (i32.shl (local.get $width) (i32.const 3)))
    (local.set $end (i32.add (local.get $row) (i32.mul (local.get $rows) (local.get $row_bytes))))
    (if (local.get $quantise) (then
      (call $quantise_all (local.get $row) (i32.mul (local.get $rows) (local.get $width)))))
    (local.set $out (local.get $end))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $out) (i32.add (local.get $end)
        (i32.shl (local.get $rows) (i32.const 3)))))
      (f64.store (local.get $out) (call $row_prediction (local.get $row) (local.get $width)))
      (local.set $row (i32.add (local.get $row) (local.get $row_bytes)))
      (local.set $out (i32.add (local.get $out) (i32.const 8)))
      (br $next)))
    (i32.const {STATUS_OK}))"""


def module_wat(weights: ModelWeights, quantizer: Quantizer) -> str:
    """The module's text for the reference model (``weights`` None) or a linear classifier,
    with ``quantizer`` baked into its ``predict(..., quantise=1)``."""
    data = b"" if weights is None else weights.data()
    heap = -(-len(data) // 8) * 8
    pages = max(1, -(-heap // PAGE_BYTES))
    model = _reference_funcs() if weights is None else _linear_funcs(weights)
    width = ANY_WIDTH if weights is None else weights.features
    segment = f'\n  (data (i32.const 0) "{_data_string(data)}")' if data else ""
    return (
        f"""(module
  ;; servelab edge model: {"reference" if weights is None else "linear"}, --quant {quantizer.spec}
  (memory (export "memory") {pages})
  (global $heap i32 (i32.const {heap})){segment}"""
        + _quantise_func(quantizer)
        + _QUANTISE_ALL
        + model
        + _abi_funcs(width)
        + ")\n"
    )
