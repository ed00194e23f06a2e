"""The streaming consumer: events in, micro-batched predictions out, in order. Stdlib only.

``run(source, sink)`` is a two-task pipeline::

    source ──► reader: parse, submit ──► MicroBatcher queue ──► one model call per batch
                  │ (in-flight entries, bounded)                        │ resolves futures
                  ▼                                                     ▼
               writer: await each entry's future in event order ──► sink

Both queues hold at most ``queue_size`` entries, so a slow model (or sink) makes the reader stop
reading: backpressure reaches the source instead of memory growing. Bad events take their place
in the in-flight queue already answered, so the output keeps the input's order. Each response
carries ``metadata.event`` (1-based) and ``metadata.latency_ms``, measured on the injected clock
from the moment the event was read to the moment it is handed to the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from array import array
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from targets.batch.report import percentile
from targets.batching import BatchingConfig, MicroBatcher
from targets.errors import MalformedRequest, ModelFailure, RequestError
from targets.models import Model
from targets.schema import ApiVersion, Limits, PredictRequest, check_body_size
from targets.service import PredictionService

TRANSPORT: Final = "stream"
EventSource = AsyncIterable[object]
EventSink = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One ``run``: counts, batching and per-event latency (successful events only — rejected
    ones answer without the model, so their latency would flatter the figures)."""

    events: int
    bad: int
    failed: int
    batches: int
    batched_rows: int
    elapsed_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float

    @property
    def mean_batch_rows(self) -> float:
        return self.batched_rows / self.batches if self.batches else 0.0


@dataclass(frozen=True, slots=True)
class _InFlight:
    """An event between being read and being emitted: its pending response, or why it is bad."""

    event: int
    read_at: float
    outcome: asyncio.Future[dict[str, Any]] | RequestError


def error_line(event: int, error: Exception) -> dict[str, Any]:
    """``{"event": n, "error": {"code", "message", "field"}}`` for a bad or failed event."""
    return {
        "event": event,
        "error": {
            "code": getattr(error, "code", "internal"),
            "message": getattr(error, "message", str(error)),
            "field": getattr(error, "field", None),
        },
    }


class StreamConsumer:
    """Micro-batched, in-order inference over a stream of events; see the module docstring.

    Use as ``async with StreamConsumer(model, config=...) as consumer:`` and then ``submit`` one
    event at a time (concurrently, as the load driver does) or ``run`` a whole source into a
    sink. ``run`` also works outside the ``async with``: it then starts and drains the batcher
    itself. ``clock`` (seconds, default ``time.perf_counter``) times the latencies.
    """

    def __init__(
        self,
        model: Model,
        *,
        config: BatchingConfig | None = None,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config or BatchingConfig()
        self.service = PredictionService(model, transport=TRANSPORT, limits=limits)
        self.batcher = MicroBatcher(self.service, self.config)
        self.clock = clock
        self.events = 0
        self.bad = 0
        self.failed = 0
        self._sequence = itertools.count(1)
        self._latencies_s = array("d")
        self._started = False

    async def __aenter__(self) -> StreamConsumer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        self.batcher.start()
        self._started = True

    async def stop(self) -> None:
        """Finish the queued events, then stop batching."""
        await self.batcher.stop()
        self._started = False

    def parse(self, body: object) -> PredictRequest:
        """Validate one event: JSON text (``bytes``/``str``) or a decoded body; a body with
        ``rows`` is v2, anything else v1. Raises a ``RequestError``."""
        if isinstance(body, bytes | bytearray | str):
            size = len(body.encode()) if isinstance(body, str) else len(body)
            check_body_size(size, self.service.limits)
            # JSONDecodeError, UnicodeDecodeError for bad bytes, RecursionError for deep nesting
            try:
                body = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise MalformedRequest(f"event is not valid JSON: {exc}") from None
        api: ApiVersion = "v2" if isinstance(body, dict) and "rows" in body else "v1"
        return self.service.parse(body, api)

    async def submit(
        self, body: object, *, on_admitted: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """One event end to end: its canonical response (with ``metadata.event`` and
        ``metadata.latency_ms``) or its error line. Waits while the batcher's queue is full;
        ``on_admitted`` is called once the event is in the queue (past that wait)."""
        item = await self._admit(body)
        if on_admitted is not None:
            on_admitted()
        return await self._complete(item)

    async def _admit(self, body: object) -> _InFlight:
        read_at = self.clock()
        event = next(self._sequence)
        self.events += 1
        try:
            request = self.parse(body)
        except RequestError as exc:
            return _InFlight(event, read_at, exc)
        return _InFlight(event, read_at, await self.batcher.submit(request))

    async def _complete(self, item: _InFlight) -> dict[str, Any]:
        if isinstance(item.outcome, RequestError):
            self.bad += 1
            return error_line(item.event, item.outcome)
        try:
            response = await item.outcome
        except ModelFailure as exc:  # one failing batch is flagged in place; the stream goes on
            self.failed += 1
            return error_line(item.event, exc)
        latency_s = self.clock() - item.read_at
        self._latencies_s.append(latency_s)
        metadata = response["metadata"]
        metadata["event"] = item.event
        metadata["latency_ms"] = round(latency_s * 1e3, 3)
        return response

    @contextlib.asynccontextmanager
    async def _batching(self) -> AsyncIterator[None]:
        if self._started:
            yield
            return
        self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _read(self, source: EventSource, entries: asyncio.Queue[_InFlight | None]) -> None:
        iterator = aiter(source)
        try:
            async for body in iterator:
                await entries.put(await self._admit(body))
        except asyncio.CancelledError:
            raise
        except BaseException:
            await entries.put(None)  # wake the writer, then let run() raise the source's error
            raise
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        await entries.put(None)

    async def run(self, source: EventSource, sink: EventSink) -> StreamReport:
        """Consume ``source`` to its end, emitting one object per event to ``sink``, in order."""
        started = self.clock()
        events, bad, failed = self.events, self.bad, self.failed
        batches, rows = self.batcher.batches, self.batcher.batched_rows
        first_latency = len(self._latencies_s)
        async with self._batching():
            entries: asyncio.Queue[_InFlight | None] = asyncio.Queue(self.config.queue_size)
            reader = asyncio.create_task(self._read(source, entries))
            try:
                while (item := await entries.get()) is not None:
                    await sink(await self._complete(item))
            except BaseException:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                raise
            await reader  # re-raises what the source raised, if anything
        latencies = self._latencies_s[first_latency:]
        return StreamReport(
            events=self.events - events,
            bad=self.bad - bad,
            failed=self.failed - failed,
            batches=self.batcher.batches - batches,
            batched_rows=self.batcher.batched_rows - rows,
            elapsed_s=self.clock() - started,
            latency_p50_ms=percentile(latencies, 0.5) * 1e3,
            latency_p99_ms=percentile(latencies, 0.99) * 1e3,
            latency_max_ms=percentile(latencies, 1.0) * 1e3,
        )
