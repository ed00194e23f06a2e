"""Directory mode: score every partition of a directory, backfill-safe. Stdlib only.

``INPUT/`` holds partitions (``*.jsonl``, ``*.ndjson``, ``*.csv``; names starting with ``.`` or
``_`` — ``_SUCCESS``, hidden files — and subdirectories are ignored), scored in sorted name order
into ``OUT/<stem>.jsonl`` and ``ERRORS/<stem>.errors.jsonl`` (``ERRORS`` defaults to ``OUT``).

A finished partition gets a marker, ``OUT/.done/<input name>.json``, written atomically *after*
its outputs: the input's size and SHA-256 (content, not mtime, so a touched file is still
finished), the model, the output names and sizes, and the row counts. A re-run skips a partition
whose marker matches its input, model and outputs, and re-scores every other one, so a job killed
at any point resumes without duplicating a line. An advisory lock (``OUT/.done/lock``, POSIX)
keeps two jobs from writing one directory at once, which also makes removing stale temp files
safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

from targets.batch.report import BatchReport, PartitionReport, merge_reports
from targets.batch.rows import input_kind
from targets.batch.scoring import (
    DEFAULT_BATCH_SIZE,
    Clock,
    check_input_file,
    remove_stale_temps,
    score_file,
)
from targets.errors import InputError
from targets.files import user_path, write_atomic
from targets.models import Model
from targets.schema import Limits

DONE_DIR: Final = ".done"
MARKER_VERSION: Final = 1
# What must match for a partition to count as finished; counts and sizes are informative.
_IDENTITY_KEYS: Final = (
    "marker_version",
    "input",
    "input_bytes",
    "input_sha256",
    "model",
    "output",
    "errors",
)
Notify = Callable[[str], None]


def list_partitions(directory: Path) -> list[Path]:
    """The partition files of ``directory`` in sorted name order; ``InputError`` when a file is
    of an unsupported type (better than silently leaving data unscored) or there are none."""
    with user_path("read", "input directory", directory):
        entries = sorted(directory.iterdir(), key=lambda path: path.name)
    partitions = []
    for entry in entries:
        if entry.name.startswith((".", "_")) or entry.is_dir():
            continue
        input_kind(entry)
        partitions.append(entry)
    if not partitions:
        raise InputError(f"input directory {str(directory)!r} holds no .jsonl or .csv partitions")
    return partitions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, directory: Path) -> Iterator[None]:
    """Hold an advisory lock on ``lock_path`` (released by the OS even on SIGKILL)."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one job per output directory is then on the user
        yield
        return
    with user_path("write", "--out", directory):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another batch job is writing {str(directory)!r}") from None
        yield
    finally:
        os.close(fd)


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows): keep it absolute
        return str(path.resolve())


