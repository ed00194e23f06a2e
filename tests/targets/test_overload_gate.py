"""The admission gate alone: the in-flight bound, the FIFO queue, shedding and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from targets.admission import AdmissionGate
from targets.errors import Overloaded, ServelabError

STEP_TIMEOUT_S = 5.0  # bounds every wait; never reached when things work


async def wait_until(condition: Callable[[], bool], timeout_s: float = STEP_TIMEOUT_S) -> None:
    """Poll ``condition`` between event-loop turns; fail if it does not hold in time."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.001)


async def test_admits_up_to_the_bound_queues_up_to_the_queue_and_sheds_the_rest() -> None:
    gate = AdmissionGate(2, 1, retry_after_s=3)
    await gate.acquire()
    await gate.acquire()
    queued = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 1)
    with pytest.raises(Overloaded) as caught:
        await gate.acquire()
    assert caught.value.retry_after_s == 3
    assert caught.value.to_body()["error"] == {
        "code": "overloaded",
        "message": caught.value.message,
    }
    assert (gate.in_flight, gate.waiting, gate.shed) == (2, 1, 1)
    gate.release()  # the slot goes to the waiter, not back to the pool
    await asyncio.wait_for(queued, STEP_TIMEOUT_S)
    assert (gate.in_flight, gate.waiting) == (2, 0)
    gate.release()
    gate.release()
    assert gate.in_flight == 0


async def test_a_freed_slot_goes_to_the_oldest_waiter_not_a_newcomer() -> None:
    gate = AdmissionGate(1, 2)
    order: list[str] = []

    async def take(name: str) -> None:
        async with gate.admit():
            order.append(name)

    await gate.acquire()
    first = asyncio.create_task(take("first"))
    await wait_until(lambda: gate.waiting == 1)
    second = asyncio.create_task(take("second"))
    await wait_until(lambda: gate.waiting == 2)
    gate.release()
    await asyncio.wait_for(asyncio.gather(first, second), STEP_TIMEOUT_S)
    assert order == ["first", "second"]
    assert (gate.in_flight, gate.waiting) == (0, 0)


async def test_a_cancelled_waiter_frees_its_queue_place() -> None:
    gate = AdmissionGate(1, 1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    gate.release()
    assert gate.in_flight == 0


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_the_slot_on() -> None:
    gate = AdmissionGate(1, 2)
    await gate.acquire()
    doomed = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 1)
    heir = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 2)
    gate.release()  # hands the slot to ``doomed``...
    doomed.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await asyncio.wait_for(heir, STEP_TIMEOUT_S)
    assert (gate.in_flight, gate.waiting) == (1, 0)


async def test_a_waiter_cancelled_before_release_is_skipped() -> None:
    gate = AdmissionGate(1, 2)
    await gate.acquire()
    doomed = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 1)
    heir = asyncio.create_task(gate.acquire())
    await wait_until(lambda: gate.waiting == 2)
    doomed.cancel()  # its future is cancelled now; release must skip it
    gate.release()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await asyncio.wait_for(heir, STEP_TIMEOUT_S)
    assert (gate.in_flight, gate.waiting) == (1, 0)


async def test_zero_queue_sheds_as_soon_as_every_slot_is_held() -> None:
    gate = AdmissionGate(1)
    async with gate.admit():
        with pytest.raises(Overloaded):
            async with gate.admit():
                pytest.fail("entered past the bound")
    assert gate.in_flight == 0


async def test_unbounded_gate_never_sheds() -> None:
    gate = AdmissionGate.unbounded()
    for _ in range(1000):
        await gate.acquire()
    assert (gate.in_flight, gate.shed) == (1000, 0)


@pytest.mark.parametrize(
    ("max_in_flight", "max_queue", "retry_after_s", "culprit"),
    [(0, 0, 1, "max_in_flight"), (1, -1, 1, "max_queue"), (1, 0, -1, "retry_after_s")],
)
def test_bad_bounds_name_the_argument(
    max_in_flight: int, max_queue: int, retry_after_s: int, culprit: str
) -> None:
    with pytest.raises(ValueError, match=culprit):
        AdmissionGate(max_in_flight, max_queue, retry_after_s=retry_after_s)


def test_overloaded_is_neither_a_client_error_nor_a_model_failure() -> None:
    from targets.errors import ModelFailure, RequestError

    assert issubclass(Overloaded, ServelabError)
    assert not issubclass(Overloaded, RequestError | ModelFailure)
