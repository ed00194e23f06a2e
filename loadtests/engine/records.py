"""What is recorded about one request — the one record type every driver and Locust user emits.

On the hot path drivers do not build ``RequestRecord`` objects (a frozen dataclass costs ~880 ns):
they call ``Recorder.record(...)`` with the same fields as plain ints, which land in column
buffers. ``RequestRecord`` is what those columns mean at API boundaries (tests, Locust events,
event logs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

WIRE_UNSEEN: Final = -1  # the recorder's column value for "no on-wire instant"


class Outcome(IntEnum):
    OK = 0
    FAILURE = 1
    EXPECTED_REJECTION = 2  # a deliberately invalid payload answered 4xx / INVALID_ARGUMENT


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request. Times are ``time.perf_counter_ns``-style nanoseconds on one clock.

    Four instants: ``scheduled_ns`` the intended start (open loop: the schedule; closed loop:
    when the worker became free), ``dispatched_ns`` when the generator began it, ``wire_ns`` when
    the driver handed its bytes to the transport, after any wait for a connection, stream or
    write slot (``None`` where a library hides it), ``ended_ns`` the end. From them:

    - ``latency_ns`` = ended - intended (no coordinated omission);
    - ``service_ns`` = ended - on wire (ended - dispatched when the wire is unseen);
    - ``client_queue_ns`` = on wire - dispatched (``None`` when unseen);
    - ``send_lateness_ns`` = dispatched - intended: the generator's health.
    """

    scheduled_ns: int
    dispatched_ns: int
    ended_ns: int
    outcome: Outcome = Outcome.OK
    error_class: str | None = None
    bytes_sent: int = 0
    bytes_received: int = 0
    predictions: int = 0
    schema_ok: bool = True
    wire_ns: int | None = None
    cold_start: bool = False  # the request started the instance that served it (a function)

    def __post_init__(self) -> None:
        if not self.scheduled_ns <= self.dispatched_ns <= self.ended_ns:
            raise ValueError("times must satisfy scheduled_ns <= dispatched_ns <= ended_ns")
        if self.wire_ns is not None and not self.dispatched_ns <= self.wire_ns <= self.ended_ns:
            raise ValueError("wire_ns must lie between dispatched_ns and ended_ns")
        if self.outcome is Outcome.FAILURE and not self.error_class:
            raise ValueError("a failed request needs an error_class")

    @property
    def latency_ns(self) -> int:
        return self.ended_ns - self.scheduled_ns

    @property
    def service_ns(self) -> int:
        start_ns = self.dispatched_ns if self.wire_ns is None else self.wire_ns
        return self.ended_ns - start_ns

    @property
    def client_queue_ns(self) -> int | None:
        return None if self.wire_ns is None else self.wire_ns - self.dispatched_ns

    @property
    def send_lateness_ns(self) -> int:
        return self.dispatched_ns - self.scheduled_ns
