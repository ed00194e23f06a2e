"""The tight in-process loop: how fast servelab can time calls, for models cheap enough that
``await`` and per-request bookkeeping would dominate (a ``sum(row)/len(row)`` model).

One timestamp per call: in a back-to-back closed loop call ``i`` starts when call ``i-1`` ended,
so ``service_i = t_i - t_{i-1}`` and the loop's own few tens of ns are charged to the next call
(stated, not hidden). Timestamps go to an ``array('q')``; every ``chunk`` calls they are folded
vectorised into the recorder, so memory stays flat however long the run.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np

from loadtests.engine.harness import LoadPlan, RunStats, StartGate
from loadtests.engine.histogram import IntArray
from loadtests.engine.recorder import Recorder, encode_flags
from loadtests.engine.records import Outcome
from loadtests.errors import LoadOptionError

if TYPE_CHECKING:
    from targets.models import Model

OK_FLAGS: Final = encode_flags(Outcome.OK)  # a success with one finite prediction
# 256 KiB a column: the fold's numpy passes stay in cache (2**18 costs ~25 ns more a sample)
CHUNK = 1 << 15
SPIN_S: Final = 0.0015  # the coordinated start: sleep until this close to it, then spin


def _cycled(rows: Sequence[Sequence[float]], chunk: int) -> list[Sequence[float]]:
    """The rows, cycled, as one flat list long enough for any chunk at any offset: iterating a
    list slice is cheaper per call than ``islice(cycle(...))``."""
    return list(rows) * (chunk // len(rows) + 2)


def record_back_to_back(
    recorder: Recorder, ends: array[int], previous_ns: int, flags: IntArray, predictions: IntArray
) -> int:
    """Record calls made back to back — each starts when the one before ended, the first at
    ``previous_ns`` — from their end times; returns the last end."""
    ended = np.frombuffer(ends, dtype=np.int64)
    started = np.empty_like(ended)
    started[0] = previous_ns
    started[1:] = ended[:-1]
    recorder.record_arrays(started, started, ended, flags, predictions)
    return int(ended[-1])


def run_tight(
    predict_row: Callable[[Sequence[float]], float],
    rows: Sequence[Sequence[float]],
    requests: int,
    recorder: Recorder,
    *,
    chunk: int = CHUNK,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> None:
    """Call ``predict_row`` on ``rows`` (cycled) ``requests`` times, recording each call."""
    if requests < 1:
        raise LoadOptionError("requests must be a positive int")
    if not rows:
        raise LoadOptionError("rows must not be empty")
    period = len(rows)
    block = _cycled(rows, min(chunk, requests))
    offset = 0
    previous = clock()
    recorder.start_ns = previous
    remaining = requests
    while remaining:
        count = min(chunk, remaining)
        ends = array("q")
        append = ends.append
        for row in block[offset : offset + count]:
            predict_row(row)
            append(clock())
        offset = (offset + count) % period
        flags = np.full(count, OK_FLAGS, dtype=np.int64)
        predictions = np.ones(count, dtype=np.int64)
        previous = record_back_to_back(recorder, ends, previous, flags, predictions)
        recorder.fold(now_ns=previous)  # close finished seconds of the per-second series
        remaining -= count
    recorder.finish()


class TightHarness:
    """``servelab run --target inprocess --loop tight``: the model called directly, back to back,
    one timestamp per call — what the harness costs when nothing else does (no request parsing,
    no JSON; each answer is checked to be one finite prediction, failures are ``model_error``).
    Same face as ``Harness`` (``run``, ``stop``, ``recorder``, ``stats``); it yields to the event
    loop after every chunk so signals and progress ticks still land, and stops on the request
    count or the duration, whichever comes first, checked per chunk."""

    def __init__(
        self,
        model: Model,
        rows: Sequence[Sequence[float]],
        plan: LoadPlan,
        *,
        on_tick: Callable[[Recorder, RunStats], None] | None = None,
        on_measure_start: Callable[[], None] | None = None,
        chunk: int = 1 << 14,
        tick_s: float = 1.0,
        clock: Callable[[], int] = time.perf_counter_ns,
        start_gate: StartGate | None = None,
    ) -> None:
        if plan.mode != "closed" or plan.concurrency != 1 or plan.think_time_s or plan.warmup_s:
            raise LoadOptionError(
                "--loop tight runs one back-to-back caller: use --concurrency 1, "
                "no --rate, --think-time or --warmup"
            )
        if not rows:
            raise LoadOptionError("rows must not be empty")
        self.model = model
        self.rows = rows
        self.plan = plan
        self.on_tick = on_tick
        self.on_measure_start = on_measure_start
        self.chunk = chunk
        self.clock = clock
        self.tick_ns = int(tick_s * 1e9)
        self.recorder = Recorder(fold_every=1 << 62)  # folded per chunk, below
        self.stats = RunStats()
        self.start_gate = start_gate  # the coordinated start of --processes (harness.StartGate)
        self._stopped = False

    def stop(self) -> None:
        self.stats.interrupted = True
        self._stopped = True

    async def run(self) -> Recorder:
        predict = self.model.predict
        clock = self.clock
        recorder = self.recorder
        failed_code = recorder.error_code("model_error")
        period = len(self.rows)
        block = _cycled(self.rows, self.chunk)
        offset = 0
        remaining = self.plan.requests if self.plan.requests is not None else 1 << 62
        start_ns = await self._started()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        previous = clock()
        # the common start: every process's seconds count from it (the first call from now)
        recorder.start_ns = previous if start_ns is None else start_ns
        duration_ns = int(self.plan.duration_s * 1e9) if self.plan.duration_s else None
        end_ns = None if duration_ns is None else recorder.start_ns + duration_ns
        next_tick_ns = previous + self.tick_ns
        if self.on_measure_start is not None:
            self.on_measure_start()
        while remaining and not self._stopped:
            count = min(self.chunk, remaining)
            ends, bad = array("q"), array("q")
            append = ends.append
            for index, row in enumerate(block[offset : offset + count]):
                try:
                    (value,) = predict([row])
                    if not math.isfinite(value):
                        bad.append(index)
                except Exception:  # a model that raised answers nothing: a failure, go on
                    bad.append(index)
                append(clock())
            offset = (offset + count) % period
            previous = self._fold(ends, bad, previous, failed_code)
            remaining -= count
            if end_ns is not None and previous >= end_ns:
                break
            if previous >= next_tick_ns:
                next_tick_ns = previous + self.tick_ns
                recorder.fold(now_ns=previous)
                if self.on_tick is not None:
                    self.on_tick(recorder, self.stats)
            await asyncio.sleep(0)  # signals (stop) and other tasks get their turn
        self.stats.measure_start_ns = recorder.start_ns
        self.stats.measure_end_ns = previous
        self.stats.generator_cpu_s = time.process_time() - cpu_before
        self.stats.wall_s = time.perf_counter() - wall_before
        recorder.finish()
        return recorder

    async def _started(self) -> int | None:
        """Wait for the gate's instant, if there is a gate (``None``: start now)."""
        if self.start_gate is None:
            return None
        start_ns = await self.start_gate()
        if start_ns is None:
            self.stop()
            return None
        clock = self.clock
        delay_s = (start_ns - clock()) / 1e9
        if delay_s > SPIN_S:
            await asyncio.sleep(delay_s - SPIN_S)
        while clock() < start_ns:  # the last stretch spun: timers may fire a ms late
            pass
        return start_ns

    def _fold(self, ends: array[int], bad: array[int], previous: int, failed_code: int) -> int:
        flags = np.full(len(ends), OK_FLAGS, dtype=np.int64)
        predictions = np.ones(len(ends), dtype=np.int64)
        if bad:
            failed = np.frombuffer(bad, dtype=np.int64)
            flags[failed] = encode_flags(Outcome.FAILURE, failed_code)  # schema not checked
            predictions[failed] = 0
        return record_back_to_back(self.recorder, ends, previous, flags, predictions)
