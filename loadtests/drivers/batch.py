"""The batch driver: one request is one batch of ``batch_size`` rows scored by the batch target.

Batch scoring costs more than a model call: the job reads a file, validates every row, calls
the model once per batch and writes its outputs atomically (temp file, fsync, rename). So each
``send`` runs the target's real path, ``targets.batch.score_file``: it writes the batch as a
JSONL input file in a folder of its own inside a private temp directory, scores it into an output
and an errors file, and reads both back to judge them, all inside the measured time. The files
are deleted afterwards. ``run_batch_job`` is that job, and Locust's ``BatchUser`` runs it too
(``score_batch``).

**Rows from payloads.** A payload carries one row (v1) or a few (v2); a batch is ``batch_size``
rows built by cycling that payload's rows, one ``{"instances": row}`` line each (the batch
target's v1 line format). That keeps one request = one payload, so the harness's payload
indices, validity draws and seeds mean what they mean for every other target, and a batch is
the same bytes whatever the schedule. An invalid payload makes a batch of ``batch_size`` copies
of its invalid body: every row must land in the errors file, which is an expected rejection.

**Judging from the files.** A batch succeeds when the output holds ``batch_size`` lines, each a
canonical response with one prediction (``response_problem``), and the errors file is empty;
rows in the errors file for a valid payload are a ``rejected`` failure, a model that raises is
``model_error``. ``predictions`` is ``batch_size`` for a successful batch.

**Threads.** Scoring blocks (file I/O, fsync, the blocking ``Model.predict``), so it runs in a
worker thread and the loop stays responsive. The driver owns that pool, instead of
``asyncio.to_thread``'s shared one, so ``close`` can wait for a batch whose send was abandoned
before it deletes the directory that batch is still writing into.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import json
import shutil
import tempfile
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.drivers.base import (
    OK_REPLY_SCHEMA_BAD,
    DriverBase,
    Reply,
    WireView,
    p50_p99,
)
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from targets.batch import score_file
from targets.batch.scoring import DEFAULT_BATCH_SIZE, encode_line
from targets.errors import ModelFailure
from targets.models import Model
from targets.schema import response_problem
from targets.spec import DEFAULT_MODEL_SPEC, load_model


def batch_input(payload: Payload, batch_size: int) -> bytes:
    """The JSONL input for one batch: ``batch_size`` lines cycling the payload's rows as v1
    bodies, or repeating its body when it is deliberately invalid (or has no rows)."""
    if payload.valid and payload.rows:
        lines = [encode_line({"instances": row}) for row in payload.rows]
    else:
        lines = [encode_line(payload.body)]
    return b"".join(itertools.islice(itertools.cycle(lines), batch_size))


@dataclass(frozen=True, slots=True)
class ScoredBatch:
    """What one batch's files held, and the job's own timings."""

    output_lines: int
    schema_bad: int  # output lines that miss the canonical contract
    error_lines: int
    bytes_in: int
    bytes_out: int
    score_file_s: float
    model_calls_s: tuple[float, ...]
    started_ns: int | None = None  # when a scoring thread took the batch (its on-wire instant)


def judge_batch(payload: Payload, batch_size: int, scored: ScoredBatch) -> Reply:
    """The verdict on one batch, with ``judge_answer``'s classes (see the module docstring)."""
    if not payload.valid:
        if scored.output_lines == 0 and scored.error_lines == batch_size:
            return Reply.expected_rejection()
        return Reply.failure("accepted_invalid")
    if scored.error_lines:
        return Reply.failure("rejected")
    if scored.schema_bad or scored.output_lines != batch_size:
        return Reply.failure(OK_REPLY_SCHEMA_BAD)
    return Reply.ok(batch_size)


def check_output(data: bytes) -> tuple[int, int]:
    """(non-blank lines, lines that are not one canonical response with one prediction) of
    a batch's output file."""
    lines = bad = 0
    for line in data.splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            body = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if response_problem(body, 1) is not None:
            bad += 1
    return lines, bad


