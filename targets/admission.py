"""Admission control: a bound on in-flight work and on the queue waiting for it. Stdlib only.

An overloaded server that accepts everything grows memory and latency without limit, and every
client suffers; one that admits at most ``max_in_flight`` requests, lets at most ``max_queue``
more wait (FIFO) for a slot and refuses the rest at once (``Overloaded``: 503 / UNAVAILABLE)
keeps both flat and serves what it admits at its normal speed. The refusal costs a counter check,
so shedding stays cheap however far the offered load exceeds capacity.

The gate lives in one event loop (one per server process) and is not thread-safe. Both REST
(``AdmissionMiddleware``) and gRPC (``PredictorServicer``) use it; it sits under ``targets.rest``
only because that package was the one open for change when it was written.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from targets.errors import Overloaded

# A request costs a few KiB plus its body; 64 keeps a worker's in-flight memory small while
# letting an async (I/O-bound) model overlap 64 calls, and matches the load drivers' default
# pool of 64 connections, so a default run is never shed by a default target.
DEFAULT_MAX_IN_FLIGHT: Final = 64
# Waiting adds latency, never throughput: allowing one more round of in-flight work to wait
# absorbs bursts while capping the added queueing delay near one service time.
DEFAULT_MAX_QUEUE: Final = 64
RETRY_AFTER_S: Final = 1


class AdmissionGate:
    """At most ``max_in_flight`` holders, at most ``max_queue`` waiters; the rest ``Overloaded``.

    Slots are handed over FIFO: ``release`` gives a freed slot to the oldest waiter rather than
    back to the pool, so a newcomer can never overtake the queue.
    """

    def __init__(
        self, max_in_flight: int, max_queue: int = 0, *, retry_after_s: int = RETRY_AFTER_S
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive int, got {max_in_flight}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be a non-negative int, got {max_queue}")
        if retry_after_s < 0:
            raise ValueError(f"retry_after_s must be a non-negative int, got {retry_after_s}")
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.shed = 0  # requests refused so far
        self._waiters: deque[asyncio.Future[None]] = deque()

    @classmethod
    def unbounded(cls) -> AdmissionGate:
        """A gate that never sheds: for in-process use, where the caller bounds the load."""
        return cls(sys.maxsize)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _refuse(self) -> Overloaded:
        self.shed += 1
        return Overloaded(
            f"server overloaded: {self.in_flight} requests in flight and {self.waiting} queued "
            f"(bounds {self.max_in_flight} and {self.max_queue}); retry later",
            self.retry_after_s,
        )

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue when all are held; ``Overloaded`` when it is full."""
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise self._refuse()
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over just as we were cancelled: pass it on
            elif waiter in self._waiters:  # ``release`` may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Return a slot: to the oldest live waiter if any, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands; in_flight stays the same
                return
        self.in_flight -= 1

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """Hold a slot for the block; raises ``Overloaded`` without entering it."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()
