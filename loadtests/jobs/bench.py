"""``servelab bench``: the main job — every serving pattern, measured, compared, reported.

With no config it runs the embedded default (all seven patterns on the reference model, closed
loop, bounded: ~1.5 min; ``--quick`` ~25 s). Servers are started once per (kind, model,
profile) on free loopback ports and shared by the runs that need them; every run writes its own
result file; at the end the report is written and a VALID/INVALID table printed. Ctrl-C stops
the run in progress (its partial result is kept), skips the rest, still writes the report of
what finished, and stops every process servelab started.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtests.drivers.registry import target
from loadtests.engine.loop import run as run_on_loop
from loadtests.engine.workload import PayloadSpec
from loadtests.jobs.bench_config import BenchConfig, Cell
from loadtests.jobs.external import ServerSpec, start_server
from loadtests.jobs.freshness import bench_freshness
from loadtests.jobs.launch import LaunchedTarget, launch_target
from loadtests.jobs.processes import execute
from loadtests.jobs.profiles import HardwareProfile, generator_pinned, measure_server
from loadtests.jobs.settings import RunSettings, default_instances, load_plan
from loadtests.results.document import ResultDocument, SummaryBlock
from loadtests.results.gates import EXIT_INTERRUPTED, combine, result_exit_code, with_default_gate
from loadtests.results.thresholds import parse_thresholds
from targets.files import user_path


@dataclass(frozen=True, slots=True)
class PlannedRun:
    index: int
    cell: Cell
    mode: str
    level: float
    profile: HardwareProfile
    repeat: int

    @property
    def name(self) -> str:
        load = f"c{int(self.level)}" if self.mode == "closed" else f"r{self.level:g}"
        load = "stages" if self.mode == "stages" else load
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{_who(self.cell)}-{load}-{self.profile.name}")
        return f"{self.index:03d}-{slug}-rep{self.repeat}"


def plan_runs(config: BenchConfig) -> list[PlannedRun]:
    runs: list[PlannedRun] = []
    for profile in config.profiles:
        for cell in config.cells:
            if cell.profiles is not None and profile.name not in cell.profiles:
                continue
            for mode, level in cell.loads:
                for repeat in range(config.repeat):
                    runs.append(PlannedRun(len(runs) + 1, cell, mode, level, profile, repeat))
    return runs


class ServerPool:
    """Servers shared by runs: one per (kind, model, profile), started on first use."""

    def __init__(self, stack: contextlib.ExitStack, external: Sequence[ServerSpec] = ()) -> None:
        self._stack = stack
        self._servers: dict[tuple[str, str, str], LaunchedTarget] = {}
        self._external = {spec.name: spec for spec in external}
        self._running: dict[str, contextlib.ExitStack] = {}  # third-party servers, by name

    def for_cell(self, cell: Cell, profile: HardwareProfile) -> LaunchedTarget | None:
        """The server ``cell`` loads: its ``[[servers]]`` one, servelab's own target for its
        transport, or none (in-process)."""
        if cell.server is not None:
            key = (f"external:{cell.server}", "", profile.name)
            if key not in self._servers:
                stack = self._stack.enter_context(contextlib.ExitStack())
                spec = self._external[cell.server]
                self._servers[key] = stack.enter_context(start_server(spec, profile.cpus))
                self._running[cell.server] = stack
            return self._servers[key]
        kind = target(cell.target).server
        return self.get(kind, cell.model, profile, cell.server_args) if kind else None

    def get(
        self, kind: str, model: str, profile: HardwareProfile, args: Sequence[str] = ()
    ) -> LaunchedTarget:
        """``args``: more options for that server (a function front's): a server of its own."""
        key = (kind if not args else f"{kind} {' '.join(args)}", model, profile.name)
        if key not in self._servers:
            self._servers[key] = self._stack.enter_context(
                launch_target(
                    kind,
                    model_spec=model,
                    extra_args=(*profile.server_args(kind), *args),
                    env=profile.server_env(),
                    cpus=profile.cpus,
                )
            )
        return self._servers[key]

    def release(self, still_needed: set[str]) -> None:
        """Stop the third-party servers no later run loads: one runs at a time."""
        for name in [name for name in self._running if name not in still_needed]:
            self._running.pop(name).close()
            for key in [key for key in self._servers if key[0] == f"external:{name}"]:
                del self._servers[key]


def settings_for(
    run: PlannedRun, config: BenchConfig, server: LaunchedTarget | None
) -> RunSettings:
    """One planned run's settings, through the one builder ``servelab run`` uses."""
    cell = run.cell
    plan = load_plan(
        concurrency=int(run.level) if run.mode == "closed" else None,
        rate=run.level if run.mode == "open" else None,
        stages=cell.stages if run.mode == "stages" else None,
        arrival="poisson" if cell.arrival == "poisson" else "constant",
        duration_s=cell.duration_s,
        warmup_s=cell.warmup_s,
    )
    payloads = PayloadSpec.from_options(
        api=cell.api,
        instances=default_instances(cell.model),
        invalid_fraction=cell.invalid_fraction,
        distinct=cell.distinct,
    )
    return RunSettings(
        target=cell.target,
        model=cell.model,
        plan=plan,
        payloads=payloads,
        seed=config.seed,
        api=cell.api,
        batch_size=cell.batch_size,
        window_ms=cell.window_ms,
        # a wasm edge cell is its own row in the report, beside the python one
        label=cell.label or (None if cell.runtime == "python" else f"runtime {cell.runtime}"),
        profile=run.profile.name,
        group=f"{_who(cell)}|{cell.model}|{run.mode}:{run.level:g}|{run.profile.name}",
        repeat=run.repeat,
        protocol=cell.protocol,
        protocol_options=cell.protocol_options,
        processes=cell.processes,
        connections=cell.connections,
        flaky_link=cell.flaky_link,
        edge_runtime=cell.runtime,
    ).aimed_at(server)


def _who(cell: Cell) -> str:
    """What a cell loads, as its group names it: ``rest``, ``mlserver:rest/oip``, ``rest*2``
    (two generator processes)..."""
    who = cell.target if cell.server is None else f"{cell.server}:{cell.target}"
    who = who if cell.protocol == "servelab" else f"{who}/{cell.protocol}"
    who = who if cell.flaky_link is None else f"{who}~flaky-link"  # behind the fault proxy
    who = who if cell.runtime == "python" else f"{who}[{cell.runtime}]"  # edge[wasm]
    return who if cell.processes == 1 else f"{who}*{cell.processes}"


@contextlib.contextmanager
def _pinned_for(run: PlannedRun) -> Iterator[None]:
    """In-process targets serve from this process: the profile's CPUs are theirs. Otherwise the
    generator keeps off the server's CPUs."""
    if target(run.cell.target).in_process and run.profile.cpus is not None:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, set(run.profile.cpus))
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)
    else:
        with generator_pinned(run.profile):
            yield


