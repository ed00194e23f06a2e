"""Helpers the gRPC driver tests share: bounded harness runs and a target that dies mid-run.

Servers run in the test's event loop (``tests.targets.test_grpc_support.running_grpc``, which
uses ``build_server`` on 127.0.0.1 port 0). This module holds no tests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from loadtests.drivers.base import Driver, Reply
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec

SEED = 20240611
CLOSED = LoadPlan(mode="closed", concurrency=4, requests=200, duration_s=None)
OPEN = LoadPlan(mode="open", profile=RateProfile.constant(200), duration_s=1.0)
RUN_TIMEOUT_S = 60.0  # bounds every run; never reached when things work


async def run(driver: Driver, plan: LoadPlan, spec: PayloadSpec | None = None) -> Recorder:
    """One bounded harness run of ``plan`` with payloads from ``spec`` (default: all valid v1)."""
    payloads = PayloadGenerator(spec or PayloadSpec(), SEED)
    return await asyncio.wait_for(Harness(driver, payloads, plan).run(), RUN_TIMEOUT_S)


def invalid_count(spec: PayloadSpec, requests: int) -> int:
    """How many of payloads ``0..requests-1`` the generator makes invalid (a fresh generator,
    so the count does not come from anything the driver or harness touched)."""
    payloads = PayloadGenerator(spec, SEED)
    return sum(not payloads.payload(index).valid for index in range(requests))


def assert_all_answered_to_contract(recorder: Recorder, spec: PayloadSpec) -> None:
    """Zero failures, schema success 1.0, invalid payloads all expected rejections."""
    assert recorder.requests > 0
    assert recorder.failures == 0, recorder.errors
    assert recorder.errors == {}
    assert recorder.schema_ok == recorder.schema_checked == recorder.successes
    rejected = invalid_count(spec, recorder.requests)
    assert recorder.expected_rejections == rejected
    assert recorder.successes == recorder.requests - rejected
    assert recorder.bytes_sent > 0
    assert recorder.bytes_received > 0


class StopTargetAfter:
    """Delegates to ``driver``; once ``answers`` sends have returned, starts ``stop()`` (once)."""

    def __init__(self, driver: Driver, answers: int, stop: Callable[[], Awaitable[None]]) -> None:
        self.driver = driver
        self.transport = driver.transport
        self.wire = driver.wire
        self.stamps = driver.stamps
        self.cold_starts = driver.cold_starts
        self.answers = answers
        self._stop = stop
        self._answered = 0
        self.stopping: asyncio.Future[None] | None = None

    @property
    def bytes_sent(self) -> int:
        return self.driver.bytes_sent

    @bytes_sent.setter
    def bytes_sent(self, value: int) -> None:
        self.driver.bytes_sent = value

    @property
    def bytes_received(self) -> int:
        return self.driver.bytes_received

    @bytes_received.setter
    def bytes_received(self, value: int) -> None:
        self.driver.bytes_received = value

    async def open(self) -> None:
        await self.driver.open()

    async def send(self, payload: Payload) -> Reply:
        reply = await self.driver.send(payload)
        self._answered += 1
        if self._answered == self.answers:
            self.stopping = asyncio.ensure_future(self._stop())
        return reply

    async def close(self) -> None:
        await self.driver.close()


def unused_address() -> str:
    """A loopback ``HOST:PORT`` nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"
