"""Batch inputs, line by line: JSONL and CSV rows into validated requests or bad rows. Stdlib only.

Every row goes through the canonical validator (``PredictionService.parse(body, "v1")``); a row
that fails becomes a ``BadRow`` carrying the same ``RequestError`` a server would answer with, so
the job can report it and go on. Line numbers are physical, 1-based lines of the input file.

CSV: numeric feature columns. The first non-blank row is a header when none of its cells is a
number; a header column named ``id`` (any case) holds the row id, not a feature. Without a header
every column is a feature and rows have no id.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from targets.errors import InputError, InvalidRequest, MalformedRequest, RequestError
from targets.files import user_path
from targets.schema import PredictRequest, check_body_size
from targets.service import PredictionService

InputKind = Literal["jsonl", "csv"]
RowId = str | int | None
INPUT_KINDS: Final[dict[str, InputKind]] = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
_JSON_TYPE_NAMES: Final = {list: "a list", dict: "an object", float: "a number", bool: "a boolean"}


@dataclass(frozen=True, slots=True)
class GoodRow:
    """A row that passed validation: one v1 request (one row of features)."""

    line: int
    row_id: RowId
    request: PredictRequest


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row the validator refused; written to the errors file, never to the output."""

    line: int
    row_id: RowId
    error: RequestError

    def to_json(self) -> dict[str, Any]:
        """``{"line", "id", "error": {"code", "message", "field"}}`` — always the same keys."""
        return {
            "line": self.line,
            "id": self.row_id,
            "error": {
                "code": self.error.code,
                "message": self.error.message,
                "field": self.error.field,
            },
        }


InputRow = GoodRow | BadRow


def input_kind(path: Path) -> InputKind:
    """``jsonl`` or ``csv`` from the file name; ``InputError`` naming the file otherwise."""
    kind = INPUT_KINDS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            f"unsupported input file type {str(path)!r}: expected {', '.join(INPUT_KINDS)}"
        )
    return kind


def read_rows(path: Path, service: PredictionService) -> Iterator[InputRow]:
    """Every non-blank row of ``path``, in file order, validated by ``service``."""
    if input_kind(path) == "jsonl":
        return _jsonl_rows(path, service)
    return _csv_rows(path, service)


def _row_id(body: object) -> RowId:
    if not isinstance(body, dict):
        return None
    value = body.get("id")
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    kind = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
    raise InvalidRequest(f"id must be a string or an integer, got {kind}", "id")


def _jsonl_row(line: int, text: bytes, service: PredictionService) -> InputRow:
    row_id: RowId = None
    try:
        check_body_size(len(text), service.limits)
        # JSONDecodeError, UnicodeDecodeError for bad bytes, RecursionError for deep nesting
        try:
            body = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise MalformedRequest(f"line is not valid JSON: {exc}") from None
        row_id = _row_id(body)
        return GoodRow(line, row_id, service.parse(body, "v1"))
    except RequestError as exc:
        return BadRow(line, row_id, exc)


def _jsonl_rows(path: Path, service: PredictionService) -> Iterator[InputRow]:
    # Binary lines, decoded one at a time, so one line of bad bytes is one bad row, not a crash.
    with user_path("read", "input", path):
        handle = path.open("rb")
    with handle:
        for line, raw in enumerate(handle, start=1):
            text = raw.rstrip(b"\r\n")
            if line == 1 and text.startswith(codecs.BOM_UTF8):
                text = text[len(codecs.BOM_UTF8) :]
            if text.strip():
                yield _jsonl_row(line, text, service)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _CsvLayout:
    """Column layout fixed by the first row: how wide rows are and which column is the id."""

    width: int
    id_column: int | None
    labels: tuple[str, ...]
    header: bool

    @classmethod
    def from_first_row(cls, cells: list[str]) -> _CsvLayout:
        if any(_is_number(cell) for cell in cells):
            labels = tuple(str(column) for column in range(1, len(cells) + 1))
            return cls(len(cells), None, labels, header=False)
        names = [cell.strip() for cell in cells]
        lowered = [name.lower() for name in names]
        id_column = lowered.index("id") if "id" in lowered else None
        return cls(len(cells), id_column, tuple(repr(name) for name in names), header=True)

    def row(self, line: int, cells: list[str], service: PredictionService) -> InputRow:
        row_id: RowId = None
        if self.id_column is not None and self.id_column < len(cells):
            row_id = cells[self.id_column].strip() or None
        try:
            if len(cells) != self.width:
                raise InvalidRequest(
                    f"expected {self.width} columns, got {len(cells)}", "instances"
                )
            values: list[float] = []
            for column, cell in enumerate(cells):
                if column == self.id_column:
                    continue
                try:
                    values.append(float(cell))
                except ValueError:
                    raise InvalidRequest(
                        f"column {self.labels[column]}: {cell!r} is not a number",
                        f"instances[{len(values)}]",
                    ) from None
            return GoodRow(line, row_id, service.parse({"instances": values}, "v1"))
        except RequestError as exc:
            return BadRow(line, row_id, exc)


def _csv_rows(path: Path, service: PredictionService) -> Iterator[InputRow]:
    # errors="replace": undecodable bytes become U+FFFD, so the cell fails as "not a number"
    # on its own row instead of aborting the whole file.
    with user_path("read", "input", path):
        handle = path.open(newline="", encoding="utf-8-sig", errors="replace")
    with handle:
        reader = csv.reader(handle)
        layout: _CsvLayout | None = None
        while True:
            line = reader.line_num + 1  # where the next record starts (fields may span lines)
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield BadRow(line, None, MalformedRequest(f"line is not valid CSV: {exc}"))
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if layout is None:
                layout = _CsvLayout.from_first_row(cells)
                if layout.header:
                    continue
            yield layout.row(line, cells, service)
