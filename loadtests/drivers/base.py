"""The ``Driver`` protocol every transport implements, and an in-memory fake for tests.

``send`` reports, never raises, for anything the target or the network did: it returns a
``Reply`` (outcome, error_class, predictions, schema_ok) — a ``NamedTuple``, so still a tuple on
the hot path — and translates its transport's exceptions into error classes at that one
boundary, as Locust reports outcomes with ``events.request.fire(exception=...)`` instead of
raising.

**When the bytes left.** The harness knows when it *dispatched* a request; only the driver knows
when the request was handed to the transport (*on wire*), after any wait for a free connection,
stream, write slot or worker. A driver says which of three it can tell (``wire``):

- ``"stamped"``: it calls ``stamps.stamp()`` at that instant, in the sending task;
- ``"at_dispatch"``: nothing queues inside it (in-process calls): on wire is the dispatch;
- ``"hidden"``: a library hides the wait (grpc core queues a call that finds no free HTTP/2
  stream): the instant is absent, and so is the request's client-queue time.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from array import array
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np

from loadtests.engine.driver import (
    EXPECTED_REJECTION,
    MAX_SHARED_REPLIES,
    ColdStarts,
    Driver,
    Reply,
    ReplyFields,
    WireStamps,
    WireView,
)
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.servelab import OK_REPLY_SCHEMA_BAD, judge_answer, judge_http

__all__ = [
    "EXPECTED_REJECTION",
    "MAX_SHARED_REPLIES",
    "OK_REPLY_SCHEMA_BAD",
    "ColdStarts",
    "Driver",
    "DriverBase",
    "FakeDriver",
    "Reply",
    "ReplyFields",
    "WireStamps",
    "WireView",
    "judge_answer",
    "judge_http",
    "p50_p99",
]


class DriverBase(Driver):
    """The base of every driver, with what a run reads of one besides ``Driver``, defaulted:

    - ``in_process``: the target runs in this process (no socket between them), so the run's
      CPU is the target's cost and the generator's own CPU is no verdict rule;
    - ``client``: which client library measured, for the result's ``extra.client`` (``None``:
      the transport has one);
    - ``extra()``: transport-specific figures for the result's ``extra`` block (first-response
      time, rows/s, cache hits...);
    - ``mark_measure_start()``: the warm-up ended; a driver that counts for ``extra()`` forgets
      what it counted so far;
    - ``prepare(payloads)``: the run's distinct payloads, before the load — a driver that
      serializes each payload once does it here, outside the measured CPU, as a bare client
      builds its requests before its timer starts.

    A subclass sets ``transport`` and ``wire``, implements ``send``, and calls
    ``super().__init__()`` (byte counters at 0, its own ``WireStamps``).
    """

    in_process: ClassVar[bool] = False
    client: ClassVar[str | None] = None
    # The batching the driver used, for the result's ``run`` block (``None``: it does not batch,
    # and the run records what was asked).
    batch_size: int | None = None
    window_ms: float | None = None
    cold_starts: ColdStarts | None = None  # set by a driver that tells cold starts apart

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.bytes_received = 0
        self.stamps = WireStamps()

    async def open(self) -> None:
        return None

    @abstractmethod
    async def send(self, payload: Payload) -> Reply: ...

    async def close(self) -> None:
        return None

    def extra(self) -> dict[str, Any]:
        return {}

    def mark_measure_start(self) -> None:
        return None

    def prepare(self, payloads: Iterable[Payload]) -> None:
        return None


class FakeDriver(DriverBase):
    """In-memory driver: answers after ``service_time_s(payload)`` (``asyncio.sleep``, so a
    virtual clock drives it) with ``answer(payload)`` (a ``Reply``, or the same four fields as a
    plain tuple) — for tests of the harness itself.
    With ``connections=N`` a request first waits for one of N slots, as a connection pool
    makes it wait, and is stamped on the wire when it gets one."""

    transport = "fake"
    in_process = True

    def __init__(
        self,
        service_time_s: Callable[[Payload], float],
        answer: Callable[[Payload], ReplyFields] | None = None,
        *,
        connections: int | None = None,
    ) -> None:
        if connections is not None and connections < 1:
            raise LoadOptionError("connections must be a positive int")
        super().__init__()
        self.service_time_s = service_time_s
        self.answer = answer or (lambda p: Reply.ok(p.expected_predictions))
        self.sent = 0
        self.opened = self.closed = False
        self.wire: WireView = "at_dispatch" if connections is None else "stamped"
        self._slots = None if connections is None else asyncio.Semaphore(connections)

    async def open(self) -> None:
        self.opened = True

    async def send(self, payload: Payload) -> Reply:
        self.sent += 1
        if self._slots is None:
            return await self._answer(payload)
        async with self._slots:
            self.stamps.stamp()
            return await self._answer(payload)

    async def _answer(self, payload: Payload) -> Reply:
        delay_s = self.service_time_s(payload)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        answer = self.answer(payload)
        return answer if isinstance(answer, Reply) else Reply(*answer)

    async def close(self) -> None:
        self.closed = True


def p50_p99(
    samples: array[int] | array[float], scale: float = 1.0
) -> tuple[float | None, float | None]:
    """Median and 99th percentile of a driver's raw samples, times ``scale``, as sample values
    (numpy's ``inverted_cdf``: the k-th smallest, k = ceil(p·n/100)); ``None`` for no samples.
    Exact samples, not histogram buckets, so not ``histogram.hdr_ranks``' rule (which rounds
    p·n/100 half up): the ``extra`` figures keep the rule they were published with. The numpy
    view is dropped on return, so the array can grow again (an exported buffer cannot resize)."""
    if not samples:
        return None, None
    dtype = np.int64 if samples.typecode == "q" else np.float64
    p50, p99 = np.percentile(np.frombuffer(samples, dtype=dtype), [50, 99], method="inverted_cdf")
    return float(p50) * scale, float(p99) * scale
