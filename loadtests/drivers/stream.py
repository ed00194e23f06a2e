"""The stream driver: one request is one event through an in-process ``StreamConsumer``.

The streaming target has no server to call: ``servelab stream`` is a consumer reading JSON lines
from a file or stdin. The driver runs that same consumer in this process and ``submit``s each
payload as one event, so ``concurrency`` N closed-loop workers (or an open-loop schedule) are N
producers feeding one consumer, which micro-batches their events by ``batch_size`` rows and
``window_ms`` — one model call per batch. The latency the harness measures around ``send`` is
the per-event latency a producer sees: admission (waiting while the queue is full), the batching
window, the model call, and the answer.

**Events are JSON lines.** ``send`` hands the consumer the payload body encoded as a JSON line,
as ``servelab stream`` reads it, so size check and JSON decoding are in the measured time. The
encoding is the producer's work, not the target's: it is done once per pooled payload object and
memoised, so the measured time does not carry it. The sink's encoding of answers is left out,
as the answer is handed over as an object.

**Judging.** A canonical answer is judged by ``judge_answer`` (schema and prediction count); an
error line for a bad event is a rejection (an expected one for a deliberately invalid payload),
an error line with ``model_error`` is a failure of that class.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable
from typing import Any, Final

from loadtests.drivers.base import DriverBase, Reply, WireView, judge_answer, p50_p99
from loadtests.engine.clock import clock_for_running_loop
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from targets.batching import BatchingConfig
from targets.errors import ModelFailure
from targets.models import Model
from targets.spec import DEFAULT_MODEL_SPEC, load_model
from targets.streaming import StreamConsumer

# The ``servelab stream`` command's defaults, so a run measures what the command would do.
DEFAULT_BATCH_SIZE: Final = 32
DEFAULT_WINDOW_MS: Final = 5.0
DEFAULT_QUEUE_SIZE: Final = 1024
# JSON lines memoised per payload object; the pool is ``PayloadSpec.distinct`` objects (times
# api and validity variants), so this bound is only hit by callers building a payload per send.
MAX_MEMOISED_LINES: Final = 1 << 16


class StreamDriver(DriverBase):
    """Drives one ``StreamConsumer``; see the module docstring.

    ``model``: a ``Model`` or a ``--model`` SPEC (loaded here, so a bad SPEC fails before any
    load starts). ``clock`` (seconds) times the consumer's own per-event latencies; by default
    the harness's clock for the running loop (virtual time on a ``VirtualTimeLoop``), taken in
    ``open``. ``bytes_sent`` counts the JSON lines handed to the consumer; ``bytes_received``
    stays 0 (answers are objects, never encoded).
    """

    transport = "stream"
    in_process = True
    wire: WireView = "stamped"  # when the event is enqueued to the consumer, past backpressure

    def __init__(
        self,
        model: Model | str = DEFAULT_MODEL_SPEC,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        window_ms: float = DEFAULT_WINDOW_MS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise LoadOptionError(f"batch_size must be a positive int, got {batch_size!r}")
        if not (math.isfinite(window_ms) and 0 <= window_ms <= 60_000):
            raise LoadOptionError(f"window_ms must be between 0 and 60000 ms, got {window_ms!r}")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise LoadOptionError(f"queue_size must be a positive int, got {queue_size!r}")
        self.model = load_model(model) if isinstance(model, str) else model
        self.config = BatchingConfig(
            max_batch_rows=batch_size, window_s=window_ms / 1e3, queue_size=queue_size
        )
        super().__init__()
        self.batch_size, self.window_ms = batch_size, window_ms
        self._clock = clock
        self._consumer: StreamConsumer | None = None  # kept after close, for extra()
        self._accepting = False
        self._lines: dict[int, tuple[Payload, bytes]] = {}
        self._latency_ms = array("d")  # the consumer's own figure, from each answer's metadata
        self._queue_depth_max = 0
        self._full_arrivals = 0
        self._base = (0, 0, 0, 0, 0)  # consumer counters at the measure start
        self._epoch = 0  # bumped at the measure start: sends from before it are warm-up

    def _counters(self) -> tuple[int, int, int, int, int]:
        consumer = self._consumer
        if consumer is None:
            return 0, 0, 0, 0, 0
        batcher = consumer.batcher
        return consumer.events, consumer.bad, consumer.failed, batcher.batches, batcher.batched_rows

    def mark_measure_start(self) -> None:
        """Forget what warm-up events added, so ``extra()`` covers the measured window. Chain it
        into the harness's ``on_measure_start``. An event belongs to the window it was sent in,
        as the harness files a request by its start: one in flight at that instant was counted
        (and batched) as warm-up, and its latency sample is dropped when it ends."""
        self._epoch += 1
        self._base = self._counters()
        self._latency_ms = array("d")
        self._queue_depth_max = 0
        self._full_arrivals = 0

    async def open(self) -> None:
        if self._consumer is None:
            clock = self._clock
            if clock is None:
                now_ns = clock_for_running_loop().now_ns

                def clock() -> float:
                    return now_ns() / 1e9

            self._consumer = StreamConsumer(self.model, config=self.config, clock=clock)
        self._consumer.start()
        self._accepting = True

    def _line(self, payload: Payload) -> bytes:
        # The entry keeps the payload alive, so its id cannot be reused while memoised.
        entry = self._lines.get(id(payload))
        if entry is None:
            if len(self._lines) >= MAX_MEMOISED_LINES:
                self._lines.clear()
            entry = self._lines[id(payload)] = (payload, payload.json_bytes())
        return entry[1]

    async def send(self, payload: Payload) -> Reply:
        consumer = self._consumer
        if consumer is None or not self._accepting:
            raise RuntimeError("StreamDriver.send() outside open() ... close()")
        line = self._line(payload)
        epoch = self._epoch
        # The depth an arriving event finds: a full queue means it waits (backpressure).
        depth = consumer.batcher.queued
        self._queue_depth_max = max(self._queue_depth_max, depth)
        if depth >= self.config.queue_size:
            self._full_arrivals += 1
        self.bytes_sent += len(line)
        try:
            answer = await consumer.submit(line, on_admitted=self.stamps.stamp)
        except Exception as exc:  # the consumer itself blew up (submit reports the rest)
            return Reply.failure(f"stream_{type(exc).__name__}")
        error = answer.get("error")
        if error is None:
            metadata = answer.get("metadata")
            latency_ms = metadata.get("latency_ms") if isinstance(metadata, dict) else None
            if isinstance(latency_ms, float | int) and epoch == self._epoch:
                self._latency_ms.append(latency_ms)
            return judge_answer(payload, True, answer, False)
        if isinstance(error, dict) and error.get("code") == ModelFailure.code:
            return Reply.failure(ModelFailure.code)
        return judge_answer(payload, False, None, True)  # the event was refused as bad

    async def close(self) -> None:
        """Stop accepting, answer the events still queued, then stop the consumer's batcher."""
        self._accepting = False
        if self._consumer is not None:
            await self._consumer.stop()

    def extra(self) -> dict[str, Any]:
        """Stream figures for the result file's ``extra`` block (since ``mark_measure_start``).

        ``events``/``bad_events``/``failed_events``: what the consumer counted; ``batches``:
        model calls; ``mean_batch_events``: events per model call (the micro-batching achieved),
        ``mean_batch_rows``: rows per model call (differs with multi-row v2 events);
        ``queue_depth_max``: the deepest batcher queue an arriving event found, and
        ``queue_full_arrivals``: how many found it full and waited; ``consumer_latency_ms``: how
        many successful events the consumer timed itself, and p50/p99 of those per-event
        latencies (``None`` without samples).
        """
        now = self._counters()
        events, bad, failed, batches, batched_rows = (
            a - b for a, b in zip(now, self._base, strict=True)
        )
        p50_ms, p99_ms = p50_p99(self._latency_ms)
        return {
            "batch_size": self.config.max_batch_rows,
            "window_ms": self.window_ms,
            "queue_size": self.config.queue_size,
            "events": events,
            "bad_events": bad,
            "failed_events": failed,
            "batches": batches,
            "batched_rows": batched_rows,
            "mean_batch_events": (events - bad) / batches if batches else 0.0,
            "mean_batch_rows": batched_rows / batches if batches else 0.0,
            "queue_depth_max": self._queue_depth_max,
            "queue_full_arrivals": self._full_arrivals,
            "consumer_latency_ms": {"count": len(self._latency_ms), "p50": p50_ms, "p99": p99_ms},
        }