def _profile_fields(
    profile: HardwareProfile, pid: int | None
) -> Callable[[LaunchedTarget | None], dict[str, Any]]:
    def fields(_: LaunchedTarget | None) -> dict[str, Any]:
        return {"profile": measure_server(profile, pid)}

    return fields


@dataclass(slots=True)
class BenchOutcome:
    results: list[tuple[PlannedRun, Path, ResultDocument]]
    interrupted: bool
    breaches: list[str]
    codes: list[int] = field(default_factory=list)  # each run's exit code (loadtests.results.gates)

    @property
    def exit_code(self) -> int:
        return combine([*self.codes, EXIT_INTERRUPTED] if self.interrupted else self.codes)


def _ms(summary: SummaryBlock, key: str) -> str:
    """A latency of the successes; ``—`` when nothing succeeded (an empty histogram is not
    0 ms)."""
    return f"{summary['latency_ms'][key]:.2f}" if summary.get("successes") else "—"


def _line(run: PlannedRun, total: int, result: ResultDocument) -> str:
    summary, verdict = result["summary"], result["verdict"]
    state = "VALID" if verdict["valid"] else "INVALID"
    return (
        f"[{run.index}/{total}] {run.name}: {state}  p50 {_ms(summary, 'p50')} ms  "
        f"p99 {_ms(summary, 'p99')} ms  {summary['throughput_rps']:,.0f} req/s  "
        f"schema {summary['schema_success_rate']:.4f}"
    )


