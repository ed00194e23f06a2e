"""Input quantisation for the edge runtime (``--quant``). Stdlib only.

``int8:RANGE``  symmetric int8: ``scale = RANGE / 127``, ``q = clamp(round(x / scale), -127, 127)``,
                and the model sees ``q * scale``. Values beyond ``±RANGE`` saturate.
``fixed:BITS``  fixed point with ``BITS`` fractional bits: ``round(x * 2**BITS) / 2**BITS``.

Python's ``round`` rounds halves to even, in both modes. Quantising makes nearby rows identical,
which is what lets the edge cache hit; the price is the *quantisation drift* the runtime measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from targets.errors import InputError

QuantMode = Literal["int8", "fixed"]
INT8_MAX: Final = 127
MAX_FIXED_BITS: Final = 52  # a double has 52 fraction bits: more cannot change any value
QUANT_FORMS: Final = "int8:RANGE (RANGE > 0, e.g. int8:8) or fixed:BITS (0..52, e.g. fixed:8)"


@dataclass(frozen=True, slots=True)
class Quantizer:
    """Quantises rows, and returns them de-quantised: the rows the model actually sees.

    Build one with ``parse_quant``; ``spec`` is the canonical mode string reported in metadata.
    """

    mode: QuantMode
    spec: str
    scale: float  # int8: RANGE / 127; fixed: 2**-BITS (the step between representable values)

    def quantize_value(self, value: float) -> float:
        """One feature, quantised and de-quantised."""
        if self.mode == "int8":
            steps = value / self.scale
            # Clamp before rounding: a huge value divided by a small scale overflows to inf.
            if steps >= INT8_MAX:
                return INT8_MAX * self.scale
            if steps <= -INT8_MAX:
                return -INT8_MAX * self.scale
            return round(steps) * self.scale
        scaled = value / self.scale  # exact: dividing by a power of two
        if not math.isfinite(scaled):
            return value  # so large it is already a multiple of the step
        return round(scaled) * self.scale

    def quantize_row(self, row: Sequence[float]) -> list[float]:
        """A row as the model sees it after quantisation."""
        quantize = self.quantize_value
        return [quantize(value) for value in row]


def _bad(text: str, problem: str) -> InputError:
    return InputError(f"--quant {text!r}: {problem}; expected {QUANT_FORMS}")


def parse_quant(text: str) -> Quantizer:
    """Parse ``int8:RANGE`` or ``fixed:BITS``; ``InputError`` naming ``--quant`` otherwise."""
    mode, sep, param = text.strip().partition(":")
    if not sep or not param:
        raise _bad(text, "missing the mode or its parameter")
    if mode == "int8":
        try:
            value_range = float(param)
        except ValueError:
            raise _bad(text, f"RANGE must be a number, got {param!r}") from None
        if not (math.isfinite(value_range) and value_range > 0):
            raise _bad(text, f"RANGE must be a finite number > 0, got {param!r}")
        shown = repr(value_range).removesuffix(".0")  # "int8:8.0" and "int8:8" are one mode
        return Quantizer("int8", f"int8:{shown}", value_range / INT8_MAX)
    if mode == "fixed":
        if not param.isdigit() or not 0 <= int(param) <= MAX_FIXED_BITS:
            raise _bad(text, f"BITS must be an integer 0..{MAX_FIXED_BITS}, got {param!r}")
        bits = int(param)
        return Quantizer("fixed", f"fixed:{bits}", math.ldexp(1.0, -bits))
    raise _bad(text, f"unknown mode {mode!r}")
