"""``--data FILE``: real rows for the payloads, so a model sees what it really sees. CSV (a header
row of names is skipped), JSONL (each line a list of numbers, or an object with ``instances`` /
``features`` / ``row``) or NumPy ``.npy`` (a 2-D numeric array). Every row must have the same
width and finite values; a file that breaks this is one line naming the file and the row."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from loadtests.errors import ConfigError

ROW_KEYS: Final = ("instances", "features", "row")
MAX_ROWS: Final = 1_000_000

FloatRows = npt.NDArray[np.float64]


def read_rows(path: str | Path) -> FloatRows:
    """The rows of ``path`` as a 2-D float64 array; ``ConfigError`` otherwise."""
    source = Path(path)
    try:
        if source.suffix == ".npy":
            rows = _checked(np.load(source, allow_pickle=False), source)
        elif source.suffix in (".jsonl", ".json", ".ndjson"):
            rows = _from_lists(_jsonl(source), source)
        else:
            rows = _from_lists(_csv(source), source)
    except OSError as exc:
        raise ConfigError(f"cannot read --data {source}: {exc.strerror or exc}") from None
    except ValueError as exc:  # np.load on a file that is not .npy
        raise ConfigError(f"--data {source}: {exc}") from None
    if len(rows) == 0:
        raise ConfigError(f"--data {source}: no rows")
    return rows


def _jsonl(source: Path) -> list[list[Any]]:
    rows = []
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise ConfigError(f"--data {source} line {number}: not JSON") from None
            if isinstance(item, dict):
                item = next((item[key] for key in ROW_KEYS if key in item), None)
            if not isinstance(item, list):
                raise ConfigError(
                    f"--data {source} line {number}: expected a list of numbers or an object "
                    f"with one of {', '.join(ROW_KEYS)}"
                )
            rows.append(item)
    return rows


def _csv(source: Path) -> list[list[Any]]:
    with source.open(newline="", encoding="utf-8") as handle:
        table = [row for row in csv.reader(handle) if row]
    if table and not _numeric(table[0]):
        table = table[1:]  # a header of column names
    return [[_number(cell, source, number) for cell in row] for number, row in enumerate(table, 1)]


def _numeric(row: list[str]) -> bool:
    try:
        [float(cell) for cell in row]
    except ValueError:
        return False
    return True


def _number(cell: str, source: Path, row: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise ConfigError(f"--data {source} row {row}: {cell!r} is not a number") from None


def _from_lists(rows: list[list[Any]], source: Path) -> FloatRows:
    if not rows:
        raise ConfigError(f"--data {source}: no rows")
    if len(rows) > MAX_ROWS:
        raise ConfigError(f"--data {source}: more than {MAX_ROWS:,} rows")
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ConfigError(f"--data {source}: rows of different widths {sorted(widths)}")
    for number, row in enumerate(rows, 1):
        if not all(type(v) in (int, float) and math.isfinite(v) for v in row):
            raise ConfigError(f"--data {source} row {number}: values must be finite numbers")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)


def _checked(array: npt.NDArray[Any], source: Path) -> FloatRows:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"--data {source}: expected a 2-D numeric array, got {array.shape}")
    rows = array.astype(np.float64)
    if not np.isfinite(rows).all():
        raise ConfigError(f"--data {source}: values must be finite")
    return rows