def run_bench(
    config: BenchConfig,
    out_dir: Path,
    console: Console,
    *,
    default_gate: bool = True,
    allow_invalid: bool = False,
) -> BenchOutcome:
    """Every planned run, each gated like ``servelab run`` (the default gate unless replaced or
    refused, then the config's and the command line's thresholds); their codes combined."""
    runs = plan_runs(config)
    gates = with_default_gate(list(config.thresholds), default_gate=default_gate)
    parse_thresholds(gates, allow_relative=False)
    outcome = BenchOutcome([], False, [])
    with user_path("create", "--out", out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    console.print(f"servelab bench: {len(runs)} runs from {config.source} → {out_dir}")
    with contextlib.ExitStack() as stack:
        pool = ServerPool(stack, config.servers)
        for position, run in enumerate(runs):
            try:
                pool.release({later.cell.server for later in runs[position:] if later.cell.server})
                path = out_dir / f"{run.name}.json"
                if run.cell.freshness is not None:  # no server, no driver: jobs/freshness.py
                    console.print(f"[{run.index}/{len(runs)}] {run.name} …", highlight=False)
                    output = bench_freshness(
                        run.cell, rate=run.level, seed=config.seed, profile=run.profile,
                        repeat=run.repeat, out=path, gates=gates,
                    )  # fmt: skip
                else:
                    server = pool.for_cell(run.cell, run.profile)
                    settings = settings_for(run, config, server)
                    console.print(f"[{run.index}/{len(runs)}] {run.name} …", highlight=False)

                    fields = _profile_fields(run.profile, settings.target_pid)
                    with _pinned_for(run):
                        running = execute(
                            settings, out=path, install_signal_handlers=True,
                            extra_fields=fields, gates=gates,
                        )  # fmt: skip
                        output = run_on_loop(running)  # fmt: skip
            except KeyboardInterrupt:
                outcome.interrupted = True
                break
            result = output.result
            outcome.results.append((run, path, result))
            console.print(_line(run, len(runs), result), highlight=False)
            for check in output.checks:
                if not check.passed:
                    outcome.breaches.append(f"{run.name}: {check.expression}: {check.detail}")
            outcome.codes.append(
                result_exit_code(result, output.breached, allow_invalid=allow_invalid)
            )
            if not result["verdict"]["valid"] and not allow_invalid:
                reasons = "; ".join(result["verdict"]["reasons"])
                outcome.breaches.append(f"{run.name}: INVALID measurement: {reasons}")
            if result["run"]["partial"]:
                outcome.interrupted = True
                break
    return outcome


def summary_table(outcome: BenchOutcome) -> Table:
    table = Table(title="servelab bench")
    columns = ("#", "target", "load", "profile", "verdict", "p50 ms", "p99 ms", "req/s",
               "schema", "CPU-s/1k")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right" if "ms" in column or column in "req/s" else "left")
    for run, _, result in outcome.results:
        summary, verdict, cost = result["summary"], result["verdict"], result["cost"]
        per_1k = cost.get("cpu_s_per_1k_predictions")
        load = f"c={int(run.level)}" if run.mode == "closed" else f"{run.level:g}/s"
        load = "stages" if run.mode == "stages" else load
        table.add_row(
            str(run.index),
            _who(run.cell),
            load + (f" #{run.repeat}" if run.repeat else ""),
            run.profile.name,
            "VALID" if verdict["valid"] else "INVALID: " + "; ".join(verdict["reasons"]),
            _ms(summary, "p50"),
            _ms(summary, "p99"),
            f"{summary['throughput_rps']:,.0f}",
            f"{summary['schema_success_rate']:.4f}",
            "-" if per_1k is None else f"{per_1k:.4f}",
        )
    return table


def write_report(paths: list[Path], out_dir: Path, title: str) -> Path | None:
    """The report of the finished runs; None when no run finished."""
    from reports.build import build_report

    if not paths:
        return None
    build_report([str(path) for path in paths], out_dir, title=title)
    return out_dir / "index.html"