def run_batch_job(
    payload: Payload,
    *,
    model: Model,
    batch_size: int,
    directory: Path,
    name: str,
    clock_ns: Callable[[], int] | None = None,
) -> ScoredBatch:
    """One batch job through the batch target's real path: write the payload's batch as an input
    file, ``score_file`` it into an output and an errors file, read both back, delete them.

    Each job has a folder of its own (``directory / name``), so concurrent jobs never see each
    other's files (``score_file`` clears stale temp files beside its outputs). ``clock_ns``, when
    given, stamps when the job started (``ScoredBatch.started_ns``). Blocking: run it in a worker
    thread. Raises what the job raised (``batch_failure`` names it).
    """
    started_ns = None if clock_ns is None else clock_ns()
    job = directory / name
    source, output, errors = job / "input.jsonl", job / "out.jsonl", job / "errors.jsonl"
    try:
        job.mkdir()
        data = batch_input(payload, batch_size)
        source.write_bytes(data)
        report = score_file(source, output, model=model, batch_size=batch_size, errors_path=errors)
        answer, refused = output.read_bytes(), errors.read_bytes()
    finally:
        shutil.rmtree(job, ignore_errors=True)
    output_lines, schema_bad = check_output(answer)
    return ScoredBatch(
        output_lines=output_lines,
        schema_bad=schema_bad,
        error_lines=sum(1 for line in refused.splitlines() if line.strip()),
        bytes_in=len(data),
        bytes_out=len(answer) + len(refused),
        score_file_s=report.elapsed_s,
        model_calls_s=report.batch_latencies_s,
        started_ns=started_ns,
    )


def batch_failure(exc: Exception) -> Reply:
    """The reply for a job that raised (nothing was committed): ``model_error`` for a model
    that raised, else ``batch_<Type>`` — and a bare ``OSError``, whose type says nothing, is
    named by its errno too (``batch_OSError_ENOSPC``)."""
    if isinstance(exc, ModelFailure):
        return Reply.failure(ModelFailure.code)
    name = type(exc).__name__
    reason = errno.errorcode.get(exc.errno or 0) if type(exc) is OSError else None
    return Reply.failure(f"batch_{name}_{reason}" if reason else f"batch_{name}")


def score_batch(
    payload: Payload, *, model: Model, batch_size: int, directory: Path, name: str
) -> tuple[Reply, ScoredBatch | None]:
    """``run_batch_job``, judged: the reply, and what the job's files held (``None`` when it
    raised). Blocking (Locust's ``BatchUser`` runs it in gevent's thread pool)."""
    try:
        scored = run_batch_job(
            payload, model=model, batch_size=batch_size, directory=directory, name=name
        )
    except Exception as exc:  # the job failed outright; reported, never raised
        return batch_failure(exc), None
    return judge_batch(payload, batch_size, scored), scored


