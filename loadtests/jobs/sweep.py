"""``servelab sweep``: capacity search — how much load fits under the latency SLO.

1. **Steps**: open-loop rates (constant spacing) doubling from ``--start-rate`` until a point
   fails (p99 over the SLO, schema success under target, achieved throughput under 90 % of the
   offered rate, or an INVALID run). Each point is held until stable — throughput and p99
   within 10 % over ``--windows`` consecutive 1-second windows — else re-measured up to
   ``--attempts`` times and flagged unstable (perf_analyzer's rule) — unless the verdict
   cannot change: a point far past the SLO (p99 > 1.25 x SLO, or saturated) or far inside it
   (p99 < 0.75 x SLO) is not re-run.
2. **Knee**: the highest step whose achieved throughput still tracked the offered rate (≥ 95 %).
3. **Binary search** between the last passing and the first failing rate for the highest rate
   that meets the SLO (MLPerf LoadGen's FindPeakPerformance), to ``--precision``.
Every point writes a result file; the sweep summary (``sweep.json``) lists them all.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests.drivers.registry import target
from loadtests.engine.loop import run as run_on_loop
from loadtests.engine.workload import PayloadSpec
from loadtests.errors import LoadOptionError
from loadtests.jobs.launch import LaunchedTarget, launch_for
from loadtests.jobs.run import execute
from loadtests.jobs.settings import RunSettings, default_instances, load_plan
from loadtests.protocols.registry import ProtocolOptions
from loadtests.results.document import ResultDocument, SummaryBlock
from loadtests.results.gates import EXIT_BREACH, EXIT_INVALID, EXIT_OK
from targets.files import user_path, write_atomic

STABLE_SPREAD = 0.10
LOW_SAMPLE_WINDOW = 1000
CLEAR_MARGIN_HIGH, CLEAR_MARGIN_LOW = 1.25, 0.75
LOW_SAMPLE_P99_SPREAD = 0.25
KNEE_TRACKING = 0.95
SATURATION_TRACKING = 0.90
SWEEP_SUCCESS_RATE = 0.99  # as the default gate of run and bench


@dataclass(frozen=True, slots=True)
class SweepSettings:
    target: str
    model: str = "reference"
    slo_p99_ms: float = 50.0
    schema_target: float = 0.999
    start_rate: float = 50.0
    max_rate: float = 20_000.0
    windows: int = 3
    warmup_s: float = 0.5
    attempts: int = 3
    precision: float = 0.05
    url: str | None = None
    address: str | None = None
    seed: int = 42
    model_given: bool = True  # False: --model left at its default (unknown for a foreign target)
    allow_remote: bool = False
    protocol: str = "servelab"
    protocol_options: ProtocolOptions = field(default_factory=ProtocolOptions)
    cacert: str | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.slo_p99_ms <= 0 or self.start_rate <= 0 or self.max_rate < self.start_rate:
            raise LoadOptionError("sweep needs slo > 0 and 0 < start rate <= max rate")
        if self.windows < 2 or self.attempts < 1 or not 0 < self.precision < 1:
            raise LoadOptionError("sweep needs windows >= 2, attempts >= 1, 0 < precision < 1")


@dataclass(slots=True)
class Point:
    rate: float
    throughput_rps: float
    p99_ms: float
    schema_success_rate: float
    valid: bool
    stable: bool
    attempts: int
    path: str
    phase: str
    passed: bool = False
    reasons: list[str] = field(default_factory=list)


def is_stable(timeseries: list[dict[str, float]], windows: int) -> bool:
    """Throughput and p99 within 10 % of their mean over the last ``windows`` full seconds.

    A p99 from a few hundred samples scatters by more than 10 % on its own, so windows with
    fewer than 1,000 requests are held to p50 within 10 % and p99 within 25 % instead."""
    full = timeseries[:-1] if len(timeseries) > windows else timeseries  # last second is partial
    last = full[-windows:]
    if len(last) < windows:
        return False
    few = min(row["requests"] for row in last) < LOW_SAMPLE_WINDOW
    tolerances = {"requests": STABLE_SPREAD, "p50_ms": STABLE_SPREAD}
    tolerances["p99_ms"] = LOW_SAMPLE_P99_SPREAD if few else STABLE_SPREAD
    for key, spread in tolerances.items():
        values = [row[key] for row in last]
        mean = statistics.fmean(values)
        if mean <= 0 or any(abs(value - mean) > spread * mean for value in values):
            return False
    return True


class Sweep:
    def __init__(self, settings: SweepSettings, out_dir: Path, server: LaunchedTarget | None):
        self.settings = settings
        self.out_dir = out_dir
        self.server = server
        self.points: list[Point] = []

    def _run_settings(self, rate: float) -> RunSettings:
        s = self.settings
        plan = load_plan(
            rate=rate,
            arrival="constant",  # a steady offered load: windows differ by the target only
            duration_s=float(s.windows + 1),
            warmup_s=s.warmup_s,
        )
        return RunSettings(
            target=s.target,
            model=s.model,
            model_given=s.model_given,
            url=s.url,
            address=s.address,
            plan=plan,
            seed=s.seed,
            payloads=PayloadSpec.from_options(instances=default_instances(s.model)),
            label=f"sweep {rate:g}/s",
            group=f"sweep|{s.target}|{s.model}",
            allow_remote=s.allow_remote,
            protocol=s.protocol,
            protocol_options=s.protocol_options,
            cacert=s.cacert,
            insecure=s.insecure,
        ).aimed_at(self.server)

    def measure(self, rate: float, phase: str) -> Point:
        for attempt in range(1, self.settings.attempts + 1):
            path = self.out_dir / f"point-{len(self.points) + 1:02d}-{rate:g}rps-{attempt}.json"
            output = run_on_loop(execute(self._run_settings(rate), out=path))
            result = output.result
            stable = is_stable(result["timeseries"], self.settings.windows)
            if stable or self._clear_cut(rate, result["summary"]):
                break
        summary = result["summary"]
        point = Point(
            rate=rate,
            throughput_rps=summary["throughput_rps"],
            p99_ms=summary["latency_ms"]["p99"],
            schema_success_rate=summary["schema_success_rate"],
            valid=result["verdict"]["valid"],
            stable=stable,
            attempts=attempt,
            path=str(path),
            phase=phase,
        )
        self._judge(point, result)
        self.points.append(point)
        return point

    def _clear_cut(self, rate: float, summary: SummaryBlock) -> bool:
        p99, slo = float(summary["latency_ms"]["p99"]), self.settings.slo_p99_ms
        saturated = float(summary["throughput_rps"]) < SATURATION_TRACKING * rate
        return saturated or p99 > CLEAR_MARGIN_HIGH * slo or p99 < CLEAR_MARGIN_LOW * slo

    def _judge(self, point: Point, result: ResultDocument) -> None:
        s = self.settings
        if point.p99_ms > s.slo_p99_ms:
            point.reasons.append(f"p99 {point.p99_ms:.1f} ms > SLO {s.slo_p99_ms:g} ms")
        if point.schema_success_rate < s.schema_target:
            point.reasons.append(f"schema success {point.schema_success_rate:.4f} < target")
        success_rate = float(result["summary"]["success_rate"])
        if success_rate < SWEEP_SUCCESS_RATE:  # p99 describes successes only: failures count here
            point.reasons.append(f"success rate {success_rate:.4f} < {SWEEP_SUCCESS_RATE:g}")
        if point.throughput_rps < SATURATION_TRACKING * point.rate:
            point.reasons.append(f"saturated: {point.throughput_rps:.0f}/s of {point.rate:g}/s")
        if not point.valid:
            point.reasons.extend(result["verdict"]["reasons"])
        point.passed = not point.reasons

    def run(self) -> dict[str, Any]:
        s = self.settings
        rate, last_good, first_bad = s.start_rate, None, None
        while rate <= s.max_rate:
            point = self.measure(rate, "step")
            if not point.passed:
                first_bad = rate
                break
            last_good = rate
            rate *= 2
        steps = [p for p in self.points if p.phase == "step"]
        tracking = [p for p in steps if p.throughput_rps >= KNEE_TRACKING * p.rate]
        knee = max((p.rate for p in tracking), default=None)
        if last_good is not None and first_bad is not None:
            low, high = last_good, first_bad
            while (high - low) / low > s.precision:
                middle = round((low + high) / 2, 1)
                if self.measure(middle, "search").passed:
                    low = middle
                else:
                    high = middle
            last_good = low
        summary = {
            "kind": "servelab-sweep",
            "settings": asdict(s),
            "capacity_rps": last_good,
            "knee_rps": knee,
            "bounded_by_max_rate": first_bad is None,
            "points": [asdict(point) for point in self.points],
        }
        write_atomic(self.out_dir / "sweep.json", json.dumps(summary, indent=2).encode())
        return summary


def run_sweep(settings: SweepSettings, out_dir: Path) -> dict[str, Any]:
    with user_path("create", "--out", out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    spec = target(settings.target)
    launched = launch_for(
        spec, url=settings.url, address=settings.address, model_spec=settings.model
    )
    with launched as server:
        return Sweep(settings, out_dir, server).run()


def sweep_exit_code(summary: dict[str, Any]) -> int:
    """0: a capacity was found; 1: the first point already failed its SLO; 3: no point was a
    VALID measurement. A failing point is how a sweep ends, not an error."""
    points = summary["points"]
    if not any(point["valid"] for point in points):
        return EXIT_INVALID
    return EXIT_OK if summary["capacity_rps"] is not None else EXIT_BREACH


def draw_curve(summary: dict[str, Any], out_dir: Path) -> Path:
    """The throughput-vs-latency curve, drawn by ``reports``."""
    from reports.sweep import write_sweep_chart

    return write_sweep_chart(summary, out_dir / "sweep.png")
