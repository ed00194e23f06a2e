"""Micro-batching for event-driven inference. Stdlib only.

Requests queue up (bounded: a full queue makes ``submit`` wait, which is the backpressure a
producer feels); a single consumer takes the first waiting request, gathers more until the batch
holds ``max_batch_rows`` rows or ``window_s`` has passed since that first request, runs the model
once on all rows, and resolves each request's future with its own canonical response. Futures
resolve in submission order, so a caller awaiting them in order emits responses in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from targets.errors import ModelFailure
from targets.schema import PredictRequest
from targets.service import PredictionService


@dataclass(frozen=True, slots=True)
class BatchingConfig:
    max_batch_rows: int = 32
    window_s: float = 0.002
    queue_size: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1:
            raise ValueError("batch size must be a positive int")
        if not 0 <= self.window_s <= 60:
            raise ValueError("window must be between 0 and 60 s")
        if self.queue_size < 1:
            raise ValueError("queue size must be a positive int")


_Item = tuple[PredictRequest, "asyncio.Future[dict[str, Any]]"]


class MicroBatcher:
    """Groups requests into model calls by size and time window; see the module docstring."""

    def __init__(self, service: PredictionService, config: BatchingConfig | None = None) -> None:
        self.service = service
        self.config = config or BatchingConfig()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(self.config.queue_size)
        self._consumer: asyncio.Task[None] | None = None
        self.batches = 0
        self.batched_rows = 0

    async def __aenter__(self) -> MicroBatcher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        if self._consumer is None:
            self._consumer = asyncio.get_running_loop().create_task(self._consume())

    async def stop(self) -> None:
        """Finish what is queued, then stop the consumer."""
        if self._consumer is None:
            return
        await self._queue.join()
        self._consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._consumer
        self._consumer = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    async def submit(self, request: PredictRequest) -> asyncio.Future[dict[str, Any]]:
        """Queue ``request`` (waiting while the queue is full); the future holds its response."""
        if self._consumer is None:
            raise RuntimeError("MicroBatcher.submit() before start()")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return future

    async def _gather(self) -> list[_Item]:
        first = await self._queue.get()
        batch = [first]
        rows = len(first[0].rows)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.window_s
        while rows < self.config.max_batch_rows:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                item = self._queue.get_nowait()
            batch.append(item)
            rows += len(item[0].rows)
        return batch

    async def _consume(self) -> None:
        while True:
            batch = await self._gather()
            try:
                await self._run(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run(self, batch: list[_Item]) -> None:
        all_rows = [row for request, _ in batch for row in request.rows]
        self.batches += 1
        self.batched_rows += len(all_rows)
        try:
            predictions = await self.service.model.predict_async(all_rows)
            if len(predictions) != len(all_rows):
                raise ValueError(f"{len(predictions)} predictions for {len(all_rows)} rows")
        except Exception as exc:
            failure = ModelFailure(f"model {self.service.model.name} failed: {type(exc).__name__}")
            failure.__cause__ = exc
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        start = 0
        for request, future in batch:
            end = start + len(request.rows)
            if not future.done():
                future.set_result(self.service.respond(request, predictions[start:end]))
            start = end
