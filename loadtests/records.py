"""What is recorded about one request — the one record type every driver and Locust user emits.

On the hot path drivers do not build ``RequestRecord`` objects (a frozen dataclass costs ~880 ns):
they call ``Recorder.record(...)`` with the same fields as plain ints, which land in column
buffers. ``RequestRecord`` is what those columns mean at API boundaries (tests, Locust events,
event logs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Outcome(IntEnum):
    OK = 0
    FAILURE = 1
    EXPECTED_REJECTION = 2  # a deliberately invalid payload answered 4xx / INVALID_ARGUMENT


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request. Times are ``time.perf_counter_ns``-style nanoseconds on one clock.

    ``scheduled_ns`` is the intended start (open loop: the schedule; closed loop: when the worker
    became free), ``sent_ns`` the actual send, ``ended_ns`` the end. Response time from the
    intended start is ``ended_ns - scheduled_ns`` (no coordinated omission); service time is
    ``ended_ns - sent_ns``.
    """

    scheduled_ns: int
    sent_ns: int
    ended_ns: int
    outcome: Outcome = Outcome.OK
    error_class: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    predictions: int = 0
    schema_ok: bool = True

    def __post_init__(self) -> None:
        if not self.scheduled_ns <= self.sent_ns <= self.ended_ns:
            raise ValueError("times must satisfy scheduled_ns <= sent_ns <= ended_ns")
        if self.outcome is Outcome.FAILURE and not self.error_class:
            raise ValueError("a failed request needs an error_class")

    @property
    def latency_ns(self) -> int:
        return self.ended_ns - self.scheduled_ns

    @property
    def service_ns(self) -> int:
        return self.ended_ns - self.sent_ns

    @property
    def send_lateness_ns(self) -> int:
        return self.sent_ns - self.scheduled_ns
