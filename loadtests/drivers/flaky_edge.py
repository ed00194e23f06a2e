"""The edge runtime behind a flaky link (``servelab run --target edge --flaky-link``): the fault
proxy (``loadtests.drivers.link``) between the runtime and its remote, and the answers counted
by the link's state when each came back.

The driver is ``EdgeDriver`` with one change of wiring and one of counting. ``open`` starts the
proxy, so the schedule's origin is the start of the load: with the default profile (up 3 s,
down 2 s) a warm-up under 3 s ends while the link is up, and every further 5 s holds one whole
outage. The runtime's remote is then the proxy, and its breaker's cool-down
``flaky_cooldown_s`` (1 s for the default link).
``extra()`` adds ``link`` (``link_block``): outages, answers by source while down and while up,
fallbacks, breaker opens and closes in the window, requests lost, and the proxy's own counts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from loadtests.drivers.base import Reply
from loadtests.drivers.edge import EdgeDriver
from loadtests.drivers.link import LinkProcess, LinkTally, flaky_cooldown_s
from loadtests.engine.records import Outcome
from targets.edge.link import LinkSchedule
from targets.edge.remote import RemoteClient
from targets.edge.runtime import EdgeConfig


class FlakyEdgeDriver(EdgeDriver):
    """``EdgeDriver`` whose remote is reached through a fault proxy following ``schedule``."""

    def __init__(
        self,
        config: EdgeConfig,
        schedule: LinkSchedule,
        *,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        if not config.remote:
            raise ValueError("a flaky link needs the edge's remote (config.remote)")
        super().__init__(
            dataclasses.replace(config, cooldown_s=flaky_cooldown_s(schedule.profile)),
            clock_ns=clock_ns,
        )
        self.link = LinkProcess(config.remote, schedule)
        self.tally = LinkTally(schedule, self.link.now_s)
        self._closes_before = 0

    async def open(self) -> None:
        if self.link.port == 0:
            url = await asyncio.to_thread(self.link.start)
            # the runtime is idle until the load starts: its remote can be swapped here
            direct, self.runtime.remote = (
                self.runtime.remote,
                RemoteClient(url, timeout_s=self.config.timeout_ms / 1e3),
            )
            if direct is not None:
                direct.close()
            self.tally.restart()
        await super().open()

    def mark_measure_start(self) -> None:
        super().mark_measure_start()
        self.tally.restart()
        self._closes_before = self.runtime.breaker.closes

    def on_answer(self, source: str | None, reply: Reply) -> None:
        self.tally.observe(source, reply.outcome == Outcome.FAILURE)

    async def close(self) -> None:
        self.tally.finish()
        try:
            await super().close()
        finally:
            await asyncio.to_thread(self.link.stop)

    def extra(self) -> dict[str, Any]:
        extra = super().extra()
        breaker = self.runtime.breaker
        opens_closes = (extra["breaker_opens"], breaker.closes - self._closes_before)
        extra["link"] = self.tally.block(opens_closes, self.link.stats)
        return extra