class BatchDriver(DriverBase):
    """Scores one batch file per ``send``; see the module docstring.

    ``model``: a ``Model`` or a ``--model`` SPEC (loaded here, so a bad SPEC fails before any
    load starts); ``workdir``: where the private temp directory goes (default the system's temp
    directory — its file system is part of what is measured); ``threads``: scoring threads
    (default ``ThreadPoolExecutor``'s); ``clock_ns`` times the figures in ``extra()`` (the
    harness's ``perf_counter_ns`` by default). ``bytes_sent``/``bytes_received`` count the input
    file and the output and errors files.
    """

    batch_size: int  # rows per job, always set

    transport = "batch"
    in_process = True
    wire: WireView = "stamped"  # when a scoring thread takes the batch, after any queue for one

    def __init__(
        self,
        model: Model | str = DEFAULT_MODEL_SPEC,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        workdir: Path | None = None,
        threads: int | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise LoadOptionError(f"batch_size must be a positive int, got {batch_size!r}")
        if threads is not None and threads < 1:
            raise LoadOptionError(f"threads must be a positive int, got {threads!r}")
        self.model = load_model(model) if isinstance(model, str) else model
        self.batch_size = batch_size
        self.workdir = workdir
        self.threads = threads
        super().__init__()
        self.directory: Path | None = None
        self._clock_ns = clock_ns
        self._executor: ThreadPoolExecutor | None = None
        self._names = itertools.count(1)
        self._epoch = 0
        self.mark_measure_start()

    def mark_measure_start(self) -> None:
        """Forget what warm-up batches added, so ``extra()`` covers the measured window. Chain
        it into the harness's ``on_measure_start``. A batch belongs to the window its send
        started in, as the harness files a request by its start: one still in flight from the
        warm-up is left out of every figure when it ends."""
        self._epoch += 1
        self._in_flight = 0  # measured sends in flight
        self._busy_since_ns = 0
        self._batches = 0
        self._failed = 0
        self._rows = 0
        self._valid_rows = 0
        self._bad_rows = 0
        self._model_calls = 0
        self._busy_ns = 0
        self._first_start_ns: int | None = None
        self._last_end_ns: int | None = None
        self._send_ns = array("q")
        self._score_file_ns = array("q")
        self._model_call_ns = array("q")

    async def open(self) -> None:
        if self.directory is None:
            if self.workdir is not None:
                self.workdir.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="servelab-batch-", dir=self.workdir))
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="servelab-batch")

    async def send(self, payload: Payload) -> Reply:
        directory, executor = self.directory, self._executor
        if directory is None or executor is None:
            raise RuntimeError("BatchDriver.send() outside open() ... close()")
        name = f"batch-{next(self._names)}"
        epoch = self._epoch
        started_ns = self._clock_ns()
        if self._in_flight == 0:
            self._busy_since_ns = started_ns
        self._in_flight += 1
        scored: ScoredBatch | None = None
        try:
            loop = asyncio.get_running_loop()
            job = functools.partial(
                run_batch_job, payload, model=self.model, batch_size=self.batch_size,
                directory=directory, name=name, clock_ns=self.stamps.now_ns,
            )  # fmt: skip
            scored = await loop.run_in_executor(executor, job)
            if scored.started_ns is not None:
                self.stamps.stamp(scored.started_ns)
            reply = judge_batch(payload, self.batch_size, scored)
        except Exception as exc:  # the job failed outright: no output was committed
            reply = batch_failure(exc)
        finally:
            ended_ns = self._clock_ns()
            measured = epoch == self._epoch
            if measured:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._busy_ns += ended_ns - self._busy_since_ns
        if scored is not None:  # bytes, like the recorder's, cover the whole run
            self.bytes_sent += scored.bytes_in
            self.bytes_received += scored.bytes_out
        if measured:
            self._count(reply, scored, started_ns, ended_ns)
        return reply

    def _count(
        self, reply: Reply, scored: ScoredBatch | None, started_ns: int, ended_ns: int
    ) -> None:
        self._batches += 1
        if self._first_start_ns is None or started_ns < self._first_start_ns:
            self._first_start_ns = started_ns
        if self._last_end_ns is None or ended_ns > self._last_end_ns:
            self._last_end_ns = ended_ns
        outcome = reply[0]
        if outcome == Outcome.FAILURE:
            self._failed += 1
        if outcome != Outcome.EXPECTED_REJECTION:  # as the recorder keeps latencies
            # from the wire, as the harness's service time: a thread took the batch
            wire_ns = (
                started_ns if scored is None or scored.started_ns is None else scored.started_ns
            )
            self._send_ns.append(ended_ns - wire_ns)
        if scored is None:
            return
        self._rows += self.batch_size
        self._valid_rows += scored.output_lines
        self._bad_rows += scored.error_lines
        self._model_calls += len(scored.model_calls_s)
        self._score_file_ns.append(round(scored.score_file_s * 1e9))
        self._model_call_ns.extend(round(seconds * 1e9) for seconds in scored.model_calls_s)

    async def close(self) -> None:
        """Wait for batches still being scored (abandoned sends included), off the event loop,
        then delete the temp directory."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        directory, self.directory = self.directory, None
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    def extra(self) -> dict[str, Any]:
        """Batch figures for the result file's ``extra`` block (since ``mark_measure_start``).

        ``batches``: sends (``failed_batches`` of them failures); ``rows``: rows in scored input
        files, ``valid_rows``/``bad_rows`` as output and errors lines; ``model_calls``: one per
        full valid batch; ``busy_s``: time with at least one batch being scored (the union of
        the sends' intervals, so concurrent batches are not counted twice); ``rows_per_s``:
        ``rows / busy_s``; ``makespan_s``: first send start to last send end. Latencies (p50 and
        p99, ms; ``None`` without samples): ``batch_latency_ms`` — a whole send, what the
        recorder's service time sees (rejected batches left out, as the recorder does);
        ``score_file_ms`` — the job alone, as the target reports it; ``model_call_ms`` — one
        batch's model call and response encoding, as the target reports it.
        """
        busy_s = self._busy_ns / 1e9
        makespan_s = (
            (self._last_end_ns - self._first_start_ns) / 1e9
            if self._first_start_ns is not None and self._last_end_ns is not None
            else 0.0
        )
        return {
            "batch_size": self.batch_size,
            "batches": self._batches,
            "failed_batches": self._failed,
            "rows": self._rows,
            "valid_rows": self._valid_rows,
            "bad_rows": self._bad_rows,
            "model_calls": self._model_calls,
            "busy_s": busy_s,
            "rows_per_s": self._rows / busy_s if busy_s > 0 else 0.0,
            "makespan_s": makespan_s,
            "batch_latency_ms": _p50_p99_ms(self._send_ns),
            "score_file_ms": _p50_p99_ms(self._score_file_ns),
            "model_call_ms": _p50_p99_ms(self._model_call_ns),
        }


def _p50_p99_ms(samples_ns: array[int]) -> dict[str, float | None]:
    p50, p99 = p50_p99(samples_ns, 1e-6)
    return {"p50": p50, "p99": p99}
