"""The model layer: one ``Model`` protocol and the models servelab ships. Stdlib only.

Every model maps rows of features to one prediction per row. Synthetic models predict what the
reference model predicts, but take a seeded, known service time, so tests and benchmarks have
ground truth: the *waiting* ones sleep (``asyncio.sleep`` in async servers, so the event loop stays
free), the CPU-bound one burns CPU for its service time (so cores, workers and cost show up).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Rows = Sequence[Sequence[float]]
Distribution = Literal["fixed", "uniform", "exponential", "lognormal"]


@runtime_checkable
class Model(Protocol):
    """Rows of features in, one prediction per row out.

    A model may also declare ``features: int | None``, the width of every row it takes (``None``:
    any width); the service refuses rows of another width. Read it with ``input_width``.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def predict(self, rows: Rows) -> list[float]:
        """Blocking prediction (batch jobs, the edge runtime, threads)."""
        ...

    async def predict_async(self, rows: Rows) -> list[float]:
        """Prediction for async servers; must not block the loop longer than the model computes."""
        ...


def input_width(model: Model) -> int | None:
    """The row width ``model`` declares in ``features``, or ``None`` when it takes any."""
    features = getattr(model, "features", None)
    if isinstance(features, int) and not isinstance(features, bool) and features >= 0:
        return features
    return None


_MEAN_SCALE = 2.0**-64  # exact scaling; 10**4 values of the largest double still fit


def reference_prediction(row: Sequence[float]) -> float:
    """The lesson's model: ``round(mean(row) * 0.8 + 0.1, 4)``, and ``0.0`` for an empty row."""
    if not row:
        return 0.0
    try:
        mean = math.fsum(row) / len(row)
    except OverflowError:  # a sum beyond a double's range: scale exactly (a power of 2), then back
        mean = math.fsum(value * _MEAN_SCALE for value in row) / len(row) / _MEAN_SCALE
    return round(mean * 0.8 + 0.1, 4)  # |mean| <= the largest input, so this stays finite


class ReferenceModel:
    """The lesson's ensemble-average model."""

    name = "reference"
    version = "1.0"
    features: int | None = None  # any width

    def predict(self, rows: Rows) -> list[float]:
        return [reference_prediction(row) for row in rows]

    async def predict_async(self, rows: Rows) -> list[float]:
        return [reference_prediction(row) for row in rows]


@dataclass(frozen=True, slots=True)
class ServiceTime:
    """A service-time distribution, in seconds.

    ``fixed``: ``a``; ``uniform``: ``a``..``b``; ``exponential``: mean ``a``;
    ``lognormal``: median ``a``, shape ``b`` (sigma of the underlying normal).
    """

    kind: Distribution
    a_s: float
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.a_s < 0 or not math.isfinite(self.a_s):
            raise ValueError(f"service time must be finite and >= 0, got {self.a_s}")
        if self.kind == "uniform" and self.b < self.a_s:
            raise ValueError("uniform service time needs low <= high")
        if self.kind == "lognormal" and not (self.b >= 0 and math.isfinite(self.b)):
            raise ValueError("lognormal sigma must be finite and >= 0")

    def draw_s(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a_s
        if self.kind == "uniform":
            return rng.uniform(self.a_s, self.b)
        if self.kind == "exponential":
            return rng.expovariate(1.0 / self.a_s) if self.a_s > 0 else 0.0
        if self.a_s == 0:
            return 0.0
        return rng.lognormvariate(math.log(self.a_s), self.b)


def burn_cpu_s(seconds: float) -> None:
    """Compute (not wait) until this thread has used ``seconds`` of CPU time.

    Counting thread CPU time rather than wall time means a contended core makes the call
    slower, as it would a real model.
    """
    deadline = time.thread_time() + seconds
    accumulator = 1.0
    while time.thread_time() < deadline:
        for _ in range(200):
            accumulator = (accumulator * 1.000001) % 7.0


TIMER_TICK_S = 0.001  # loop timers fire in whole ms (uvloop rounds, epoll's timeout rounds up)


def _loop_is_virtual(loop: asyncio.AbstractEventLoop) -> bool:
    """A loop on simulated time says so (``loadtests.engine.clock.VirtualTimeLoop`` does); its own
    ``time()`` is then the one clock, and its timers fire exactly on it."""
    return bool(getattr(loop, "virtual_time", False))


async def sleep_at_least(
    delay_s: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] | None = None,
) -> None:
    """Wait ``delay_s`` and never less, on any loop, without spinning a core.

    Loop timers can fire early: uvloop computes a timer's deadline from the time cached at the
    start of the loop's iteration and rounds to whole ms (``sleep(0.005)`` measured 4.2 ms). So
    sleep, read ``clock`` (perf_counter by default; the loop's own time on a virtual loop), and
    sleep the remainder again, rounded *up* to the timer tick so a sub-ms remainder sleeps
    instead of firing at once.
    """
    if clock is None:
        loop = asyncio.get_running_loop()
        clock = loop.time if _loop_is_virtual(loop) else time.perf_counter
    deadline = clock() + delay_s
    await sleep(delay_s)
    while (remaining_s := deadline - clock()) > 0:
        await sleep(math.ceil(remaining_s / TIMER_TICK_S) * TIMER_TICK_S)


