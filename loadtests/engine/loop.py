"""The one event loop every load-generating command runs on, chosen here and nowhere else.

``servelab run``, ``bench``, ``sweep``, ``demo`` and the Python API all call ``run``; a test
checks that no other module starts a loop. Locust runs on gevent, not asyncio, so it has none.

The choice is uvloop. Measured on this 2-core VM (``python -m benchmarks.event_loops``; README
"What is measured"): uvloop drives more requests per client CPU second, and its coarse timers
(whole ms, computed from a time cached at the start of each iteration, so they fire early) no
longer cost precision: the harness times with ``perf_counter_ns`` and yields to each deadline
(``PerfClock``), and waiting models sleep again for any remainder (``sleep_at_least``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

import uvloop

T = TypeVar("T")

EVENT_LOOP: Final = "uvloop"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A fresh loop of the one kind servelab generates load on."""
    return uvloop.new_event_loop()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """For ``asyncio.Runner(loop_factory=...)`` where a caller keeps its own runner."""
    return new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh loop of that kind (``asyncio.run``'s contract)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def running_loop_name() -> str | None:
    """What the running loop is, for ``environment.event_loop``: ``uvloop``, ``asyncio`` (the
    standard library's), ``virtual`` (simulated time) or another loop's module; ``None``
    outside a loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    if getattr(loop, "virtual_time", False):
        return "virtual"
    module = type(loop).__module__.split(".", 1)[0]
    return module if module != "asyncio" else "asyncio"
