"""``servelab run``: one measured run of one target, end to end.

Builds the workload and the driver, starts the target on a free loopback port when no
``--url`` / ``--address`` is given (and stops it afterwards), runs the harness with a live
progress display, judges the run, and writes the result file atomically. Ctrl-C / SIGTERM stop
the load, keep what was measured and write it as a partial, invalid result.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadtests.drivers.base import DriverBase
from loadtests.engine.harness import Harness, RunStats, StartGate
from loadtests.engine.parts import WHOLE
from loadtests.engine.recorder import Recorder
from loadtests.engine.tight import TightHarness
from loadtests.engine.workload import Payload, PayloadGenerator, derive_seeds
from loadtests.jobs.launch import LaunchedTarget, launch_for
from loadtests.jobs.scrape import ServerScrape, server_scrape
from loadtests.jobs.settings import RunSettings
from loadtests.jobs.target_checks import prepare_contract, prepare_grpc_contract, probe
from loadtests.results.document import ResultDocument
from loadtests.results.environment import fingerprint, process_tree_cpu_s
from loadtests.results.result import RunInfo, build_result, write_result
from loadtests.results.thresholds import Check, check_absolute, parse_thresholds
from loadtests.results.verdict import judge_run

if TYPE_CHECKING:
    from loadtests.results.events import EventLog


@dataclass(slots=True)
class RunOutput:
    result: ResultDocument
    path: Path | None
    checks: list[Check] = field(default_factory=list)
    recorder: Recorder | None = None  # what was measured, for a parent to merge (--processes)
    stats: RunStats | None = None

    @property
    def breached(self) -> bool:
        return any(not check.passed for check in self.checks)


def make_driver(settings: RunSettings, server: LaunchedTarget | None) -> DriverBase:
    """The driver of ``settings.target``, made by its registry entry (imports only what that
    transport needs)."""
    return settings.spec.make_driver(settings.driver_options(server))


class Cost:
    """CPU seconds of the target over the measured window: its process tree when servelab
    started it (``started``) or ``--target-pid`` names it (``target-pid``), this process for an
    in-process target (``in-process``), what the target reports for itself where its registry
    entry reads that (``reported``: a function front's instances) — else unknown, never the
    generator's own CPU."""

    def __init__(self, settings: RunSettings, server: LaunchedTarget | None) -> None:
        in_process = settings.spec.in_process
        self.pid: int | None = None
        self.reader = settings.spec.cpu_reader
        self.url = settings.url or (server.url if server is not None else None)
        if self.reader is not None and self.url:
            self.source = "reported"
        elif in_process:
            self.source = "in-process"
        elif settings.target_pid is not None:
            self.pid, self.source = settings.target_pid, "target-pid"
        elif server is not None:
            self.pid, self.source = server.pid, "started"
        else:
            self.source = "unknown"
        self.start_s: float | None = None

    def read(self) -> float | None:
        if self.source == "reported" and self.reader is not None and self.url:
            return self.reader(self.url)  # a blocking loopback GET, at the window's two ends
        if self.source == "in-process":
            return time.process_time()
        return process_tree_cpu_s(self.pid) if self.pid else None

    def mark_start(self) -> None:
        self.start_s = self.read()

    def measured(self) -> float | None:
        now = self.read()
        return None if self.start_s is None or now is None else max(now - self.start_s, 0.0)


def _run_info(settings: RunSettings, driver: DriverBase, started: bool) -> RunInfo:
    return run_info(
        settings, started=started, transport=driver.transport,
        batch_size=driver.batch_size, window_ms=driver.window_ms,
    )  # fmt: skip


def run_info(
    settings: RunSettings,
    *,
    started: bool,
    transport: str,
    batch_size: int | None = None,
    window_ms: float | None = None,
) -> RunInfo:
    """The run's settings as the result file records them (``partial`` set at the end);
    ``batch_size`` / ``window_ms``: the driver's own, where it has one. The model of a target
    servelab did not start is unknown unless the user named it."""
    known = settings.model_given or started or settings.spec.in_process
    return RunInfo(
        target=settings.target,
        transport=transport,
        mode=settings.plan.mode,
        model=settings.model if known else None,
        url=settings.url or None,
        address=settings.address or None,
        seed=settings.seed,
        concurrency=settings.plan.concurrency if settings.plan.mode == "closed" else None,
        rate_per_s=settings.rate_per_s,
        arrival=settings.plan.arrival if settings.plan.mode == "open" else None,
        duration_s=settings.plan.duration_s,
        requests_limit=settings.plan.requests,
        warmup_s=settings.plan.warmup_s,
        batch_size=settings.batch_size if batch_size is None else batch_size,
        window_ms=settings.window_ms if window_ms is None else window_ms,
        api=settings.api,
        profile=settings.profile,
        label=settings.label,
        group=settings.group,
        repeat=settings.repeat,
        protocol=settings.protocol,
    )


def _probe_payload(settings: RunSettings) -> Payload:
    """A valid payload of the run's shape and API, for the probe (never a deliberate reject)."""
    spec = dataclasses.replace(settings.payloads, invalid_fraction=0.0)
    return PayloadGenerator(spec, derive_seeds(settings.seed)[0]).payload(0, 0.0)


def _make_harness(
    settings: RunSettings,
    driver: DriverBase,
    payloads: PayloadGenerator,
    schedule_seed: int,
    on_tick: Callable[..., None] | None,
    on_measure_start: Callable[[], None],
    start_gate: StartGate | None = None,
) -> Harness | TightHarness:
    harness: Harness | TightHarness
    if settings.loop == "tight":
        from targets.spec import load_model

        rows = [payloads.payload(slot).rows[0] for slot in range(settings.payloads.distinct)]
        harness = TightHarness(
            load_model(settings.model), rows, settings.plan,
            on_tick=on_tick, on_measure_start=on_measure_start, start_gate=start_gate,
        )  # fmt: skip
    else:
        harness = Harness(
            driver, payloads, settings.plan,
            schedule_seed=schedule_seed, on_tick=on_tick, on_measure_start=on_measure_start,
            on_grace=_say_grace, part=settings.part or WHOLE, start_gate=start_gate,
        )  # fmt: skip
    # one of several generator processes: its seconds' buckets too, for the exact merge
    harness.recorder.keep_seconds = settings.part is not None
    return harness


def _say_grace(outstanding: int, grace_s: float) -> None:
    print(
        f"servelab: {outstanding} request(s) still in flight after the run; waiting up to "
        f"{grace_s:g} s (--grace), then they count as timeouts",
        file=sys.stderr,
        flush=True,
    )


def _event_log(path: Path | None, run: RunInfo, harness: Harness | TightHarness) -> EventLog | None:
    """The ``--events`` log, fed by the recorder at each fold (the hot path is unchanged)."""
    if path is None:
        return None
    from loadtests.results.events import EventLog

    log = EventLog(path, run=dataclasses.asdict(run), environment=fingerprint())
    harness.recorder.sink = log
    return log


def _result(
    settings: RunSettings,
    run: RunInfo,
    driver: DriverBase,
    stats: RunStats,
    recorder: Recorder,
    target_cpu_s: float | None,
    cost_source: str,
    added: dict[str, Any],
) -> ResultDocument:
    """The result document of a finished run: verdict, cost, driver and generator figures."""
    in_process = settings.spec.in_process
    verdict = judge_run(recorder, stats, mode=settings.plan.mode, in_process=in_process)
    run = dataclasses.replace(run, partial=stats.interrupted)
    predictions = recorder.predictions
    cost_block = {
        "target_cpu_s": target_cpu_s,
        "cpu_s_per_1k_predictions": (
            target_cpu_s / predictions * 1000 if target_cpu_s is not None and predictions else None
        ),
        "scope": "this process (in-process target)" if in_process else settings.spec.cost_scope,
        "source": cost_source,
    }
    extra = {**driver.extra(), **added}
    if driver.client is not None:  # which REST client measured
        extra["client"] = driver.client
    extra["generator"] = {
        "cpu_s": stats.generator_cpu_s,
        "wall_s": stats.wall_s,
        "abandoned": stats.abandoned,
        "busy_poll": stats.busy_poll,
        "send_lateness_ms": recorder.lateness.summary_ms(),
    }
    return build_result(
        run,
        recorder,
        window_s=stats.window_s,
        verdict=verdict,
        environment=fingerprint(),
        cost=cost_block,
        extra=extra,
    )


async def _described(settings: RunSettings, server: LaunchedTarget | None) -> RunSettings:
    """For a REST target spoken to in another protocol: its readiness checked and its model
    described (``prepare_contract``), and the payloads as wide as a tensor with a fixed width."""
    if settings.protocol == "servelab" or settings.spec.server is None:
        return settings
    grpc_contract = settings.new_grpc_contract() if settings.spec.server == "grpc" else None
    if grpc_contract is not None:
        address = settings.address or (server.address if server else "")
        credentials = settings.grpc_credentials()
        await prepare_grpc_contract(address, grpc_contract, credentials)
        settings = dataclasses.replace(settings, grpc_contract=grpc_contract)
        width = grpc_contract.row_width()
    else:
        url = settings.url or (server.url if server else "")
        contract = await prepare_contract(url, settings.http_contract(), settings.ssl_context())
        settings = dataclasses.replace(settings, contract=contract)
        width = contract.row_width()
    payloads = settings.payloads
    if width is not None and (payloads.min_instances, payloads.max_instances) != (width, width):
        payloads = dataclasses.replace(payloads, min_instances=width, max_instances=width)
    return dataclasses.replace(settings, payloads=payloads)


async def _measured(
    harness: Harness | TightHarness, scrape: ServerScrape, install: bool
) -> Recorder:
    """The load, with the target's Prometheus metrics scraped around it (``jobs.scrape``)."""
    try:
        await scrape.open()
        with stopped_by_signals(harness.stop, install):
            recorder = await harness.run()
        await scrape.finish()
    finally:
        await scrape.close()
    return recorder


def announce_start(
    announce: Callable[[str], None] | None,
    settings: RunSettings,
    server: LaunchedTarget | None,
    how: str = "",
) -> None:
    """The "load started" line (``how``: e.g. over how many processes)."""
    if announce is not None:
        where = settings.url or settings.address or (server.url if server else "in-process")
        pid = f" (target pid {server.pid})" if server else ""
        announce(f"servelab: load started: {settings.target} at {where}{pid}{how}")


@contextlib.contextmanager
def stopped_by_signals(stop: Callable[[], None], install: bool) -> Iterator[None]:
    """While the load runs, SIGINT/SIGTERM call ``stop`` (the partial result is kept); then the
    caller's handlers are back (the loop alone would leave SIG_DFL)."""
    loop = asyncio.get_running_loop()
    handled: list[tuple[signal.Signals, Any]] = []
    if install:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handled.append((sig, signal.getsignal(sig)))
            loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig, previous in handled:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous)


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
    start_gate: StartGate | None = None,
) -> RunOutput:
    """Run ``settings`` once; returns the result (written to ``out`` when given). ``events``:
    also log every measured request there as JSON lines (``loadtests.results.events``);
    ``gates``: threshold expressions (already validated) checked against the result and
    recorded in ``extra.thresholds``; ``metrics_url``: the target's Prometheus endpoint, else
    found (``jobs.scrape``), read into ``extra.server_metrics``. ``start_gate``: the load starts
    at the instant it gives, once the driver is open (one process of ``--processes``, whose
    ``settings.part`` is its share; its parent scrapes the target, so it does not)."""
    if settings.processes > 1 and settings.part is None:
        raise ValueError("settings for several processes: run them with jobs.processes.execute")
    payload_seed, schedule_seed = derive_seeds(settings.seed)
    spec = settings.spec
    launched = launch_for(
        spec, url=settings.url, address=settings.address, model_spec=settings.model,
        server_args=settings.server_args,
    )  # fmt: skip
    with launched as server:
        settings = await _described(settings, server)
        payloads = PayloadGenerator(settings.payloads, payload_seed)
        if spec.probed:
            where = settings.url or settings.address or (server.url if server else "target")
            await probe(where, lambda: make_driver(settings, server), _probe_payload(settings))
        driver = make_driver(settings, server)
        driver.prepare(payloads.pool())  # requests serialized before the load, not on its clock
        cost = Cost(settings, server)
        scrape = (
            server_scrape(settings, server, metrics_url)
            if settings.part is None
            else ServerScrape(None, given=False, warm_up=False)
        )

        def on_measure_start() -> None:
            cost.mark_start()
            driver.mark_measure_start()  # drivers that count for ``extra`` drop warm-up too
            scrape.mark_start()

        harness = _make_harness(
            settings, driver, payloads, schedule_seed, on_tick, on_measure_start, start_gate
        )
        run = _run_info(settings, driver, server is not None)  # ``started_at`` is the start
        event_log = _event_log(events, run, harness)
        announce_start(announce, settings, server)
        try:
            recorder = await _measured(harness, scrape, install_signal_handlers)
            if event_log is not None:
                event_log.finish(recorder.start_ns, harness.stats)
        finally:
            if event_log is not None:
                event_log.close()
        target_cpu_s = cost.measured()
        added = {**(extra_fields(server) if extra_fields is not None else {}), **scrape.extra()}
    result = _result(
        settings, run, driver, harness.stats, recorder, target_cpu_s, cost.source, added
    )
    checks = check_absolute(parse_thresholds(list(gates), allow_relative=False), result["summary"])
    result["extra"]["thresholds"] = [dataclasses.asdict(check) for check in checks]
    if out is not None:
        write_result(out, result)
    return RunOutput(result, out, checks, recorder, harness.stats)
