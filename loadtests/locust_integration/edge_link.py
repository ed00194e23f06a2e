"""``--flaky-link`` under Locust: the fault proxy between this process's edge runtime and
``--host``, and the counts ``EdgeUser`` adds for it. Imports no gevent (the session calls it).

Each Locust process is one edge device behind its own link (``LinkProcess``, origin at its first
request). Counts go to the process's side figures as ``edge_link:KEY`` counters, so a master sums
its workers' as it sums the rest; ``link_extra`` turns the merged counters into ``extra.link``,
the block ``servelab run --flaky-link`` writes (``loadtests.drivers.link``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from loadtests.drivers.link import (
    LinkProcess,
    answer_keys,
    flaky_cooldown_s,
    link_block,
    window_keys,
)
from targets.edge.link import LinkSchedule, parse_link_profile

if TYPE_CHECKING:
    from loadtests.locust_integration.results import SideStats
    from targets.edge.breaker import CircuitBreaker

PREFIX: Final = "edge_link:"


def link_schedule(profile: str | None, seed: int) -> LinkSchedule | None:
    """The schedule ``--flaky-link PROFILE`` names (``None``: no flaky link)."""
    return None if profile is None else LinkSchedule(parse_link_profile(profile), seed)


class LocustLink:
    """The proxy of one Locust process, started with its edge runtime."""

    def __init__(self, schedule: LinkSchedule, remote: str) -> None:
        self.schedule = schedule
        self.process = LinkProcess(remote, schedule)
        self.url = self.process.start()
        self.cooldown_s = flaky_cooldown_s(schedule.profile)

    def count_answer(self, side: SideStats, source: str | None, failed: bool) -> None:
        for key in answer_keys(self.schedule, self.process.now_s(), source, failed):
            side.count(PREFIX + key)

    def count_window(self, side: SideStats, breaker: CircuitBreaker) -> None:
        """At the test's stop: the schedule's outages since the origin and the breaker's moves."""
        for key, amount in window_keys(self.schedule, 0.0, self.process.now_s()).items():
            side.count(PREFIX + key, amount)
        side.count(PREFIX + "breaker_opens", breaker.opens)
        side.count(PREFIX + "breaker_closes", breaker.closes)

    def stop(self) -> dict[str, Any] | None:
        return self.process.stop()


def link_extra(
    counters: Mapping[str, float], schedule: LinkSchedule, proxy: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``extra.link`` from the merged ``edge_link:`` counters."""
    counts = {k.removeprefix(PREFIX): v for k, v in counters.items() if k.startswith(PREFIX)}
    return link_block(counts, schedule, proxy)
