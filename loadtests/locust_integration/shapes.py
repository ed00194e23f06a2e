"""Locust load shapes: step, ramp, spike and constant arrival rate (``LoadTestShape`` classes).

From the command line, add this file to ``-f`` and describe the shape with ``--shape``::

    locust -f loadtests/locustfile.py,loadtests/locust_integration/shapes.py --headless \\
        --host URL RestUser --shape step:10s:5,10s:20,10s:50
    servelab locust --shape ramp:0:50:30s:10s        (servelab adds this file itself)

From Python, subclass one of the shapes in your own locustfile and set its class attributes::

    from loadtests.locust_integration.shapes import SpikeShape

    class MorningSpike(SpikeShape):
        base_users, peak_users, at_s, length_s, total_s = 5, 50, 10.0, 5.0, 30.0

The SPEC forms and what each shape does are in ``loadtests.locust_integration.shape_plans``.
**Limits**: Locust is closed-loop — a user sends its next request only once the last one
ended. The constant-arrival-rate shape paces servelab's users (each starts a task every
``USERS / RATE`` s) and reaches its rate only while answers are faster than that; a slower
target lowers the rate instead of building the queue a real arrival stream would (coordinated
omission). For a true open loop, with latency measured from each request's intended start, use
``servelab run --rate R``.

This module imports Locust (and so gevent): load it only as a Locust file, never from servelab's
packages. Locust runs the first concrete shape it finds in the ``-f`` files, so every class here
but ``ShapeFromOptions`` is abstract.
"""

from __future__ import annotations

from typing import ClassVar

from locust import LoadTestShape

from loadtests.errors import LoadOptionError
from loadtests.locust_integration.shape_plans import (
    ArrivalPlan,
    RampPlan,
    ShapePlan,
    SpikePlan,
    StepPlan,
    Tick,
    parse_shape,
)
from loadtests.locust_integration.support import option


class PlanShape(LoadTestShape):
    """A shape that follows a ``ShapePlan`` on Locust's run-time clock."""

    abstract: ClassVar[bool] = True

    def plan_for(self, options: object) -> ShapePlan:
        raise NotImplementedError

    def tick(self) -> Tick:
        options = self.runner.environment.parsed_options if self.runner else None
        elapsed_s: float = self.get_run_time()  # type: ignore[no-untyped-call]  # untyped in Locust
        return self.plan_for(options).tick(elapsed_s)


class StepShape(PlanShape):
    """Hold each ``(duration_s, users)`` step in turn."""

    abstract: ClassVar[bool] = True
    steps: ClassVar[tuple[tuple[float, int], ...]] = ()

    def plan_for(self, options: object) -> ShapePlan:
        return StepPlan(self.steps)


class RampShape(PlanShape):
    """``start_users`` → ``end_users`` linearly over ``ramp_s``, then hold for ``hold_s``."""

    abstract: ClassVar[bool] = True
    start_users: ClassVar[int] = 0
    end_users: ClassVar[int] = 10
    ramp_s: ClassVar[float] = 10.0
    hold_s: ClassVar[float] = 0.0

    def plan_for(self, options: object) -> ShapePlan:
        return RampPlan(self.start_users, self.end_users, self.ramp_s, self.hold_s)


class SpikeShape(PlanShape):
    """``base_users``; ``peak_users`` from ``at_s`` for ``length_s``; over at ``total_s``."""

    abstract: ClassVar[bool] = True
    base_users: ClassVar[int] = 1
    peak_users: ClassVar[int] = 10
    at_s: ClassVar[float] = 5.0
    length_s: ClassVar[float] = 5.0
    total_s: ClassVar[float] = 15.0

    def plan_for(self, options: object) -> ShapePlan:
        return SpikePlan(self.base_users, self.peak_users, self.at_s, self.length_s, self.total_s)


class ConstantArrivalRateShape(PlanShape):
    """``users`` servelab users paced to ``rate_per_s`` requests/s in total for ``duration_s``
    (closed loop: see the module's limits)."""

    abstract: ClassVar[bool] = True
    rate_per_s: ClassVar[float] = 10.0
    users: ClassVar[int] = 1
    duration_s: ClassVar[float] = 10.0

    def plan_for(self, options: object) -> ShapePlan:
        return ArrivalPlan(self.rate_per_s, self.users, self.duration_s)


class ShapeFromOptions(PlanShape):
    """The shape ``--shape SPEC`` describes (Locust sends it to workers with the options)."""

    def plan_for(self, options: object) -> ShapePlan:
        spec = option(options, "shape")
        if not spec:
            raise LoadOptionError(
                "loadtests/locust_integration/shapes.py in -f needs --shape SPEC "
                "(e.g. --shape ramp:0:50:30s)"
            )
        return parse_shape(str(spec))