class _Partition:
    """One input file and where its results and marker go."""

    def __init__(self, source: Path, out_dir: Path, errors_dir: Path) -> None:
        self.source = source
        self.out_dir = out_dir
        self.output = out_dir / f"{source.stem}.jsonl"
        self.errors = errors_dir / f"{source.stem}.errors.jsonl"
        self.marker = out_dir / DONE_DIR / f"{source.name}.json"

    def identity(self, model: Model) -> dict[str, Any]:
        return {
            "marker_version": MARKER_VERSION,
            "input": self.source.name,
            "input_bytes": self.source.stat().st_size,
            "input_sha256": file_sha256(self.source),
            "model": {"name": model.name, "version": model.version},
            "output": _relative(self.output, self.out_dir),
            "errors": _relative(self.errors, self.out_dir),
        }

    def recorded(self, identity: dict[str, Any]) -> dict[str, Any] | None:
        """The marker, when it proves this partition finished for ``identity``."""
        try:
            marker: dict[str, Any] = json.loads(self.marker.read_text())
            if any(marker.get(key) != identity[key] for key in _IDENTITY_KEYS):
                return None
            sizes_match = (
                self.output.stat().st_size == marker["output_bytes"]
                and self.errors.stat().st_size == marker["errors_bytes"]
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # no marker, a foreign one, or outputs gone: not finished
        return marker if sizes_match else None

    def skipped_report(self, marker: dict[str, Any]) -> BatchReport:
        part = PartitionReport(
            self.source,
            self.output,
            self.errors,
            int(marker.get("rows", 0)),
            int(marker.get("valid", 0)),
            int(marker.get("bad", 0)),
            int(marker.get("batches", 0)),
            skipped=True,
        )
        return BatchReport(0, 0, 0, 0, 0.0, (), (part,))

    def finish(self, identity: dict[str, Any], report: BatchReport) -> None:
        marker = {
            **identity,
            "output_bytes": self.output.stat().st_size,
            "errors_bytes": self.errors.stat().st_size,
            "rows": report.rows,
            "valid": report.valid,
            "bad": report.bad,
            "batches": report.batches,
        }
        write_atomic(self.marker, (json.dumps(marker, indent=1) + "\n").encode())


def _plan(source: Path, out_dir: Path, errors_dir: Path) -> list[_Partition]:
    for directory, what in ((out_dir, "--out"), (errors_dir, "--errors")):
        if directory.exists() and not directory.is_dir():
            raise InputError(f"{what} {str(directory)!r} must be a directory when INPUT is one")
        if directory.resolve() == source.resolve():
            raise InputError(f"{what} {str(directory)!r} must not be the input directory")
    plan = [_Partition(path, out_dir, errors_dir) for path in list_partitions(source)]
    targets = [target for part in plan for target in (part.output, part.errors)]
    seen: set[Path] = set()
    for target in targets:
        if target in seen:
            names = [part.source.name for part in plan if target in (part.output, part.errors)]
            raise InputError(f"partitions {', '.join(names)} would all write {str(target)!r}")
        seen.add(target)
    return plan


def score_directory(
    input_dir: Path,
    out_dir: Path,
    *,
    model: Model,
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors_dir: Path | None = None,
    limits: Limits | None = None,
    clock: Clock = time.perf_counter,
    notify: Notify | None = None,
) -> BatchReport:
    """Score every partition of ``input_dir`` not already finished; see the module docstring."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    started = clock()
    say = notify or (lambda message: None)
    plan = _plan(input_dir, out_dir, errors_dir or out_dir)
    with user_path("write", "--out", out_dir):
        (out_dir / DONE_DIR).mkdir(parents=True, exist_ok=True)
    with user_path("write", "--errors", errors_dir or out_dir):
        (errors_dir or out_dir).mkdir(parents=True, exist_ok=True)
    reports: list[BatchReport] = []
    with exclusive_lock(out_dir / DONE_DIR / "lock", out_dir):
        directories = {out_dir, errors_dir or out_dir, out_dir / DONE_DIR}
        removed = sum(remove_stale_temps(directory) for directory in directories)
        if removed:
            say(f"removed {removed} temp file(s) an interrupted run left behind")
        for part in plan:
            check_input_file(part.source)  # identity() reads it before score_file checks it
            identity = part.identity(model)
            marker = part.recorded(identity)
            if marker is not None:
                say(f"skipped {part.source.name}: finished earlier and unchanged")
                reports.append(part.skipped_report(marker))
                continue
            # A stale marker must not outlive the outputs it described.
            part.marker.unlink(missing_ok=True)
            report = score_file(
                part.source,
                part.output,
                model=model,
                batch_size=batch_size,
                errors_path=part.errors,
                limits=limits,
                clock=clock,
            )
            part.finish(identity, report)
            say(f"scored {part.source.name}: {report.rows} rows, {report.bad} bad")
            reports.append(report)
    return merge_reports(reports, clock() - started)


def score_path(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    model: Model,
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors_path: str | os.PathLike[str] | None = None,
    limits: Limits | None = None,
    clock: Clock = time.perf_counter,
    notify: Notify | None = None,
) -> BatchReport:
    """Score a file (see ``score_file``) or a directory of partitions (``score_directory``)."""
    source = Path(input_path)
    errors = Path(errors_path) if errors_path is not None else None
    if source.is_dir():
        return score_directory(
            source,
            Path(output_path),
            model=model,
            batch_size=batch_size,
            errors_dir=errors,
            limits=limits,
            clock=clock,
            notify=notify,
        )
    check_input_file(source)
    return score_file(
        source,
        output_path,
        model=model,
        batch_size=batch_size,
        errors_path=errors,
        limits=limits,
        clock=clock,
    )
