"""Reading result files for reports: files, directories or globs in; runs grouped into cells out.

A *cell* is one configuration measured: target/transport x model x load level x hardware profile
x label. Runs of one cell (normally differing only in repeat number) are its repeats and are
pooled. Unusable inputs (unreadable, foreign, truncated, newer schema, mangled blocks) are skipped
with a one-line warning each; the caller decides whether anything usable is left.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import cast

import numpy as np

from loadtests.engine.histogram import LATENCY_KEYS
from loadtests.results.result import (
    LatencyMs,
    ResultDocument,
    ResultFileError,
    RunBlock,
    SummaryBlock,
    VerdictBlock,
    load_result,
)
from reports.buckets import Buckets, decode_buckets
from reports.stats import RunSample

_SUMMARY_KEYS = ("requests", "successes", "success_rate", "throughput_rps")


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return _text(value)


def load_level(run: Mapping[str, object]) -> str:
    """The load a run was under, as people write it: ``closed c=8``, ``open 500/s poisson``,
    plus ``batch 256`` / ``window 5ms`` where they were set."""
    mode = _text(run.get("mode")) or "?"
    if mode == "closed":
        concurrency = run.get("concurrency")
        parts = [f"closed c={_number(concurrency)}" if concurrency is not None else "closed"]
    else:
        rate = run.get("rate_per_s")
        parts = [f"{mode} {_number(rate)}/s" if rate else mode]
        if run.get("arrival"):
            parts.append(_text(run["arrival"]))
    if run.get("batch_size") is not None:
        parts.append(f"batch {_number(run['batch_size'])}")
    if run.get("window_ms") is not None:
        parts.append(f"window {_number(run['window_ms'])}ms")
    return " ".join(parts)


@dataclass(frozen=True, slots=True, order=True)
class CellKey:
    """What identifies a cell; ordering gives reports a stable row order."""

    target: str
    model: str
    load: str
    hardware: str
    label: str
    transport: str

    @property
    def name(self) -> str:
        """Short human name: the parts that usually differ between cells."""
        parts = [self.target, self.load, self.hardware]
        if self.label:
            parts.append(self.label)
        return " · ".join(parts)


@dataclass(frozen=True)
class Run:
    """One readable result file."""

    path: str
    document: ResultDocument

    @property
    def run(self) -> RunBlock:
        return self.document["run"]

    @cached_property
    def summary(self) -> SummaryBlock:
        """The summary, with fields the producer marked unknown (``extra.unknown``, e.g. schema
        success of an imported Locust CSV) as NaN rather than a misleading 0 (a count too)."""
        block = self.document["summary"].copy()
        unknown = (self.document.get("extra") or {}).get("unknown") or []
        fields = cast("dict[str, object]", block)  # the file names them: any numeric field
        for name in unknown if isinstance(unknown, list) else []:
            if isinstance(fields.get(name), int | float):
                fields[name] = math.nan
        return block

    @property
    def verdict(self) -> VerdictBlock:
        return self.document["verdict"]

    @property
    def warnings(self) -> list[str]:
        return [str(warning) for warning in self.verdict.get("warnings") or []]

    @property
    def notes(self) -> list[str]:
        """What the valid figures mean (a saturated target …): said, but not a doubt."""
        return [str(note) for note in self.verdict.get("notes") or []]

    @property
    def valid(self) -> bool:
        return bool(self.verdict.get("valid"))

    @property
    def reasons(self) -> list[str]:
        return [str(reason) for reason in self.verdict.get("reasons") or []]

    @property
    def repeat(self) -> int:
        repeat = self.run.get("repeat")
        return repeat if isinstance(repeat, int) else 0

    @property
    def hardware(self) -> str:
        """The hardware profile; runs without one are told apart by host."""
        profile = self.run.get("profile")
        if profile:
            return str(profile)
        host = (self.document.get("environment") or {}).get("hostname")
        return f"host {host}" if host else "unprofiled"

    @property
    def key(self) -> CellKey:
        run = self.run
        return CellKey(
            target=_text(run.get("target")) or _text(run.get("transport")) or "?",
            model=_text(run.get("model")),
            load=load_level(run),
            hardware=self.hardware,
            label=_text(run.get("label")),
            transport=_text(run.get("transport")),
        )

    @property
    def scores_rows(self) -> bool:
        """The run scored rows of input files (a batch job): ``extra.rows`` counts them, and
        ``summary.predictions_per_s`` is rows per second beside requests (batches) per second."""
        rows = (self.document.get("extra") or {}).get("rows")
        return isinstance(rows, int) and not isinstance(rows, bool)

    @property
    def cost_per_1k(self) -> float | None:
        value = (self.document.get("cost") or {}).get("cpu_s_per_1k_predictions")
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    @property
    def timeseries(self) -> list[dict[str, float]]:
        rows = self.document.get("timeseries") or []
        return [row for row in rows if isinstance(row, dict) and "t_s" in row]

    @cached_property
    def latency(self) -> Buckets | None:
        return decode_buckets((self.document.get("histograms") or {}).get("latency"))

    @cached_property
    def service(self) -> Buckets | None:
        return decode_buckets((self.document.get("histograms") or {}).get("service_latency"))

    @cached_property
    def client_queue(self) -> Buckets | None:
        """Dispatch to the wire; None where the driver could not see the wire (or a v1 file)."""
        return decode_buckets((self.document.get("histograms") or {}).get("client_queue"))

    @property
    def client_queue_ms(self) -> LatencyMs | None:
        """``summary.client_queue_ms``: None when absent — never read as 0."""
        return self.summary.get("client_queue_ms")

    @cached_property
    def sample(self) -> RunSample:
        successes = [
            int(row.get("requests", 0)) - int(row.get("failures", 0)) for row in self.timeseries
        ]
        return RunSample(
            self.summary,
            self.latency,
            self.service,
            np.asarray(successes, dtype=np.int64),
            self.client_queue,
        )


@dataclass
class Cell:
    """One configuration: its valid runs (pooled as repeats) and its invalid ones (kept apart)."""

    key: CellKey
    runs: list[Run] = field(default_factory=list)
    invalid: list[Run] = field(default_factory=list)

    @property
    def samples(self) -> list[RunSample]:
        return [run.sample for run in self.runs]

    @property
    def valid(self) -> bool:
        return bool(self.runs)


@dataclass
class Loaded:
    """What ``load_runs`` found: the usable runs and one warning per skipped input."""

    runs: list[Run]
    warnings: list[str]


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[str]]:
    """Files, directories (their ``*.json``) and globs to a de-duplicated list of paths."""
    paths: list[Path] = []
    warnings: list[str] = []
    seen: set[Path] = set()
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                warnings.append(f"{item}: directory holds no *.json result files")
        elif path.exists():
            found = [path]
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item))
            if not found:
                warnings.append(f"{item}: no file matches")
        else:
            found = []
            warnings.append(f"{item}: no such file or directory")
        for candidate in found:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                paths.append(candidate)
    return paths, warnings


def check_blocks(path: str, document: ResultDocument) -> None:
    """Refuse documents whose blocks a report reads are mangled (beyond ``load_result``)."""
    for block in ("run", "summary", "verdict"):
        if not isinstance(document.get(block), dict):
            raise ResultFileError(f"{path}: malformed result, {block!r} is not an object")
    summary = document["summary"]
    for name in ("latency_ms", "service_latency_ms"):
        values = summary.get(name)
        if not isinstance(values, dict) or not all(
            isinstance(values.get(key), int | float) for key in LATENCY_KEYS
        ):
            raise ResultFileError(f"{path}: malformed result, summary.{name} is incomplete")
    queue = summary.get("client_queue_ms")
    if queue is not None and not (
        isinstance(queue, dict)
        and all(isinstance(queue.get(key), int | float) for key in LATENCY_KEYS)
    ):
        raise ResultFileError(f"{path}: malformed result, summary.client_queue_ms is incomplete")
    missing = [key for key in _SUMMARY_KEYS if not isinstance(summary.get(key), int | float)]
    if missing:
        raise ResultFileError(f"{path}: malformed result, summary lacks {', '.join(missing)}")


def read_run(path: str | Path) -> Run:
    """One result file as a ``Run``; ``ResultFileError`` (one line naming it) if unusable."""
    document = load_result(path)
    check_blocks(str(path), document)
    return Run(str(path), document)


def load_runs(items: Sequence[str]) -> Loaded:
    """Every readable run named by ``items``; the rest become warnings, never exceptions."""
    paths, warnings = expand_inputs(items)
    runs: list[Run] = []
    for path in paths:
        try:
            runs.append(read_run(path))
        except ResultFileError as exc:
            warnings.append(str(exc))
    return Loaded(runs, warnings)


def group_cells(runs: Iterable[Run]) -> list[Cell]:
    """Runs grouped into cells, sorted by key; invalid runs kept apart within their cell."""
    cells: dict[CellKey, Cell] = {}
    for run in runs:
        cell = cells.setdefault(run.key, Cell(run.key))
        (cell.runs if run.valid else cell.invalid).append(run)
    for cell in cells.values():
        cell.runs.sort(key=lambda r: (r.repeat, r.path))
        cell.invalid.sort(key=lambda r: (r.repeat, r.path))
    return [cells[key] for key in sorted(cells)]
