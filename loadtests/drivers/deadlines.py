"""Request timeouts kept by one sweeper task on the loop, instead of a timer per request.

A timer per request is the costly way on a hot path: ``asyncio.timeout`` costs ~12 µs a message,
``call_later`` ~4, and a grpc deadline (a timer in grpc core, armed and cancelled across its
threads) 3-30 µs of client CPU a call, measured against the gRPC target. ``Deadlines`` instead
keeps each request in flight in a dict, in send order — which is deadline order, as every
request has the same timeout — and a task that wakes every ``period_s`` and expires the requests
at the front that are past their deadline, stopping at the first one still in time. A request
so times out within one period of its deadline; one that ends is forgotten (a dict delete), so
what the sweep walks is what is in flight, however long the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

SWEEP_PERIOD_S: Final = 0.05

Item = TypeVar("Item", bound=Hashable)


class Deadlines(Generic[Item]):
    """``add(item)`` as a request starts and ``forget(item)`` as it ends; ``expire(item)`` is
    called, once, for an item still there past the timeout (and forgotten). ``start()`` in the
    driver's ``open``, ``stop()`` in its ``close``."""

    def __init__(
        self,
        timeout_s: float,
        *,
        expire: Callable[[Item], None],
        period_s: float = SWEEP_PERIOD_S,
    ) -> None:
        self.timeout_ns = int(timeout_s * 1e9)
        self.period_s = min(period_s, timeout_s / 4)
        self._expire = expire
        self._due: dict[Item, int] = {}
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, item: Item) -> None:
        self._due[item] = time.perf_counter_ns() + self.timeout_ns

    def forget(self, item: Item) -> None:
        self._due.pop(item, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def sweep(self, now_ns: int) -> None:
        """Expire what is past its deadline at ``now_ns``."""
        due = self._due
        late = []
        for item, deadline_ns in due.items():  # insertion order = deadline order
            if deadline_ns > now_ns:
                break
            late.append(item)
        for item in late:
            del due[item]
            self._expire(item)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            self.sweep(time.perf_counter_ns())
