"""Scoring one input file: batches of valid rows, one model call each, atomic outputs. Stdlib only.

Output and errors are streamed into same-directory temp files (``.tmp-NAME.RANDOM.part``) and
renamed over their targets only when the whole file is scored, so a crash or a failing model
never leaves a half-written output: the old file stays, or there is none.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from targets.batch.report import BatchReport, PartitionReport
from targets.batch.rows import BadRow, GoodRow, InputRow, input_kind, read_rows
from targets.errors import InputError, ModelFailure
from targets.files import TMP_PREFIX, user_path
from targets.models import Model
from targets.schema import Limits
from targets.service import PredictionService

DEFAULT_BATCH_SIZE: Final = 256
TRANSPORT: Final = "batch"
TMP_SUFFIX: Final = ".part"
Clock = Callable[[], float]


def encode_line(body: dict[str, Any]) -> bytes:
    """One compact JSON line; key order is insertion order, so re-runs are byte-identical."""
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def default_errors_path(output: Path) -> Path:
    """``OUTPUT.errors.jsonl``: ``scores.jsonl`` -> ``scores.errors.jsonl``."""
    return output.with_name(f"{output.stem if output.suffix else output.name}.errors.jsonl")


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        # Under gevent (Locust's BatchUser runs jobs in its thread pool) the patched os.close
        # can raise EBADF for a descriptor another thread just closed and reused; the fsync
        # above is what mattered.
        with contextlib.suppress(OSError):
            os.close(fd)


def remove_stale_temps(directory: Path, target_name: str = "") -> int:
    """Delete temp files an interrupted job left in ``directory`` (for ``target_name`` only,
    when given); returns how many."""
    removed = 0
    if directory.is_dir():
        for stale in directory.glob(f"{TMP_PREFIX}{glob.escape(target_name)}*{TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


class AtomicLineFile:
    """Lines streamed into a temp file beside ``target``; ``commit`` fsyncs and renames it.

    Leaving the ``with`` block without ``commit`` (an exception) deletes the temp file. The temp
    file is created with ``os.open(..., 0o666)`` so the umask applies, as for a plain ``open``;
    ``InputError`` naming ``what`` when ``target``'s directory does not let it be created.
    """

    def __init__(self, target: Path, what: str = "output") -> None:
        self.target = target
        self.temp = target.with_name(f"{TMP_PREFIX}{target.name}.{os.urandom(4).hex()}{TMP_SUFFIX}")
        with user_path("write", what, target):
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._handle = os.fdopen(fd, "wb", buffering=1 << 16)
        self.committed = False

    def __enter__(self) -> AtomicLineFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.committed:
            self._handle.close()
            self.temp.unlink(missing_ok=True)

    def write(self, data: bytes) -> None:
        self._handle.write(data)

    def commit(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self.temp, self.target)
        self.committed = True
        fsync_directory(self.target.parent)


class _Scorer:
    """Groups valid rows into batches of ``batch_size`` and writes each batch's responses."""

    def __init__(
        self, service: PredictionService, source_name: str, batch_size: int, clock: Clock
    ) -> None:
        self.service = service
        self.source_name = source_name
        self.batch_size = batch_size
        self.clock = clock
        self.rows = 0
        self.bad = 0
        self.batches = 0
        self.latencies_s: list[float] = []

    def run(self, rows: Iterable[InputRow], output: AtomicLineFile, errors: AtomicLineFile) -> None:
        pending: list[GoodRow] = []
        for row in rows:
            self.rows += 1
            if isinstance(row, BadRow):
                self.bad += 1
                errors.write(encode_line(row.to_json()))
                continue
            pending.append(row)
            if len(pending) == self.batch_size:
                self._score(pending, output)
                pending = []
        if pending:
            self._score(pending, output)

    def _predict(self, batch: list[GoodRow]) -> list[float]:
        model = self.service.model
        where = f"{self.source_name} lines {batch[0].line}-{batch[-1].line}"
        try:
            # v1 requests hold exactly one row each: the batch is one model call.
            predictions = [
                float(value) for value in model.predict([r.request.rows[0] for r in batch])
            ]
        except Exception as exc:  # whatever the model raises is the job's failure, not the row's
            raise ModelFailure(
                f"model {model.name} failed on {where}: {type(exc).__name__}: {exc}"
            ) from exc
        if len(predictions) != len(batch):
            raise ModelFailure(
                f"model {model.name} returned {len(predictions)} predictions "
                f"for {len(batch)} rows on {where}"
            )
        if not all(map(math.isfinite, predictions)):
            raise ModelFailure(f"model {model.name} returned a non-finite prediction on {where}")
        return predictions

    def _score(self, batch: list[GoodRow], output: AtomicLineFile) -> None:
        # A batch's latency runs from the batch being complete to its last response written:
        # the model call plus building and encoding its responses, without reading input.
        started = self.clock()
        predictions = self._predict(batch)
        for row, prediction in zip(batch, predictions, strict=True):
            # A request id from the input position, not a counter: re-runs are byte-identical.
            request = replace(row.request, request_id=f"{self.source_name}:{row.line}")
            response = self.service.respond(request, [prediction])
            response["metadata"]["line"] = row.line
            if row.row_id is not None:
                response["metadata"]["id"] = row.row_id
            output.write(encode_line(response))
        self.batches += 1
        self.latencies_s.append(self.clock() - started)


