"""The scaling rule of a function platform, emulated: instances are processes, each takes one
request at a time, a request that finds none idle starts one (a cold start: process start and
model load, paid by that request), and an instance idle longer than the idle timeout is retired.

At most ``max_instances`` exist (starting ones included). A request that finds all of them busy
waits, first come first served, for the next one released; past ``max_waiting`` waiting
requests it is refused (``Throttled``: the front answers 429, as Lambda throttles). Idle
instances are taken most recently used first, so under light load the others go idle and are
retired: that is what makes scaling to zero happen.

Cost: CPU seconds of the instances while they live (idle ones included, the front's own
excluded), read from ``/proc`` for live instances and once more just before an instance is
stopped, then kept (``instance_cpu_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from targets.function.handler import LOG_LEVEL_ENV, MODEL_ENV
from targets.function.instance import MAX_MESSAGE_BYTES
from targets.procstat import process_cpu_s

STOP_TIMEOUT_S: Final = 5.0


class Throttled(Exception):
    """Every instance busy, at the maximum, and the waiting line full."""


class FunctionFailed(Exception):
    """The instance could not answer: its init failed, it died, or it overran the timeout
    (``status``: 502, or 504 for a timeout, as a function URL answers)."""

    def __init__(self, code: str, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(eq=False, slots=True)
class Instance:
    number: int
    process: asyncio.subprocess.Process
    init_ms: float = 0.0
    served: int = 0
    retire: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class Invocation:
    """One answered event: the handler's result, and whether this request paid the start."""

    answer: dict[str, Any]
    cold: bool
    instance: int
    init_ms: float


def instance_command() -> list[str]:
    return [sys.executable, "-m", "targets.function.instance"]


@dataclass(slots=True)
class PoolCounts:
    cold_starts: int = 0
    invocations: int = 0
    retired: int = 0
    failed: int = 0
    throttled: int = 0
    retired_cpu_s: float = 0.0
    peak_instances: int = 0


