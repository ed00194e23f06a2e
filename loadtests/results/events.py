"""The per-request event log (``servelab run --events FILE``) and a result recomputed from it.

One JSON line per measured request, handed over by the recorder at each fold — every harness tick
(1 s) and the end — and flushed then, so a crash loses at most the last second. It is the one
file servelab appends to instead of writing atomically (that is its point); a crash can leave a
torn last line, which ``read_events`` drops and counts::

    {"kind": "servelab-events", "schema_version": 2, "start_ns": ..., "run": {...}, ...}
    {"scheduled_ns": ..., "dispatched_ns": ..., "wire_ns": ..., "ended_ns": ...,
     "outcome": "ok", "error": null, "predictions": 8, "schema_ok": true}  (one line per request)

``wire_ns`` is null where the driver cannot see its on-wire instant. Version 1 logs (``sent_ns``
for the dispatch, no ``wire_ns``) are still read.
    {"end": true, "measure_end_ns": ..., "interrupted": false, "abandoned": 0}   (clean end only)

``recompute_result`` folds the lines through a fresh ``Recorder``, so the recomputed result counts
exactly what the log holds; a log without its end line is a partial run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import orjson

from loadtests.engine.harness import RunStats
from loadtests.engine.histogram import IntArray
from loadtests.engine.recorder import Recorder, decode_flags
from loadtests.engine.records import WIRE_UNSEEN, Outcome
from loadtests.errors import ResultFileError
from loadtests.results.result import (
    ResultDocument,
    RunInfo,
    Verdict,
    build_result,
)
from loadtests.results.verdict import judge_run
from targets.files import user_path

if TYPE_CHECKING:
    pass

KIND: Final = "servelab-events"
SCHEMA_VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
OUTCOME_NAMES: Final = {int(outcome): outcome.name.lower() for outcome in Outcome}
OUTCOMES_BY_NAME: Final = {name: code for code, name in OUTCOME_NAMES.items()}
UNFINISHED: Final = "run did not finish: recomputed from its event log"


class EventLogError(ResultFileError):
    """An event log that cannot be read; the message is one line naming the file."""


class EventLog:
    """The recorder's sink for ``--events``: appends each fold's requests as JSON lines."""

    def __init__(
        self,
        path: str | Path,
        *,
        run: Mapping[str, Any],
        environment: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        with user_path("write", "--events", self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle: IO[bytes] | None = self.path.open("wb")
        self.lines = 0
        self._run = dict(run)
        self._environment = dict(environment or {})
        self._header_written = False

    def _write(self, data: bytes) -> None:
        if self._handle is None:
            raise ValueError(f"{self.path}: event log already closed")
        self._handle.write(data)
        self._handle.flush()  # to the OS at every fold: a crash of this process loses nothing

    def _header(self, start_ns: int) -> None:
        if not self._header_written:
            self._header_written = True
            header = {
                "kind": KIND,
                "schema_version": SCHEMA_VERSION,
                "start_ns": start_ns,
                "run": self._run,
                "environment": self._environment,
            }
            self._write(orjson.dumps(header) + b"\n")

    def write_columns(
        self,
        start_ns: int,
        error_names: Sequence[str],
        scheduled: IntArray,
        dispatched: IntArray,
        ended: IntArray,
        flags: IntArray,
        predictions: IntArray,
        wire: IntArray,
    ) -> None:
        self._header(start_ns)
        names: list[str | None] = [None, *error_names]
        outcomes, error_codes, schema_ok = decode_flags(flags)
        rows = zip(
            scheduled.tolist(),
            dispatched.tolist(),
            [None if value == WIRE_UNSEEN else value for value in wire.tolist()],
            ended.tolist(),
            outcomes.tolist(),
            error_codes.tolist(),
            predictions.tolist(),
            schema_ok.tolist(),
            strict=True,
        )
        data = b"".join(
            orjson.dumps(
                {
                    "scheduled_ns": intended_ns,
                    "dispatched_ns": dispatched_ns,
                    "wire_ns": wire_ns,
                    "ended_ns": ended_ns,
                    "outcome": OUTCOME_NAMES[outcome],
                    "error": names[code],
                    "predictions": count,
                    "schema_ok": ok,
                }
            )
            + b"\n"
            for intended_ns, dispatched_ns, wire_ns, ended_ns, outcome, code, count, ok in rows
        )
        self._write(data)
        self.lines += int(ended.size)

    def finish(self, start_ns: int, stats: RunStats) -> None:
        """The end line: the run ended by itself or by a signal, not by a crash."""
        self._header(start_ns)
        trailer = {
            "end": True,
            "measure_end_ns": stats.measure_end_ns,
            "interrupted": stats.interrupted,
            "abandoned": stats.abandoned,
            "offered_s": stats.offered_s,
        }
        self._write(orjson.dumps(trailer) + b"\n")

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()


@dataclass(slots=True)
class EventLogContents:
    header: dict[str, Any]
    recorder: Recorder
    lines: int
    torn_lines: int
    trailer: dict[str, Any] | None


def _line_error(path: Path, number: int, what: str) -> EventLogError:
    return EventLogError(f"{path}: line {number}: {what}")


def read_events(path: str | Path) -> EventLogContents:
    """Fold an event log into a ``Recorder``; ``EventLogError`` (one line) if it is unusable."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise EventLogError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    lines = raw.split(b"\n")
    try:
        header = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("kind") != KIND:
        raise EventLogError(f"{path}: not a servelab event log (empty, truncated or foreign)")
    version = header.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise EventLogError(f"{path}: unsupported event log schema_version {version!r}")
    dispatched_key = "sent_ns" if version == 1 else "dispatched_ns"
    start_ns = header.get("start_ns")
    if not isinstance(start_ns, int):
        raise EventLogError(f"{path}: header has no start_ns")
    recorder = Recorder(start_ns=start_ns)
    count = torn = 0
    trailer: dict[str, Any] | None = None
    last = len(lines) - 1
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number - 1 == last:  # the line a crash cut short
                torn += 1
                continue
            raise _line_error(path, number, "not JSON") from None
        if not isinstance(event, dict):
            raise _line_error(path, number, "not an event object")
        if event.get("end") is True:
            trailer = event
            continue
        try:
            error = event["error"]
            wire_ns = event.get("wire_ns")
            recorder.record(
                int(event["scheduled_ns"]),
                int(event[dispatched_key]),
                int(event["ended_ns"]),
                OUTCOMES_BY_NAME[event["outcome"]],
                recorder.error_code(str(error)) if error else 0,
                int(event["predictions"]),
                bool(event["schema_ok"]),
                WIRE_UNSEEN if wire_ns is None else int(wire_ns),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _line_error(path, number, f"bad event ({exc!r})") from None
        count += 1
    recorder.finish()
    return EventLogContents(header, recorder, count, torn, trailer)


def _run_info(run: Mapping[str, Any], *, partial: bool) -> RunInfo:
    names = {field.name for field in dataclasses.fields(RunInfo)}
    try:
        info = RunInfo(**{key: value for key, value in run.items() if key in names})
    except TypeError as exc:
        raise EventLogError(f"event log header: bad run block ({exc})") from None
    return dataclasses.replace(info, partial=partial)


def recompute_result(path: str | Path) -> ResultDocument:
    """The result document an event log stands for (``run.partial`` when it has no end line)."""
    contents = read_events(path)
    recorder, trailer = contents.recorder, contents.trailer
    start_ns = recorder.start_ns
    if trailer is not None and isinstance(trailer.get("measure_end_ns"), int):
        end_ns = int(trailer["measure_end_ns"])
    else:
        end_ns = recorder.last_ended_ns if recorder.last_ended_ns is not None else start_ns
    interrupted = trailer is None or bool(trailer.get("interrupted"))
    run_block = contents.header.get("run")
    run = _run_info(run_block if isinstance(run_block, dict) else {}, partial=interrupted)
    offered_s = trailer.get("offered_s") if trailer else None
    stats = RunStats(
        measure_start_ns=start_ns,
        measure_end_ns=end_ns,
        interrupted=interrupted,
        abandoned=int(trailer.get("abandoned", 0)) if trailer else 0,
        offered_s=float(offered_s) if isinstance(offered_s, int | float) else 0.0,
        transport=run.transport,
    )
    judged = judge_run(recorder, stats, mode=run.mode, in_process=True)
    reasons = judged.reasons if trailer is not None else (UNFINISHED, *judged.reasons)
    environment = contents.header.get("environment")
    return build_result(
        run,
        recorder,
        window_s=stats.window_s,
        verdict=Verdict(not reasons, reasons, judged.warnings, judged.notes),
        environment=environment if isinstance(environment, dict) else {},
        extra={
            "recomputed_from": str(path),
            "event_lines": contents.lines,
            "torn_lines": contents.torn_lines,
        },
    )