def check_input_file(path: Path) -> None:
    """``InputError`` naming ``path`` when it is not a readable, supported input file."""
    if not path.exists():
        raise InputError(f"input {str(path)!r} does not exist")
    if not path.is_file():
        raise InputError(f"input {str(path)!r} is not a regular file or a directory")
    if not os.access(path, os.R_OK):
        raise InputError(f"input {str(path)!r} is not readable")


def check_output_file(path: Path, what: str) -> None:
    """``InputError`` naming ``path`` (the ``what``) when it is a directory, not a file."""
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a directory, expected a file")


def score_file(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    model: Model,
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors_path: str | os.PathLike[str] | None = None,
    limits: Limits | None = None,
    clock: Clock = time.perf_counter,
) -> BatchReport:
    """Score one JSONL/CSV file into ``output_path`` (one response line per valid row, in order)
    and ``errors_path`` (default ``OUTPUT.errors.jsonl``; one line per bad row).

    Raises ``InputError`` (a ``ValueError``) for a missing, unreadable or unsupported input or an
    output that cannot be written, ``ModelFailure`` when the model raises (and then writes
    nothing).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    source, output = Path(input_path), Path(output_path)
    check_input_file(source)
    input_kind(source)
    check_output_file(output, "output")  # first: default_errors_path needs a file name
    errors = Path(errors_path) if errors_path is not None else default_errors_path(output)
    check_output_file(errors, "errors file")
    if len({source.resolve(), output.resolve(), errors.resolve()}) != 3:
        raise InputError(f"input, output and errors file must differ, got {str(output)!r}")
    started = clock()
    service = PredictionService(model, transport=TRANSPORT, limits=limits)
    scorer = _Scorer(service, source.name, batch_size, clock)
    for target, what in ((output, "output"), (errors, "errors file")):
        with user_path("write", what, target):
            target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent, target.name)
    with (
        AtomicLineFile(output, "output") as output_file,
        AtomicLineFile(errors, "errors file") as errors_file,
    ):
        scorer.run(read_rows(source, service), output_file, errors_file)
        errors_file.commit()
        output_file.commit()
    valid = scorer.rows - scorer.bad
    part = PartitionReport(source, output, errors, scorer.rows, valid, scorer.bad, scorer.batches)
    return BatchReport(
        rows=scorer.rows,
        valid=valid,
        bad=scorer.bad,
        batches=scorer.batches,
        elapsed_s=clock() - started,
        batch_latencies_s=tuple(scorer.latencies_s),
        partitions=(part,),
    )
