"""The recorder: column buffers on the hot path, folded vectorised into histograms and a
per-second series.

``record`` appends plain ints to ``array('q')`` columns (no object per request). ``fold`` —
called every ``fold_every`` samples, at each progress tick and at the end — turns the columns
into numpy arrays once, bincounts them into the HDR histograms and error counts, and closes
finished seconds of the per-second series, so memory stays constant in run length.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from loadtests.engine.histogram import IntArray, LatencyHistogram, Prepared, SparseCounts
from loadtests.engine.records import WIRE_UNSEEN, Outcome, RequestRecord
from loadtests.engine.seconds import SecondStats, merged_seconds

NS_PER_S: Final = 1_000_000_000
# A request's flags, one int: outcome in bits 0-1, "schema bad" in bit 2, "cold start" in bit 3,
# the error code from bit 8. The layout is this module's: others pack and unpack with
# encode_flags / decode_flags / cold_start_mask.
_OUTCOME_MASK: Final = 3
_SCHEMA_BAD_BIT: Final = 4
_COLD_START_BIT: Final = 8
_ERROR_SHIFT: Final = 8


def encode_flags(
    outcome: int, error_code: int = 0, schema_ok: bool = True, cold_start: bool = False
) -> int:
    """The flags of one request (``outcome`` an ``Outcome`` value, ``error_code`` from
    ``Recorder.error_code``), as ``Recorder.record`` stores them and ``record_arrays`` takes
    them."""
    return (
        outcome
        | (0 if schema_ok else _SCHEMA_BAD_BIT)
        | (_COLD_START_BIT if cold_start else 0)
        | (error_code << _ERROR_SHIFT)
    )


class FlagColumns(NamedTuple):
    """A flags column unpacked: each request's outcome, error code (0: none) and schema_ok."""

    outcome: IntArray
    error_code: IntArray
    schema_ok: npt.NDArray[np.bool_]


def decode_flags(flags: IntArray) -> FlagColumns:
    """``encode_flags``, undone for a whole column."""
    return FlagColumns(flags & _OUTCOME_MASK, flags >> _ERROR_SHIFT, (flags & _SCHEMA_BAD_BIT) == 0)


def cold_start_mask(flags: IntArray) -> npt.NDArray[np.bool_]:
    """Which requests of a flags column were cold starts."""
    cold: npt.NDArray[np.bool_] = (flags & _COLD_START_BIT) != 0
    return cold


class RecordSink(Protocol):
    """Where a recorder also sends its raw columns (the per-request event log), at each fold —
    so at every harness tick and at the end, never on the hot path."""

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
    ) -> None: ...