class SyntheticModel:
    """Reference predictions after a seeded service time: base draw + ``per_row_s`` per row.

    ``cpu_bound=True`` computes for the service time (thread CPU time); otherwise the model
    waits, and never answers before its drawn time (``sleep_at_least``). ``sleep`` /
    ``sleep_async`` / ``clock`` are injectable so a test clock can drive it.
    """

    version = "1.0"
    features: int | None = None  # any width, as the reference model

    def __init__(
        self,
        service_time: ServiceTime,
        *,
        name: str,
        per_row_s: float = 0.0,
        seed: int = 0,
        cpu_bound: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        sleep_async: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if per_row_s < 0 or not math.isfinite(per_row_s):
            raise ValueError(f"per_row_s must be finite and >= 0, got {per_row_s}")
        self.service_time = service_time
        self.per_row_s = per_row_s
        self.seed = seed
        self.cpu_bound = cpu_bound
        self._name = name
        self._rng = random.Random(seed)
        self._sleep = sleep
        self._sleep_async = sleep_async
        self._clock = clock

    @property
    def name(self) -> str:
        return self._name

    def next_service_time_s(self, row_count: int) -> float:
        """Draw the service time of the next call of ``row_count`` rows."""
        return self.service_time.draw_s(self._rng) + self.per_row_s * row_count

    def predict(self, rows: Rows) -> list[float]:
        delay_s = self.next_service_time_s(len(rows))
        if self.cpu_bound:
            burn_cpu_s(delay_s)
        elif delay_s > 0:
            self._sleep(delay_s)
        return [reference_prediction(row) for row in rows]

    async def predict_async(self, rows: Rows) -> list[float]:
        delay_s = self.next_service_time_s(len(rows))
        if self.cpu_bound:
            burn_cpu_s(delay_s)  # a CPU-bound model holds the loop, as real inference would
        elif delay_s > 0:
            if self._sleep_async is asyncio.sleep or self._clock is not None:
                await sleep_at_least(delay_s, sleep=self._sleep_async, clock=self._clock)
            else:  # an injected sleep with no clock to check it against is taken at its word
                await self._sleep_async(delay_s)
        return [reference_prediction(row) for row in rows]


class CallableModel:
    """A user's model: an object with ``predict(rows)`` or a plain function of rows."""

    features: int | None = None

    def __init__(self, predict: Callable[[Rows], Sequence[float]], *, name: str, version: str):
        self._predict = predict
        self._name = name
        self._version = version

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    def predict(self, rows: Rows) -> list[float]:
        predictions = [float(value) for value in self._predict(rows)]
        if len(predictions) != len(rows):
            raise ValueError(
                f"model {self._name} returned {len(predictions)} predictions for {len(rows)} rows"
            )
        return predictions

    async def predict_async(self, rows: Rows) -> list[float]:
        return self.predict(rows)
