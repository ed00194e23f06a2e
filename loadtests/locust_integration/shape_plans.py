"""Load-shape plans for Locust, as pure functions of elapsed time (no Locust, no gevent here;
``loadtests/locust_integration/shapes.py`` wraps them in ``LoadTestShape`` classes).

A plan answers Locust's ``tick()``: ``(users, spawn_rate_per_s)`` at ``elapsed_s``, or ``None``
when the test is over. ``--shape SPEC``::

    step:10s:5,10s:20,10s:50     hold 5 users for 10 s, then 20, then 50 (each step spawned in ~1 s)
    ramp:0:50:30s[:10s]          0 → 50 users linearly over 30 s, then hold 50 for 10 s
    spike:5:50:10s:5s:30s        5 users; at 10 s jump to 50 for 5 s; back to 5; stop at 30 s
    arrival:200:20:30s           20 users, each starting a task every 20/200 s: ~200 requests/s

**Limits.** Locust is a closed loop: a user sends its next request only after the last one ended.
``arrival`` paces users (as Locust's ``constant_pacing``) and so reaches its rate only while an
answer takes less than ``USERS / RATE`` seconds; when the target slows down, the rate falls and
the queue the target would have built is never charged (coordinated omission). For a true open
loop — arrivals on a schedule whatever the target does, latency from the intended start — use
``servelab run --rate R``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtests.errors import LoadOptionError
from targets.units import parse_duration_s

Tick = tuple[int, float] | None


def _users(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise LoadOptionError(f"shape {spec!r}: {text!r} is not a user count (an integer >= 0)")
    return value


def _duration(text: str, spec: str) -> float:
    try:
        value = parse_duration_s(text)
    except ValueError:
        raise LoadOptionError(f"shape {spec!r}: {text!r} is not a duration (e.g. 10s)") from None
    if value <= 0:
        raise LoadOptionError(f"shape {spec!r}: durations must be > 0, got {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class StepPlan:
    steps: tuple[tuple[float, int], ...]  # (duration_s, users)

    @property
    def duration_s(self) -> float:
        return sum(duration for duration, _ in self.steps)

    def tick(self, elapsed_s: float) -> Tick:
        end_s = 0.0
        rate = float(max(1, *(users for _, users in self.steps)))
        for duration_s, users in self.steps:
            end_s += duration_s
            if elapsed_s < end_s:
                return users, rate
        return None


@dataclass(frozen=True, slots=True)
class RampPlan:
    start_users: int
    end_users: int
    ramp_s: float
    hold_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.ramp_s + self.hold_s

    def tick(self, elapsed_s: float) -> Tick:
        if elapsed_s >= self.duration_s:
            return None
        rate = max(abs(self.end_users - self.start_users) / self.ramp_s, 1.0)
        share = min(elapsed_s / self.ramp_s, 1.0)
        users = self.start_users + (self.end_users - self.start_users) * share
        return round(users), rate


@dataclass(frozen=True, slots=True)
class SpikePlan:
    base_users: int
    peak_users: int
    at_s: float
    length_s: float
    total_s: float

    @property
    def duration_s(self) -> float:
        return self.total_s

    def tick(self, elapsed_s: float) -> Tick:
        if elapsed_s >= self.total_s:
            return None
        rate = float(max(self.peak_users, 1))  # a spike arrives at once
        if self.at_s <= elapsed_s < self.at_s + self.length_s:
            return self.peak_users, rate
        return self.base_users, rate


@dataclass(frozen=True, slots=True)
class ArrivalPlan:
    """``users`` users paced to ``rate_per_s`` requests/s in total (see the module's limits)."""

    rate_per_s: float
    users: int
    total_s: float

    @property
    def duration_s(self) -> float:
        return self.total_s

    def tick(self, elapsed_s: float) -> Tick:
        if elapsed_s >= self.total_s:
            return None
        return self.users, float(self.users)  # every user at once: the pace is the users' job


ShapePlan = StepPlan | RampPlan | SpikePlan | ArrivalPlan


def parse_shape(spec: str) -> ShapePlan:
    """``--shape SPEC`` (forms in the module docstring); ``ValueError`` naming the problem."""
    kind, _, rest = spec.strip().partition(":")
    parts = rest.split(":") if rest else []
    if kind == "step":
        steps = []
        for step in rest.split(","):
            duration, _, count = step.partition(":")
            if not count:
                raise LoadOptionError(
                    f"shape {spec!r}: steps are DURATION:USERS[,DURATION:USERS...]"
                )
            steps.append((_duration(duration, spec), _users(count, spec)))
        return StepPlan(tuple(steps))
    if kind == "ramp" and len(parts) in (3, 4):
        hold = _duration(parts[3], spec) if len(parts) == 4 else 0.0
        return RampPlan(
            _users(parts[0], spec), _users(parts[1], spec), _duration(parts[2], spec), hold
        )
    if kind == "spike" and len(parts) == 5:
        base, peak = _users(parts[0], spec), _users(parts[1], spec)
        at_s, length_s, total_s = (_duration(part, spec) for part in parts[2:])
        return SpikePlan(base, peak, at_s, length_s, total_s)
    if kind == "arrival" and len(parts) == 3:
        try:
            rate = float(parts[0])
        except ValueError:
            rate = math.nan
        if not (rate > 0 and math.isfinite(rate)):
            raise LoadOptionError(f"shape {spec!r}: {parts[0]!r} is not a rate (requests/s > 0)")
        users = _users(parts[1], spec)
        if users < 1:
            raise LoadOptionError(f"shape {spec!r}: arrival needs at least one user")
        return ArrivalPlan(rate, users, _duration(parts[2], spec))
    raise LoadOptionError(
        f"shape {spec!r} is malformed: expected step:D:U[,D:U...], ramp:FROM:TO:D[:HOLD], "
        "spike:BASE:PEAK:AT:LENGTH:TOTAL or arrival:RATE:USERS:D"
    )
