"""``servelab run --processes N``: one run's load split across N generator processes on this
machine, and merged back into one result file.

- **Split** (``split``): a closed loop's concurrency and request count are shared out
  (``SchedulePart.share``; ``--loop tight``: one caller each); an open loop's one seeded
  schedule is partitioned round-robin by request index (``engine/parts.py``), so the parts'
  schedules together are the single-process schedule, bit for bit.
- **Pinning** (``cpu_plan``): process k on the k-th CPU this process may use, when there are at
  least N; otherwise none is pinned, and the result warns that they share cores.
- **Coordinated start**: the target is started once, here; each process connects (or loads
  the model), says ready, and waits; all get one instant on the machine's monotonic clock.
- **Merge** (``jobs.part_merge``): exact histograms, counters and seconds; INVALID if any process
  lagged, died or hung, with what the others measured kept.
- **Bounded** (``jobs.fleet``): readiness, silence and the run's end each have a limit; Ctrl-C
  stops every process, and their partial results are merged as a partial run.

``execute`` has ``jobs.run.execute``'s signature and is that function for one process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from loadtests.engine.clock import PerfClock
from loadtests.engine.parts import SchedulePart
from loadtests.errors import LoadOptionError
from loadtests.jobs import run
from loadtests.jobs.fleet import Fleet
from loadtests.jobs.launch import LaunchedTarget, launch_for
from loadtests.jobs.part_merge import merged_result
from loadtests.jobs.scrape import ServerScrape, server_scrape
from loadtests.jobs.settings import RunSettings
from loadtests.results.result import write_result
from loadtests.results.thresholds import check_absolute, parse_thresholds

START_MARGIN_NS: Final = 100_000_000  # from "start" to the start: every child has read it


def split(settings: RunSettings) -> list[RunSettings]:
    """The settings of each of ``settings.processes`` generator processes."""
    count, plan = settings.processes, settings.plan
    parts = []
    for index in range(count):
        part = SchedulePart(index, count)
        share = plan
        if plan.mode == "closed":  # an open loop's plan stays whole: the schedule is split
            share = dataclasses.replace(
                plan,
                concurrency=part.share(plan.concurrency),
                requests=None if plan.requests is None else part.share(plan.requests),
            )
        parts.append(dataclasses.replace(settings, plan=share, part=part))
    return parts


def cpu_plan(count: int, available: Sequence[int] | None = None) -> tuple[list[int | None], str]:
    """The CPU each of ``count`` processes is pinned to, and a warning ("" if none): distinct
    CPUs of those this process may run on (``available``), or none when there are too few."""
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) >= count:
        return list(cpus[:count]), ""
    return [None] * count, (
        f"{count} generator processes on {len(cpus)} CPU(s): not pinned, they share cores "
        "(each process's CPU share is in extra.generator.processes)"
    )


async def execute(
    settings: RunSettings,
    *,
    out: Path | None,
    on_tick: Callable[..., None] | None = None,
    install_signal_handlers: bool = False,
    announce: Callable[[str], None] | None = None,
    extra_fields: Callable[[LaunchedTarget | None], dict[str, Any]] | None = None,
    events: Path | None = None,
    gates: Sequence[str] = (),
    metrics_url: str | None = None,
) -> run.RunOutput:
    """``jobs.run.execute`` over ``settings.processes`` generator processes (``on_tick``, the
    live progress line, is one process's: not shown for several)."""
    if settings.processes == 1:
        return await run.execute(
            settings, out=out, on_tick=on_tick, install_signal_handlers=install_signal_handlers,
            announce=announce, extra_fields=extra_fields, events=events, gates=gates,
            metrics_url=metrics_url,
        )  # fmt: skip
    if events is not None:
        raise LoadOptionError("--events logs one process's requests: not with --processes")
    spec = settings.spec
    launched = launch_for(
        spec, url=settings.url, address=settings.address, model_spec=settings.model
    )
    with launched as server:
        parts = split(settings.aimed_at(server))
        cpus, pin_warning = cpu_plan(len(parts))
        if pin_warning:
            print(f"servelab: {pin_warning}", file=sys.stderr, flush=True)
        cost = run.Cost(settings, server)
        scrape = server_scrape(settings, server, metrics_url)
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        async with Fleet(parts, cpus, grace_s=settings.plan.drain_timeout_s) as fleet:
            await _load(fleet, settings, server, cost, scrape, announce, install_signal_handlers)
        reports = fleet.reports()
        target_cpu_s = cost.measured()
        added = {**(extra_fields(server) if extra_fields is not None else {}), **scrape.extra()}
    result = merged_result(
        settings, reports, started=server is not None, started_at=started_at,
        interrupted=fleet.interrupted, pin_warning=pin_warning or None,
        target_cpu_s=target_cpu_s, cost_source=cost.source, added=added,
    )  # fmt: skip
    checks = check_absolute(parse_thresholds(list(gates), allow_relative=False), result["summary"])
    result["extra"]["thresholds"] = [dataclasses.asdict(check) for check in checks]
    if out is not None:
        write_result(out, result)
    return run.RunOutput(result, out, checks)


async def _load(
    fleet: Fleet,
    settings: RunSettings,
    server: LaunchedTarget | None,
    cost: run.Cost,
    scrape: ServerScrape,
    announce: Callable[[str], None] | None,
    install: bool,
) -> None:
    """Ready, start, wait: the processes' load, with the target scraped around its window."""
    try:
        await scrape.open()
        with run.stopped_by_signals(fleet.interrupt, install):
            ready = await fleet.ready()
            if fleet.errors:  # bad input met before any load (the probe): one line, exit 2
                raise fleet.errors[0]
            marker = None
            if ready:  # else interrupted before the start: each reports, having measured nothing
                plan = settings.plan
                start_ns = time.perf_counter_ns() + START_MARGIN_NS
                fleet.start(start_ns, warmup_s=plan.warmup_s, duration_s=plan.duration_s)
                measure_start_ns = start_ns + int(plan.warmup_s * 1e9)
                marker = asyncio.ensure_future(_mark_window(measure_start_ns, cost, scrape))
                await PerfClock().sleep_until_ns(start_ns)  # said when it is true
                how = f" over {settings.processes} processes"
                run.announce_start(announce, settings, server, how)
            try:
                await fleet.finished()
            finally:
                if marker is not None:
                    marker.cancel()
        await scrape.finish()
    finally:
        await scrape.close()


async def _mark_window(measure_start_ns: int, cost: run.Cost, scrape: ServerScrape) -> None:
    """At the end of the warm-up (on the children's clock): the target's CPU and metrics."""
    await PerfClock().sleep_until_ns(measure_start_ns)
    cost.mark_start()
    scrape.mark_start()
