"""Open Inference Protocol tensors: ``--tensor NAME:DATATYPE:SHAPE`` (or a model's metadata), the
rows of a payload as a tensor of that datatype, and the check on an answer's ``outputs``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from loadtests.errors import LoadOptionError

INTEGER_TYPES: Final = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_TYPES: Final = frozenset({"FP16", "FP32", "FP64"})
DATATYPES: Final = INTEGER_TYPES | FLOAT_TYPES | {"BOOL", "BYTES"}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input tensor: ``shape[0]`` is the batch (rows) dimension, ``-1`` where it varies."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> TensorSpec:
        """``NAME:DATATYPE:SHAPE``, SHAPE comma-separated with ``-1`` for a free dimension."""
        name, _, rest = text.partition(":")
        datatype, _, shape_text = rest.partition(":")
        try:
            shape = tuple(int(part) for part in shape_text.split(","))
        except ValueError:
            shape = ()
        if not name or not shape or datatype.upper() not in DATATYPES:
            raise LoadOptionError(
                f"--tensor {text!r}: expected NAME:DATATYPE:SHAPE, e.g. input-0:FP64:-1,64 "
                f"(DATATYPE one of {', '.join(sorted(DATATYPES))})"
            )
        return cls(name, datatype.upper(), shape).checked(f"--tensor {text!r}")

    @classmethod
    def from_metadata(cls, entry: Mapping[str, Any], where: str) -> TensorSpec:
        try:
            spec = cls(str(entry["name"]), str(entry["datatype"]).upper(),
                       tuple(int(d) for d in entry["shape"]))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise LoadOptionError(f"{where}: an input without name, datatype and shape") from None
        return spec.checked(where)

    def checked(self, where: str) -> TensorSpec:
        if self.datatype not in DATATYPES:
            raise LoadOptionError(f"{where}: unknown datatype {self.datatype!r}")
        if any(dim < -1 or dim == 0 for dim in self.shape):
            raise LoadOptionError(f"{where}: dimensions are -1 or positive, got {self.shape}")
        return self

    @property
    def features(self) -> int | None:
        """Values per row, when the shape fixes them (``None``: any)."""
        inner = self.shape[1:]
        return None if any(dim < 0 for dim in inner) else math.prod(inner)

    def tensor(self, rows: Sequence[Sequence[float]]) -> dict[str, Any]:
        """``rows`` as this tensor (JSON form): shape [rows, ...], data flat, row-major."""
        width = len(rows[0]) if rows else 0
        inner = [width if dim < 0 else dim for dim in self.shape[1:]] if len(self.shape) > 1 else []
        if len(self.shape) > 1 and math.prod(inner) != width:
            raise LoadOptionError(
                f"tensor {self.name!r} takes {math.prod(inner)} values a row; the payloads have "
                f"{width} (set --instances {math.prod(inner)})"
            )
        flat = [value for row in rows for value in row]
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": [len(rows), *inner] if len(self.shape) > 1 else [len(flat)],
            "data": convert(flat, self.datatype),
        }


def convert(values: list[float], datatype: str) -> list[Any]:
    """Seeded float values as ``datatype``'s JSON values."""
    if datatype in INTEGER_TYPES:
        values_i = [round(value) for value in values]
        return [abs(v) for v in values_i] if datatype.startswith("UINT") else values_i
    if datatype == "BOOL":
        return [value > 0 for value in values]
    if datatype == "BYTES":
        return [repr(value) for value in values]
    return values


def _leaves(data: object) -> int | None:
    """How many values ``data`` holds (flat or nested lists); ``None`` if it is not a list."""
    if not isinstance(data, list):
        return None
    count = 0
    for item in data:
        if isinstance(item, list):
            inner = _leaves(item)
            if inner is None:
                return None
            count += inner
        else:
            count += 1
    return count


def outputs_problem(answer: object, rows: int) -> str | None:
    """Why an OIP answer is not one (``None``: it is): ``outputs`` each with a name, a datatype,
    a shape whose first dimension is the rows sent, and exactly prod(shape) values."""
    outputs = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, list) or not outputs:
        return "no outputs"
    for output in outputs:
        if not isinstance(output, dict):
            return "an output is not an object"
        shape = output.get("shape")
        if not isinstance(output.get("name"), str) or not isinstance(output.get("datatype"), str):
            return "an output without name or datatype"
        if not isinstance(shape, list) or not shape or not all(isinstance(d, int) for d in shape):
            return "an output without a shape"
        if shape[0] != rows or _leaves(output.get("data")) != math.prod(shape):
            return "an output's shape or data does not match the rows sent"
    return None