class Recorder:
    """Collects requests of one run (or one worker); mergeable."""

    def __init__(
        self,
        *,
        start_ns: int = 0,
        fold_every: int = 1 << 16,
        sink: RecordSink | None = None,
        keep_seconds: bool = False,
        split_cold_starts: bool = False,
    ) -> None:
        self.start_ns = start_ns
        self.fold_every = fold_every
        self.sink = sink
        # The four instants of a request (records.RequestRecord) make four histograms:
        self.latency = LatencyHistogram()  # ended - intended
        self.service = LatencyHistogram()  # ended - on wire (- dispatched where the wire is unseen)
        self.client_queue = LatencyHistogram()  # on wire - dispatched; only where the wire is seen
        self.failure_latency = LatencyHistogram()  # ended - intended, of failed requests
        self.lateness = LatencyHistogram()  # dispatched - intended: the generator's health
        # ``split_cold_starts`` (the driver tells them apart): successes' latencies again, by
        # whether the request paid a cold start; ``cold_starts`` counts judged requests that did.
        self.split_cold_starts = split_cold_starts
        self.cold_latency = LatencyHistogram()
        self.warm_latency = LatencyHistogram()
        self.cold_starts = 0
        self.requests = 0
        self.successes = 0
        self.failures = 0
        self.expected_rejections = 0
        self.schema_checked = 0
        self.schema_ok = 0
        self.predictions = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.first_sent_ns: int | None = None
        self.last_ended_ns: int | None = None
        self.errors: dict[str, int] = {}
        self.timeseries: list[dict[str, float]] = []
        # ``keep_seconds``: each closed second's latency buckets too, by ``t_s``, so that the
        # seconds of several generator processes merge exactly (``merge``); a few KB a second.
        self.keep_seconds = keep_seconds
        self.second_counts: dict[int, SparseCounts] = {}
        self._error_codes: dict[str, int] = {}
        self._error_names: list[str] = []
        self._open_seconds: dict[int, SecondStats] = {}
        self._spare_histograms: list[LatencyHistogram] = []
        self._scheduled = array("q")
        self._sent = array("q")
        self._ended = array("q")
        self._flags = array("q")
        self._predictions = array("q")
        self._wire = array("q")

    def error_code(self, error_class: str) -> int:
        """Small int for an error class (look it up once, outside the hot loop)."""
        code = self._error_codes.get(error_class)
        if code is None:
            code = len(self._error_names) + 1
            self._error_codes[error_class] = code
            self._error_names.append(error_class)
        return code

    def record(
        self,
        scheduled_ns: int,
        dispatched_ns: int,
        ended_ns: int,
        outcome: int = 0,
        error_code: int = 0,
        predictions: int = 0,
        schema_ok: bool = True,
        wire_ns: int = WIRE_UNSEEN,
        cold_start: bool = False,
    ) -> None:
        """Hot path: one request, as ints (``outcome`` an ``Outcome`` value; ``wire_ns``
        ``WIRE_UNSEEN`` where the driver cannot see its on-wire instant)."""
        self._scheduled.append(scheduled_ns)
        self._sent.append(dispatched_ns)
        self._ended.append(ended_ns)
        # encode_flags, inlined: a call costs ~80 ns a request here
        self._flags.append(
            outcome
            | (0 if schema_ok else _SCHEMA_BAD_BIT)
            | (_COLD_START_BIT if cold_start else 0)
            | (error_code << _ERROR_SHIFT)
        )
        self._predictions.append(predictions)
        self._wire.append(wire_ns)
        if len(self._ended) >= self.fold_every:
            self.fold()

    def add(self, record: RequestRecord, *, bytes_sent: int = 0, bytes_received: int = 0) -> None:
        """Boundary path: one ``RequestRecord`` (Locust events, tests)."""
        code = self.error_code(record.error_class) if record.error_class else 0
        self.bytes_sent += bytes_sent or record.bytes_sent
        self.bytes_received += bytes_received or record.bytes_received
        self.record(
            record.scheduled_ns,
            record.dispatched_ns,
            record.ended_ns,
            int(record.outcome),
            code,
            record.predictions,
            record.schema_ok,
            WIRE_UNSEEN if record.wire_ns is None else record.wire_ns,
            record.cold_start,
        )

    @property
    def pending(self) -> int:
        return len(self._ended)

    def fold(self, *, now_ns: int | None = None) -> None:
        """Move buffered samples into the histograms; close seconds that ended before ``now_ns``."""
        if self._ended:
            self._fold_buffers()
        if now_ns is not None:
            self._close_seconds_before((now_ns - self.start_ns) // NS_PER_S)

    def finish(self) -> None:
        """Fold everything and close every second (end of run)."""
        self.fold()
        self._close_seconds_before(None)

    def _fold_buffers(self) -> None:
        # Hand the filled columns to numpy (zero-copy) and start fresh ones.
        columns = (
            self._scheduled, self._sent, self._ended, self._flags, self._predictions, self._wire
        )  # fmt: skip
        self._scheduled, self._sent, self._ended = array("q"), array("q"), array("q")
        self._flags, self._predictions, self._wire = array("q"), array("q"), array("q")
        scheduled, sent, ended, flags, predictions, wire = (
            np.frombuffer(column, dtype=np.int64) for column in columns
        )
        if self.sink is not None:
            self.sink.write_columns(
                self.start_ns, self._error_names, scheduled, sent, ended, flags, predictions, wire
            )
        self.record_arrays(scheduled, sent, ended, flags, predictions, wire)

    def record_arrays(
        self,
        scheduled: IntArray,
        sent: IntArray,
        ended: IntArray,
        flags: IntArray,
        predictions: IntArray,
        wire: IntArray | None = None,
    ) -> None:
        """Fold many requests given as columns (``sent``: dispatched; ``flags``: each request's
        ``encode_flags``; ``wire``: on-wire instants, ``WIRE_UNSEEN`` where unseen —
        ``None`` means on wire at dispatch, as in a back-to-back in-process loop)."""
        if ended.size == 0:
            return
        size = int(flags.size)
        counted, ok, failed = self._count_outcomes(flags, predictions)
        first, last = int(sent.min()), int(ended.max())
        self.first_sent_ns = first if self.first_sent_ns is None else min(self.first_sent_ns, first)
        self.last_ended_ns = last if self.last_ended_ns is None else max(self.last_ended_ns, last)
        # Latencies describe *successful* requests (``summary.latency_scope``); failures keep
        # their elapsed time in a histogram of their own, so a storm of refused connections
        # never reads as fast and timeouts never hide. Deliberate rejections are in neither.
        if failed is not None and failed.any():
            self.failure_latency.record_many((ended - scheduled)[failed])
        keep = None if ok is None or bool(ok.all()) else ok
        latency = ended - scheduled if keep is None else (ended - scheduled)[keep]
        prepared = self.latency.prepare(latency)
        self.latency.add(prepared)
        if self.split_cold_starts:
            self._fold_cold_starts(flags, counted, keep, prepared)
        if sent is scheduled and wire is None:
            # back-to-back loop: intended == dispatched == on wire; lateness and queue zero
            self.service.add(prepared)
            self.lateness.add_zeros(size)
            self.client_queue.add_zeros(int(prepared.indices.size))
        else:
            self._fold_wire(sent, ended, wire, keep)
            self.lateness.record_many(sent - scheduled)
        # per second: every judged request and failure counted, the successes' latencies
        all_counted = counted is None or bool(counted.all())
        if not all_counted:
            ended = ended[counted]
            failed = None if failed is None else failed[counted]
            keep = None if keep is None else keep[counted]
        self._fold_seconds(ended, prepared, failed, keep)

    def _fold_cold_starts(
        self,
        flags: IntArray,
        counted: np.ndarray | None,
        succeeded: np.ndarray | None,
        latency: Prepared,
    ) -> None:
        """Cold starts among the judged requests, and the successes' latencies (``latency``,
        ``succeeded`` which of ``flags`` they are; None: all) split cold / warm."""
        cold = cold_start_mask(flags)
        if not cold.any():
            self.warm_latency.add(latency)
            return
        self.cold_starts += int(cold.sum() if counted is None else cold[counted].sum())
        cold_successes = cold if succeeded is None else cold[succeeded]
        self.cold_latency.add(latency, cold_successes)
        self.warm_latency.add(latency, ~cold_successes)

    def _count_outcomes(
        self, flags: IntArray, predictions: IntArray
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """Count the requests by outcome; their (counted, ok, failed) masks — ``None`` each when
        every request was a clean success (the common case: no masks needed)."""
        size = int(flags.size)
        self.requests += size
        if not flags.any():
            self.successes += size
            self.predictions += int(predictions.sum())
            self.schema_checked += size
            self.schema_ok += size
            return None, None, None
        outcome, error_codes, schema_ok = decode_flags(flags)
        counted = outcome != Outcome.EXPECTED_REJECTION
        ok = outcome == Outcome.OK
        failed = outcome == Outcome.FAILURE
        self.successes += int(ok.sum())
        self.failures += int(failed.sum())
        self.expected_rejections += int((~counted).sum())
        self.predictions += int(predictions[ok].sum())
        checked = ok | ~schema_ok  # answers whose body was checked
        self.schema_checked += int(checked.sum())
        self.schema_ok += int((ok & schema_ok).sum())
        self._count_errors(error_codes)
        return counted, ok, failed

    def _fold_wire(
        self,
        dispatched: IntArray,
        ended: IntArray,
        wire: IntArray | None,
        counted: np.ndarray | None,
    ) -> None:
        """Service time from the wire (from the dispatch where it is unseen) and client-queue
        time where it is seen; ``counted`` masks out expected rejections."""
        if wire is None:
            start = dispatched
            seen = None
        else:
            seen = wire != WIRE_UNSEEN
            all_seen = bool(seen.all())
            start = wire if all_seen else np.where(seen, wire, dispatched)
            if all_seen:
                seen = None
        service = ended - start
        self.service.record_many(service if counted is None else service[counted])
        if wire is None:
            self.client_queue.add_zeros(int(ended.size) if counted is None else int(counted.sum()))
            return
        queue = start - dispatched
        keep = seen if counted is None else (counted if seen is None else seen & counted)
        if keep is None:
            self.client_queue.record_many(queue)
        elif keep.any():
            self.client_queue.record_many(queue[keep])

    def _count_errors(self, codes: IntArray) -> None:
        if codes.any():
            for code, count in enumerate(np.bincount(codes[codes > 0])):
                if code and count:
                    name = self._error_names[code - 1]
                    self.errors[name] = self.errors.get(name, 0) + int(count)

    def _fold_seconds(
        self,
        ended: IntArray,
        latency: Prepared,
        failed: np.ndarray | None,
        succeeded: np.ndarray | None,
    ) -> None:
        """Per-second counts and latencies; ``failed`` is None when nothing failed;
        ``latency`` holds the successes' samples, ``succeeded`` which of ``ended`` they are
        (None: all)."""
        if ended.size == 0:
            return
        seconds = (ended - self.start_ns) // NS_PER_S
        ok_seconds = seconds if succeeded is None else seconds[succeeded]
        first, last = int(seconds.min()), int(seconds.max())
        for second in range(first, last + 1):  # a fold spans few seconds: masks beat sorting
            mask = None if first == last else seconds == second
            count = int(ended.size) if mask is None else int(mask.sum())
            if count == 0:
                continue
            stats = self._open_seconds.get(second)
            if stats is None:
                spare = self._spare_histograms
                histogram = spare.pop() if spare else LatencyHistogram()
                stats = self._open_seconds[second] = SecondStats(second, latency=histogram)
            stats.requests += count
            if failed is not None:
                stats.failures += int(failed.sum() if mask is None else failed[mask].sum())
            stats.latency.add(latency, None if first == last else ok_seconds == second)

    def _close_seconds_before(self, limit_s: int | None) -> None:
        for second in sorted(self._open_seconds):
            if limit_s is not None and second >= limit_s:
                break
            stats = self._open_seconds.pop(second)
            self.timeseries.append(stats.close())
            if self.keep_seconds:
                self.second_counts[second] = stats.latency.sparse_counts()
            # Reused, not dropped: an HdrHistogram refers to itself through its encoder, so a
            # dropped one waits for a full collection — ~136 KiB a second of a long run.
            stats.latency.reset()
            self._spare_histograms.append(stats.latency)

    def merge(self, other: Recorder) -> None:
        """Add another finished recorder's counts and histograms (another worker or process)."""
        other.finish()
        self.finish()
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        self.client_queue.merge(other.client_queue)
        self.failure_latency.merge(other.failure_latency)
        self.lateness.merge(other.lateness)
        self.cold_latency.merge(other.cold_latency)
        self.warm_latency.merge(other.warm_latency)
        self.split_cold_starts = self.split_cold_starts or other.split_cold_starts
        for name in (
            "requests", "successes", "failures", "expected_rejections", "schema_checked",
            "schema_ok", "predictions", "bytes_sent", "bytes_received", "cold_starts",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, count in other.errors.items():
            self.errors[name] = self.errors.get(name, 0) + count
        if other.first_sent_ns is not None:
            self.first_sent_ns = min(self.first_sent_ns or other.first_sent_ns, other.first_sent_ns)
        if other.last_ended_ns is not None:
            self.last_ended_ns = max(self.last_ended_ns or other.last_ended_ns, other.last_ended_ns)
        self.timeseries, self.second_counts = merged_seconds(
            (self.timeseries, self.second_counts),
            (other.timeseries, other.second_counts),
            keep=self.keep_seconds,
        )
