"""What the harness drives: the ``Driver`` protocol, the ``Reply`` a ``send`` returns, and the
per-request on-wire stamps. ``loadtests.drivers`` implements it, one module per transport
(``loadtests.drivers.base`` explains the contract and adds ``DriverBase``); the engine only
needs this much, so it imports no driver.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Literal, NamedTuple, Protocol

from loadtests.engine.records import WIRE_UNSEEN, Outcome
from loadtests.engine.workload import Payload

WireView = Literal["stamped", "at_dispatch", "hidden"]
ReplyFields = tuple[int, str | None, int, bool]  # what a ``Reply`` is, as a plain tuple
MAX_SHARED_REPLIES: Final = 4096  # error classes and prediction counts are few; bound them anyway


class Reply(NamedTuple):
    """What ``send`` says about one request: ``outcome`` (an ``Outcome`` value), the failure's
    ``error_class`` (``None`` unless it failed), the ``predictions`` answered and whether the
    answer met the canonical contract (``schema_ok``).

    Build one with ``ok`` / ``failure`` / ``expected_rejection``: they hand out shared
    instances (one per prediction count or error class, up to ``MAX_SHARED_REPLIES`` each), so
    the hot path pays a dict lookup (~70 ns), not a ``NamedTuple`` construction (~280 ns).
    """

    outcome: int
    error_class: str | None
    predictions: int
    schema_ok: bool

    @staticmethod
    def ok(predictions: int) -> Reply:
        """A success with ``predictions`` predictions, its answer checked."""
        reply = _OK_REPLIES.get(predictions)
        if reply is None:
            reply = Reply(Outcome.OK, None, predictions, True)
            if len(_OK_REPLIES) < MAX_SHARED_REPLIES:
                _OK_REPLIES[predictions] = reply
        return reply

    @staticmethod
    def failure(error_class: str) -> Reply:
        """A failure of class ``error_class`` (``timeout``, ``http_503``, ``schema`` ...)."""
        reply = _FAILURE_REPLIES.get(error_class)
        if reply is None:
            reply = Reply(Outcome.FAILURE, error_class, 0, False)
            if len(_FAILURE_REPLIES) < MAX_SHARED_REPLIES:
                _FAILURE_REPLIES[error_class] = reply
        return reply

    @staticmethod
    def expected_rejection() -> Reply:
        """A deliberately invalid payload, refused as it should be."""
        return EXPECTED_REJECTION


_OK_REPLIES: dict[int, Reply] = {}
_FAILURE_REPLIES: dict[str, Reply] = {}
EXPECTED_REJECTION: Final = Reply(Outcome.EXPECTED_REJECTION, None, 0, True)


class WireStamps:
    """On-wire instants of the requests in flight, by the task that sends each one.

    Every in-flight request runs in a task of its own (the open loop starts one per request; a
    closed-loop worker is one), so the sending task identifies the request without changing
    ``send``'s signature. ``now_ns`` is the harness's clock, set by the harness before ``open``.
    """

    __slots__ = ("_by_task", "_loop", "now_ns")

    def __init__(self) -> None:
        self._by_task: dict[object, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.now_ns = time.perf_counter_ns

    def _task(self) -> object:
        """The current task, found on the running loop (remembered: ``current_task()`` without
        a loop asks for it, and CPython checks the pid each time — a syscall per call)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            loop = self._loop = asyncio.get_running_loop()
        return asyncio.current_task(loop)

    def stamp(self, at_ns: int | None = None) -> None:
        """The current request is on the wire now (or at ``at_ns``, read on ``now_ns``'s
        clock in a worker thread)."""
        self._by_task[self._task()] = self.now_ns() if at_ns is None else at_ns

    def stamp_task(self, task: object) -> None:
        """``stamp`` for a driver that already holds the current task: one look-up fewer."""
        self._by_task[task] = self.now_ns()

    def take(self) -> int:
        """The current request's on-wire instant, forgotten once read; ``WIRE_UNSEEN`` if it
        never reached the wire (refused connection, failed before sending)."""
        return self._by_task.pop(self._task(), WIRE_UNSEEN)


class ColdStarts:
    """Which requests in flight paid a cold start (their answer said they started the instance
    that served them), by sending task, as ``WireStamps`` keeps on-wire instants. A driver that
    can tell has one (``Driver.cold_starts``); the harness then tags each request it records
    cold or warm, and the recorder keeps their latencies apart."""

    __slots__ = ("_cold",)

    def __init__(self) -> None:
        self._cold: set[object] = set()

    def mark(self) -> None:
        """The current request was a cold start."""
        self._cold.add(asyncio.current_task())

    def take(self) -> bool:
        """Whether the current request was a cold start, forgotten once read."""
        task = asyncio.current_task()
        if task in self._cold:
            self._cold.discard(task)
            return True
        return False


class Driver(Protocol):
    """open / send / close: what the harness drives. ``wire`` and ``stamps``: see the module
    docstring; ``cold_starts``: ``None`` unless the driver tells cold starts from warm answers.
    Real drivers subclass ``DriverBase``, which adds what a run reads besides."""

    transport: str
    bytes_sent: int
    bytes_received: int
    wire: WireView
    stamps: WireStamps
    cold_starts: ColdStarts | None

    async def open(self) -> None: ...

    async def send(self, payload: Payload) -> Reply: ...

    async def close(self) -> None: ...
