"""The harness: drives any ``Driver`` with a workload and records every request.

Closed loop: ``concurrency`` workers, each sending its next request when the last one ended
(plus think time). Open loop: requests start on a schedule whatever the target does, and each
request's latency is measured from its *scheduled* start, so a stalled target is charged for
the queue it causes (no coordinated omission). Warm-up requests run but are not recorded; the
run is bounded by duration and/or request count and always stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from loadtests.engine.clock import Clock, clock_for_running_loop
from loadtests.engine.driver import Driver, WireView
from loadtests.engine.histogram import IntArray
from loadtests.engine.parts import WHOLE, SchedulePart, partitioned
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import WIRE_UNSEEN, Outcome
from loadtests.engine.schedule import Arrival, RateProfile, open_loop_offsets_ns
from loadtests.engine.workload import PayloadGenerator
from loadtests.errors import LoadOptionError

Mode = Literal["closed", "open"]
CUT_BY_GRACE = "timeout"  # still in flight when the grace after the run ran out
DEFAULT_GRACE_S = 5.0
SLEEP_SLICE_NS = 50_000_000  # the open loop sleeps at most this long before checking stop()
FOLD_EVERY = 1024
# Called once the driver is open: the instant (on the harness's clock) the run starts at, shared
# by every generator process of a run (``servelab run --processes``); ``None``: stop unstarted.
StartGate = Callable[[], Awaitable[int | None]]


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """What load to apply and for how long (``duration_s`` and/or ``requests`` bound the run)."""

    mode: Mode = "closed"
    concurrency: int = 1
    think_time_s: float = 0.0
    profile: RateProfile | None = None
    arrival: Arrival = "constant"
    trace_offsets_ns: IntArray | None = None
    duration_s: float | None = 10.0
    requests: int | None = None
    warmup_s: float = 0.0
    max_in_flight: int = 10_000
    # --grace: after the run's duration (or a stop), requests still in flight get this long;
    # those still open then are cut and count as ``timeout`` failures at their elapsed time.
    drain_timeout_s: float = DEFAULT_GRACE_S
    # Keep the event loop polling instead of sleeping in epoll between answers: a target on the
    # same machine then never pays to wake the client (measured on a 2-vCPU VM: the FastAPI
    # target's kernel time per request fell from ~28 to ~9 µs). Costs one client core.
    busy_poll: bool = False

    def __post_init__(self) -> None:
        if self.duration_s is None and self.requests is None:
            raise LoadOptionError("a run needs a duration or a request count")
        if self.duration_s is not None and not (
            self.duration_s > 0 and math.isfinite(self.duration_s)
        ):
            raise LoadOptionError("duration must be a positive number of seconds")
        if self.requests is not None and self.requests < 1:
            raise LoadOptionError("requests must be a positive int")
        if self.warmup_s < 0 or self.think_time_s < 0:
            raise LoadOptionError("warm-up and think time must be >= 0")
        if self.mode == "closed" and self.concurrency < 1:
            raise LoadOptionError("concurrency must be a positive int")
        if self.mode == "open" and self.profile is None and self.trace_offsets_ns is None:
            raise LoadOptionError("an open-loop run needs a rate profile or a trace")
        if self.max_in_flight < 1:
            raise LoadOptionError("max_in_flight must be a positive int")
        if not (self.drain_timeout_s >= 0 and math.isfinite(self.drain_timeout_s)):
            raise LoadOptionError("the grace must be a finite number of seconds >= 0")


@dataclass(slots=True)
class RunStats:
    """What the harness measured about itself (generator health) and the window."""

    measure_start_ns: int = 0
    measure_end_ns: int = 0
    generator_cpu_s: float = 0.0
    wall_s: float = 0.0
    interrupted: bool = False
    abandoned: int = 0
    busy_poll: bool = False  # the generator spun: its CPU share says nothing about its load
    offered_s: float = 0.0  # the measured part of the schedule (open loop), for offered req/s
    transport: str = ""

    @property
    def window_s(self) -> float:
        return max(self.measure_end_ns - self.measure_start_ns, 1) / 1e9


class Harness:
    """One run of ``plan`` against ``driver`` with ``payloads``; see the module docstring."""

    def __init__(
        self,
        driver: Driver,
        payloads: PayloadGenerator,
        plan: LoadPlan,
        *,
        schedule_seed: int = 0,
        clock: Clock | None = None,
        on_tick: Callable[[Recorder, RunStats], None] | None = None,
        on_measure_start: Callable[[], None] | None = None,
        tick_s: float = 1.0,
        on_grace: Callable[[int, float], None] | None = None,
        part: SchedulePart = WHOLE,
        start_gate: StartGate | None = None,
    ) -> None:
        self.driver = driver
        self.payloads = payloads
        self.plan = plan
        self.schedule_seed = schedule_seed
        self._clock = clock
        self.on_tick = on_tick
        self.on_measure_start = on_measure_start
        self.on_grace = on_grace  # (requests still in flight, grace in s): say so on stderr
        self.tick_s = tick_s
        self.part = part  # this process's share of the load (engine/parts.py)
        self.start_gate = start_gate
        self._cutting = False  # the grace ran out: a cancelled send is recorded as a timeout
        # Folds stall the loop for their length: 1,024 samples fold in ~0.25 ms (65,536 took
        # ~11 ms, which made open-loop sends late), at a few tenths of a µs more per sample.
        self.recorder = Recorder(
            fold_every=FOLD_EVERY, split_cold_starts=driver.cold_starts is not None
        )
        self._cold_starts = driver.cold_starts  # a driver that tells cold starts apart
        self.stats = RunStats()
        self._stop = asyncio.Event()
        self._index = part.index  # closed loop: payload indices k, k + N, ... (part k of N)
        self._recorded = 0
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slot_waiter: asyncio.Future[None] | None = None
        self._wire: WireView = driver.wire
        self._last_measured_ns: int | None = None

    def stop(self) -> None:
        """Stop early (Ctrl-C): scheduling ends, in-flight requests drain, result is partial."""
        self.stats.interrupted = True
        self._stop.set()

    # -- bookkeeping shared by both modes ------------------------------------------------------

    def _progress(self, now_ns: int) -> float:
        total_s = self.plan.warmup_s + (self.plan.duration_s or 0.0)
        if total_s <= 0:
            return self._recorded / (self.plan.requests or 1)
        return (now_ns - self._t0) / 1e9 / total_s

    def _should_stop(self, scheduled_ns: int) -> bool:
        if self._stop.is_set():
            return True
        if self._end_ns is not None and scheduled_ns >= self._end_ns:
            return True
        return self.plan.requests is not None and self._recorded >= self.plan.requests

    async def _one(self, index: int, scheduled_ns: int) -> None:
        clock = self.clock
        payload = self.payloads.payload(index, self._progress(scheduled_ns))
        measured = scheduled_ns >= self._measure_start_ns
        if measured:
            self._recorded += 1
            self._last_measured_ns = scheduled_ns
        dispatched_ns = clock.now_ns()
        try:
            outcome, error_class, predictions, schema_ok = await self.driver.send(payload)
        except asyncio.CancelledError:
            if self._cutting:  # the grace ran out: a timeout that took until now
                self._record_cut(measured, scheduled_ns, dispatched_ns)
            raise
        ended_ns = clock.now_ns()
        wire = self._wire
        if wire == "stamped":
            wire_ns = self.driver.stamps.take()  # taken always, so no stamp outlives its request
        else:
            wire_ns = dispatched_ns if wire == "at_dispatch" else WIRE_UNSEEN
        cold_starts = self._cold_starts
        cold = cold_starts is not None and cold_starts.take()  # taken always, as the stamp
        if measured:
            code = self.recorder.error_code(error_class) if error_class else 0
            self.recorder.record(
                scheduled_ns, dispatched_ns, ended_ns, outcome, code, predictions, schema_ok,
                wire_ns, cold,
            )  # fmt: skip

    def _record_cut(self, measured: bool, scheduled_ns: int, dispatched_ns: int) -> None:
        wire_ns = self.driver.stamps.take() if self._wire == "stamped" else WIRE_UNSEEN
        if measured:
            recorder = self.recorder
            recorder.record(
                scheduled_ns, dispatched_ns, self.clock.now_ns(), Outcome.FAILURE,
                recorder.error_code(CUT_BY_GRACE), 0, False, wire_ns,
            )  # fmt: skip

    async def _give_grace(self, pending: set[asyncio.Future[None]]) -> None:
        """Requests still in flight get the grace; those still open then are cut."""
        pending = {task for task in pending if not task.done()}
        if not pending:
            return
        grace_s = self.plan.drain_timeout_s
        if self.on_grace is not None:
            self.on_grace(len(pending), grace_s)
        _, pending = await asyncio.wait(pending, timeout=grace_s) if grace_s else (set(), pending)
        if not pending:
            return
        self._cutting = True
        self.stats.abandoned = len(pending)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _run_closed(self) -> None:
        """Workers until the end of the run or a stop, then the grace for what is in flight."""
        workers: set[asyncio.Future[None]] = {
            asyncio.ensure_future(self._closed_worker()) for _ in range(self.plan.concurrency)
        }
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            remaining = set(workers)
            while remaining and not stopping.done():
                timeout_s = None
                if self._end_ns is not None:
                    timeout_s = max(self._end_ns - self.clock.now_ns(), 0) / 1e9
                done, _ = await asyncio.wait(
                    remaining | {stopping}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
                )
                remaining -= done
                if not done:  # the run's time is up
                    break
            await self._give_grace(remaining)
        finally:
            stopping.cancel()
            for worker in workers:
                worker.cancel()
            outcomes = await asyncio.gather(*workers, stopping, return_exceptions=True)
        for outcome in outcomes:  # a driver that raised is a bug: keep its traceback
            if isinstance(outcome, Exception):
                raise outcome

    # -- the two modes -------------------------------------------------------------------------

    async def _closed_worker(self) -> None:
        clock = self.clock
        think_ns = int(self.plan.think_time_s * 1e9)
        scheduled_ns = clock.now_ns()
        while not self._should_stop(scheduled_ns):
            index = self._index
            self._index += self.part.count
            await self._one(index, scheduled_ns)
            # Drivers that never suspend would starve ticks and signals: yield every 64 of this
            # process's sends (its indices step by N: counting them, not the index itself).
            if not (index // self.part.count) & 63:
                await asyncio.sleep(0)
            if think_ns:
                await clock.sleep_until_ns(clock.now_ns() + think_ns)
            scheduled_ns = clock.now_ns()

    def _offsets(self) -> Iterator[IntArray]:
        if self.plan.trace_offsets_ns is not None:
            yield self.plan.trace_offsets_ns
            return
        assert self.plan.profile is not None  # checked by LoadPlan
        limit_s = (
            None if self.plan.duration_s is None else self.plan.warmup_s + self.plan.duration_s
        )
        yield from open_loop_offsets_ns(
            self.plan.profile, self.plan.arrival, self.schedule_seed, limit_s=limit_s
        )

    async def _open_dispatcher(self) -> None:
        clock = self.clock
        now_ns = clock.now_ns
        limit = self.plan.max_in_flight
        in_flight = self._in_flight
        stop = self._stop
        # This process's share of the one schedule, each request with its index in the whole
        # schedule (its payload), ending at the same place in every part (engine/parts.py).
        schedule = partitioned(
            self._offsets(), self.part,
            measure_from_ns=self._measure_start_ns - self._t0, requests=self.plan.requests,
        )  # fmt: skip
        for indices, chunk in schedule:
            for index, offset_ns in zip(indices.tolist(), chunk.tolist(), strict=True):
                scheduled_ns = self._t0 + offset_ns
                if self._should_stop(scheduled_ns):
                    return
                # Sleep on the clock itself (no task per wait: at tens of thousands of sends a
                # second that is what the dispatcher would spend its time on), in slices, so a
                # stop() lands promptly however sparse the schedule.
                while scheduled_ns > now_ns():
                    await clock.sleep_until_ns(min(scheduled_ns, now_ns() + SLEEP_SLICE_NS))
                    if stop.is_set():
                        return
                if len(in_flight) >= limit:  # past max_in_flight sends start late, and count
                    await self._slot_freed()  # as late
                task = asyncio.ensure_future(self._one(index, scheduled_ns))
                in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        waiter = self._slot_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _slot_freed(self) -> None:
        while len(self._in_flight) >= self.plan.max_in_flight:
            self._slot_waiter = asyncio.get_running_loop().create_future()
            await self._slot_waiter
        self._slot_waiter = None

    async def _drain(self) -> None:
        """The schedule is done: wait out the run's duration, then give the grace."""
        in_flight = set(self._in_flight)
        if in_flight and self._end_ns is not None and not self._stop.is_set():
            until_end_s = max(self._end_ns - self.clock.now_ns(), 0) / 1e9
            await asyncio.wait(in_flight, timeout=until_end_s)
        await self._give_grace(set(self._in_flight))

    async def _ticker(self) -> None:
        if self.on_measure_start is not None:
            await self.clock.sleep_until_ns(self._measure_start_ns)
            self.on_measure_start()
        while True:
            await asyncio.sleep(self.tick_s)
            self.recorder.fold(now_ns=self.clock.now_ns())
            if self.on_tick is not None:
                self.on_tick(self.recorder, self.stats)

    async def _spin(self) -> None:
        """``busy_poll``: always runnable, so the loop polls its sockets without blocking."""
        while True:
            await asyncio.sleep(0)

    def _offered_s(self) -> float:
        """How long the measured schedule lasted: the planned duration, or, for a run bounded
        by count (or stopped early), up to the last measured request's intended start."""
        last_ns = self._last_measured_ns
        if self.plan.duration_s is not None and not self.stats.interrupted:
            return self.plan.duration_s
        return max(last_ns - self._measure_start_ns, 0) / 1e9 if last_ns is not None else 0.0

    async def _started(self) -> int | None:
        """The coordinated start, if any: wait for the gate's instant (``None``: start now)."""
        if self.start_gate is None:
            return None
        start_ns = await self.start_gate()
        if start_ns is None:  # told to stop before the start (Ctrl-C while others connected)
            self.stop()
            return None
        await self.clock.sleep_until_ns(start_ns)
        return start_ns

    async def run(self) -> Recorder:
        """Run the plan; returns the finished recorder (also ``self.recorder``)."""
        self.clock = self._clock or clock_for_running_loop()
        self._wire = self.driver.wire
        self.driver.stamps.now_ns = self.clock.now_ns  # on-wire stamps on the harness's clock
        await self.driver.open()
        # What exists before the load (imports, payloads) is never traversed by the collector
        # again: a full collection over it pauses the loop for tens of ms, making sends late.
        gc.freeze()
        start_ns = await self._started()
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        self._t0 = self.clock.now_ns() if start_ns is None else start_ns
        self._measure_start_ns = self._t0 + int(self.plan.warmup_s * 1e9)
        self._end_ns = (
            None
            if self.plan.duration_s is None
            else self._measure_start_ns + int(self.plan.duration_s * 1e9)
        )
        self.recorder.start_ns = self._measure_start_ns
        ticker = asyncio.ensure_future(self._ticker())
        self.stats.busy_poll = self.plan.busy_poll
        self.stats.transport = self.driver.transport
        spinner = asyncio.ensure_future(self._spin()) if self.plan.busy_poll else None
        try:
            if self.plan.mode == "closed":
                await self._run_closed()
            else:
                await self._open_dispatcher()
                await self._drain()
        finally:
            for task in (ticker, spinner):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.stats.measure_start_ns = self._measure_start_ns
            self.stats.measure_end_ns = self.clock.now_ns()
            self.stats.offered_s = self._offered_s()
            self.stats.generator_cpu_s = time.process_time() - cpu_before
            self.stats.wall_s = time.perf_counter() - wall_before
            gc.unfreeze()
            await self.driver.close()
            self.recorder.bytes_sent += self.driver.bytes_sent
            self.recorder.bytes_received += self.driver.bytes_received
            self.recorder.finish()
        return self.recorder


def lateness_over(recorder: Recorder, threshold_ns: int) -> float:
    """Share of measured sends that started more than ``threshold_ns`` after their schedule."""
    return recorder.lateness.share_above(threshold_ns)