class InstancePool:
    """Instances of one function; see the module docstring. ``command`` starts one instance
    (the real one by default; tests pass a small stand-in that speaks the same lines)."""

    def __init__(
        self,
        model_spec: str,
        *,
        max_instances: int,
        idle_timeout_s: float,
        max_waiting: int = 100,
        timeout_s: float = 30.0,
        log_level: str = "warning",
        command: Sequence[str] | None = None,
    ) -> None:
        if max_instances < 1:
            raise ValueError("max_instances must be a positive int")
        if not idle_timeout_s > 0:
            raise ValueError("idle_timeout_s must be positive")
        if max_waiting < 0 or not timeout_s > 0:
            raise ValueError("max_waiting must be >= 0 and timeout_s positive")
        self.model_spec = model_spec
        self.max_instances = max_instances
        self.idle_timeout_s = idle_timeout_s
        self.max_waiting = max_waiting
        self.timeout_s = timeout_s
        self.log_level = log_level
        self.command = list(command or instance_command())
        self.counts = PoolCounts()
        self._numbers = 0
        self._starting = 0
        self._live: set[Instance] = set()
        self._idle: list[Instance] = []  # most recently released last
        self._waiters: deque[asyncio.Future[Instance | None]] = deque()
        self._stopping: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- what the front calls ------------------------------------------------------------------

    async def invoke(self, event: dict[str, Any], request_id: str | None = None) -> Invocation:
        """Run ``event`` on an idle instance, a new one, or the next one released."""
        instance, cold = await self._acquire()
        request_id = request_id or uuid.uuid4().hex
        try:
            answer = await self._call(instance, event, request_id)
        except BaseException:
            self._discard(instance)
            raise
        self._release(instance)
        self.counts.invocations += 1
        return Invocation(answer, cold, instance.number, instance.init_ms)

    def stats(self) -> dict[str, Any]:
        """The front's figures: instances now, starts, retirements, CPU of the instances."""
        live_cpu_s = sum(process_cpu_s(i.process.pid) for i in self._live)
        return {
            "model": self.model_spec,
            "max_instances": self.max_instances,
            "idle_timeout_s": self.idle_timeout_s,
            "instances": len(self._live),
            "idle": len(self._idle),
            "starting": self._starting,
            "waiting": len(self._waiters),
            "peak_instances": self.counts.peak_instances,
            "cold_starts": self.counts.cold_starts,
            "invocations": self.counts.invocations,
            "retired": self.counts.retired,
            "failed": self.counts.failed,
            "throttled": self.counts.throttled,
            "instance_cpu_s": self.counts.retired_cpu_s + live_cpu_s,
        }

    async def close(self) -> None:
        """Stop every instance (the front is shutting down); waiting requests fail."""
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for instance in list(self._live):
            self._discard(instance, retired=True)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    # -- the scaling rule ----------------------------------------------------------------------

    async def _acquire(self) -> tuple[Instance, bool]:
        while True:
            if self._closed:
                raise FunctionFailed("front_closing", "the front is shutting down", 503)
            if self._idle:
                instance = self._idle.pop()
                if instance.retire is not None:
                    instance.retire.cancel()
                return instance, False
            if len(self._live) + self._starting < self.max_instances:
                return await self._start(), True
            if len(self._waiters) >= self.max_waiting:
                self.counts.throttled += 1
                raise Throttled(
                    f"{self.max_instances} instance(s) busy, {self.max_waiting} waiting"
                )
            handed = await self._wait_for_release()
            if handed is not None:
                return handed, False

    async def _wait_for_release(self) -> Instance | None:
        """An instance handed over on release; ``None``: a slot freed, look again."""
        waiter: asyncio.Future[Instance | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            handed = waiter.result() if waiter.done() and not waiter.cancelled() else None
            if handed is not None:
                self._release(handed)  # handed over as the request gave up: not lost
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _release(self, instance: Instance) -> None:
        instance.served += 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(instance)
                return
        if self._closed:
            self._discard(instance, retired=True)
            return
        self._idle.append(instance)
        loop = asyncio.get_running_loop()
        instance.retire = loop.call_later(self.idle_timeout_s, self._retire, instance)

    def _retire(self, instance: Instance) -> None:
        if instance in self._idle:
            self._idle.remove(instance)
            self._discard(instance, retired=True)

    def _discard(self, instance: Instance, *, retired: bool = False) -> None:
        """Take ``instance`` out of service and stop it; a waiter may now start another."""
        if instance not in self._live:
            return
        self._live.discard(instance)
        if instance in self._idle:
            self._idle.remove(instance)
        if instance.retire is not None:
            instance.retire.cancel()
        if retired:
            self.counts.retired += 1
        else:
            self.counts.failed += 1
        self.counts.retired_cpu_s += process_cpu_s(instance.process.pid)
        task = asyncio.ensure_future(self._stop(instance.process))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # -- one instance's process ----------------------------------------------------------------

    async def _start(self) -> Instance:
        """A new instance, ready: the cold start this request pays."""
        self._starting += 1
        self.counts.cold_starts += 1
        started = time.perf_counter()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, MODEL_ENV: self.model_spec, LOG_LEVEL_ENV: self.log_level},
                limit=MAX_MESSAGE_BYTES,
            )
            try:
                ready = await self._read(process, self.timeout_s)
            except BaseException:
                await self._stop(process)
                raise
            if not ready.get("ready"):
                await self._stop(process)
                raise FunctionFailed("function_init_failed", str(ready.get("error", "")))
        except BaseException:
            self._wake_one()
            raise
        finally:
            self._starting -= 1
        self._numbers += 1
        instance = Instance(self._numbers, process, init_ms=(time.perf_counter() - started) * 1e3)
        self._live.add(instance)
        self.counts.peak_instances = max(self.counts.peak_instances, len(self._live))
        return instance

    async def _call(self, instance: Instance, event: dict[str, Any], request_id: str) -> Any:
        stdin = instance.process.stdin
        assert stdin is not None  # started with pipes
        deadline_ms = int((time.time() + self.timeout_s) * 1000)
        message = {"event": event, "request_id": request_id, "deadline_ms": deadline_ms}
        try:
            stdin.write(orjson.dumps(message) + b"\n")
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise FunctionFailed("instance_died", f"instance {instance.number} is gone") from exc
        return await self._read(instance.process, self.timeout_s)

    async def _read(self, process: asyncio.subprocess.Process, timeout_s: float) -> Any:
        stdout = process.stdout
        assert stdout is not None  # started with pipes
        try:
            line = await asyncio.wait_for(stdout.readline(), timeout_s)
        except TimeoutError:
            raise FunctionFailed(
                "function_timeout", f"no answer within {timeout_s:g} s", 504
            ) from None
        except ValueError as exc:  # a line over the limit
            raise FunctionFailed("answer_too_large", str(exc)) from None
        if not line:
            raise FunctionFailed("instance_died", f"instance exited ({process.returncode})")
        try:
            return orjson.loads(line)
        except orjson.JSONDecodeError:
            raise FunctionFailed(
                "bad_answer", "the instance wrote a line that is not JSON"
            ) from None

    @staticmethod
    async def _stop(process: asyncio.subprocess.Process) -> None:
        """EOF on stdin ends an instance; one that does not end in time is killed."""
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
