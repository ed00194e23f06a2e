"""The ``Driver`` protocol every transport implements, and an in-memory fake for tests.

``send`` reports, never raises, for anything the target or the network did: it returns
``(outcome, error_class, predictions, schema_ok)`` — a plain tuple because it is on the hot path
— and translates its transport's exceptions into error classes at that one boundary, as Locust
reports outcomes with ``events.request.fire(exception=...)`` instead of raising.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable
from typing import Protocol

import numpy as np
import orjson

from loadtests.records import Outcome
from loadtests.workload import Payload
from targets.schema import response_problem

Reply = tuple[int, str | None, int, bool]  # outcome, error class, predictions, schema_ok
OK_REPLY_SCHEMA_BAD: str = "schema"


class Driver(Protocol):
    """open / send / close. A driver may also offer ``extra() -> dict`` with transport-specific
    figures for the result file's ``extra`` block (first-response time, rows/s, cache hits...)."""

    transport: str
    bytes_sent: int
    bytes_received: int

    async def open(self) -> None: ...

    async def send(self, payload: Payload) -> Reply: ...

    async def close(self) -> None: ...


def judge_answer(payload: Payload, status_ok: bool, body: object, rejected: bool) -> Reply:
    """The common verdict on an answer, whatever the transport.

    ``status_ok``: the transport said success (HTTP 200, gRPC OK); ``rejected``: it said the
    client's request was invalid (4xx / INVALID_ARGUMENT). A deliberately invalid payload that is
    rejected is an expected rejection; a valid one rejected is a failure; a success whose body
    misses the canonical contract is a ``schema`` failure.
    """
    if not payload.valid:
        if rejected:
            return Outcome.EXPECTED_REJECTION, None, 0, True
        return Outcome.FAILURE, "accepted_invalid", 0, False
    if not status_ok:
        return Outcome.FAILURE, "rejected" if rejected else "error", 0, False
    problem = response_problem(body, payload.expected_predictions)
    if problem is not None:
        return Outcome.FAILURE, OK_REPLY_SCHEMA_BAD, 0, False
    return Outcome.OK, None, payload.expected_predictions, True


def judge_http(payload: Payload, status: int, body: bytes | None) -> Reply:
    """An HTTP answer, classified alike by every HTTP client (the REST drivers, Locust's
    ``RestUser``): 200 → the canonical check, 4xx → expected rejection for an invalid payload,
    anything else ``http_<status>``."""
    if status == 200:
        answer: object
        try:
            answer = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            answer = None
        return judge_answer(payload, True, answer, False)
    if 400 <= status < 500:
        reply = judge_answer(payload, False, None, True)
        if reply[0] != Outcome.FAILURE:
            return reply
    return Outcome.FAILURE, f"http_{status}", 0, False


class FakeDriver:
    """In-memory driver: answers after ``service_time_s(payload)`` (``asyncio.sleep``, so a
    virtual clock drives it) with ``answer(payload)`` — for tests of the harness itself."""

    transport = "fake"

    def __init__(
        self,
        service_time_s: Callable[[Payload], float],
        answer: Callable[[Payload], Reply] | None = None,
    ) -> None:
        self.service_time_s = service_time_s
        self.answer = answer or (lambda p: (Outcome.OK, None, p.expected_predictions, True))
        self.bytes_sent = 0
        self.bytes_received = 0
        self.sent = 0
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def send(self, payload: Payload) -> Reply:
        self.sent += 1
        delay_s = self.service_time_s(payload)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return self.answer(payload)

    async def close(self) -> None:
        self.closed = True


def p50_p99(
    samples: array[int] | array[float], scale: float = 1.0
) -> tuple[float | None, float | None]:
    """Median and 99th percentile of a driver's raw samples, times ``scale``, as sample values
    (``inverted_cdf``, as the recorder's per-second series); ``None`` for no samples. The numpy
    view is dropped on return, so the array can grow again (an exported buffer cannot resize)."""
    if not samples:
        return None, None
    dtype = np.int64 if samples.typecode == "q" else np.float64
    p50, p99 = np.percentile(np.frombuffer(samples, dtype=dtype), [50, 99], method="inverted_cdf")
    return float(p50) * scale, float(p99) * scale
