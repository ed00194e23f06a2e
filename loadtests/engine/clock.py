"""Clocks for the harness: real time, or virtual time for exactly reproducible tests.

Both read the running event loop's clock, so ``asyncio.sleep`` in drivers and models (the
synthetic models wait with it) and the harness's timestamps agree. ``VirtualTimeLoop`` is an
event loop whose clock jumps to the next timer whenever nothing is ready — a discrete-event
simulation on plain asyncio: a run of an hour of simulated load takes as long as its Python
work, and the numbers are the same on every machine.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now_ns(self) -> int: ...

    async def sleep_until_ns(self, deadline_ns: int) -> None: ...


class PerfClock:
    """Real time from ``perf_counter_ns``. (uvloop's ``loop.time()`` ticks in whole ms, far too
    coarse for latency.) Sleeps coarsely on the loop's timers, then yields until the deadline, so
    open-loop sends start within a fraction of a ms of their schedule."""

    SPIN_S = 0.0015  # loop timers may fire up to ~1 ms late: hand over to yielding before that

    def __init__(self) -> None:
        self.now_ns = time.perf_counter_ns

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        now_ns = time.perf_counter_ns
        delay_s = (deadline_ns - now_ns()) / 1e9
        if delay_s > self.SPIN_S:
            await asyncio.sleep(delay_s - self.SPIN_S)
        while now_ns() < deadline_ns:
            await asyncio.sleep(0)


class LoopClock:
    """The running loop's own clock in ns — the clock of a ``VirtualTimeLoop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._time = self._loop.time

    def now_ns(self) -> int:
        return int(self._time() * 1e9)

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        delay_s = (deadline_ns - self.now_ns()) / 1e9
        if delay_s > 0:
            await asyncio.sleep(delay_s)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """Event loop on virtual time: when no callback is ready, time jumps to the next timer.

    For tests and simulations of in-process targets only; real sockets would see time stand
    still while they wait.
    """

    virtual_time = True  # read by targets.models.sleep_at_least: this loop's time() is the clock

    def __init__(self) -> None:
        super().__init__()
        self._virtual_s = 0.0

    def time(self) -> float:
        return self._virtual_s

    def _run_once(self) -> None:
        ready = self._ready  # type: ignore[attr-defined]
        scheduled = self._scheduled  # type: ignore[attr-defined]
        while scheduled and scheduled[0]._cancelled:  # as BaseEventLoop._run_once does
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
            heapq.heappop(scheduled)._scheduled = False
        if not ready and scheduled:
            self._virtual_s = max(self._virtual_s, scheduled[0]._when)
        super()._run_once()  # type: ignore[misc]


def clock_for_running_loop() -> Clock:
    """Virtual time on a ``VirtualTimeLoop``, real ``perf_counter`` time otherwise."""
    loop = asyncio.get_running_loop()
    return LoopClock(loop) if isinstance(loop, VirtualTimeLoop) else PerfClock()


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` to completion on a fresh ``VirtualTimeLoop``."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main())
