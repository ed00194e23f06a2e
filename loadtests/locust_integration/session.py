"""One Locust process's servelab life, without gevent: the listeners' bodies, and at the end
the merged result, its verdict, the thresholds and the exit code Locust should return.

``loadtests/locustfile.py`` creates one ``Session`` per process when Locust fires ``init`` and
registers the session's bound methods as listeners::

    role     records requests   sends snapshots     collects snapshots   writes the result
    local    yes                 (to itself)         yes                  at quitting
    worker   yes                 report_to_master    -                    -
    master   -                   -                   worker_report        at quitting

The result is written when Locust quits, not at ``test_stop``: a master fires ``test_stop``
before its workers have sent their last report, and gives them half a second to do so while it
quits. Locust objects are used duck-typed (``environment.events``, ``.stats.total``, ``.host``,
``.parsed_options``, ``.runner``), so this module imports neither Locust nor gevent and runs
under a fake environment in tests.
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from loadtests.engine.recorder import Recorder
from loadtests.jobs.safety import RemoteTargetRefused, check_target_allowed
from loadtests.jobs.target_checks import TargetUnusable, check_base_url
from loadtests.locust_integration.results import (
    WIRE_KEY,
    Collection,
    ProcessRecording,
    ProcessSummary,
    SideStats,
    judge_locust,
    transport_extra,
)
from loadtests.locust_integration.shape_plans import ShapePlan
from loadtests.locust_integration.support import Workload, option, pacing_period_s
from loadtests.results.document import ResultDocument
from loadtests.results.environment import fingerprint
from loadtests.results.gates import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    combine,
    result_exit_code,
    with_default_gate,
)
from loadtests.results.result import RunInfo, build_result, write_result
from loadtests.results.thresholds import AbsoluteThreshold, Check, check_absolute, parse_thresholds

if TYPE_CHECKING:
    from targets.edge.runtime import EdgeRuntime
    from targets.models import Model

Role = Literal["local", "worker", "master"]
LOCUST_BUCKETS_NOTE: Final = (
    "Locust's own figures: response times kept in ~2-significant-digit buckets "
    "(whole ms below 100 ms); servelab's summary is exact to HDR precision (3 digits)"
)


class Session:
    """servelab's state in one Locust process (see the module docstring): its recording (local
    runner, workers), the collection of every process's figures (local runner, master), the
    workload, and what the batch and edge users of this process share."""

    def __init__(self, environment: Any, role: Role) -> None:
        self.environment = environment
        self.role = role
        self.recording = ProcessRecording() if role != "master" else None
        self.collection = Collection()
        self._workload: Workload | None = None
        self.period_s = 0.0
        self.refusal: str | None = None
        self.window = [time.time(), time.time()]  # wall clock: this test's start and stop
        self.test_stopped = False
        self.batch_users = 0
        self.edge_lock = threading.Lock()  # under Locust, monkey-patched: a greenlet lock
        self._model: Model | None = None
        self._edge: EdgeRuntime | None = None
        self._batch_dir: Path | None = None

    @property
    def options(self) -> object:
        return self.environment.parsed_options

    def register(self) -> None:
        """Our bound methods as listeners on this environment's events."""
        hooks = self.environment.events
        hooks.test_start.add_listener(self.on_test_start)
        hooks.test_stop.add_listener(self.on_test_stop)
        hooks.quitting.add_listener(self.on_quitting)
        if self.recording is not None:
            hooks.request.add_listener(self.on_request)
        if self.role == "worker":
            hooks.report_to_master.add_listener(self.on_report_to_master)
        if self.role == "master":
            hooks.worker_report.add_listener(self.on_worker_report)

    def shape_plan(self) -> ShapePlan | None:
        """The plan of the shape Locust runs, when it is one of servelab's
        (``loadtests/locust_integration/shapes.py``)."""
        plan_for = getattr(getattr(self.environment, "shape_class", None), "plan_for", None)
        plan: ShapePlan | None = plan_for(self.options) if callable(plan_for) else None
        return plan

    def configuration_error(self) -> str | None:
        """What makes this run impossible before any load: a remote target without
        ``--allow-remote``, or a ``--shape`` without its shape class (or the reverse)."""
        refusal = self.refused_target()
        if refusal:
            return refusal
        has_shape = getattr(self.environment, "shape_class", None) is not None
        if option(self.options, "shape") and not has_shape:
            return (
                "--shape needs loadtests/locust_integration/shapes.py in -f "
                "(-f loadtests/locustfile.py,<it>)"
            )
        try:
            self.shape_plan()
        except ValueError as exc:
            return str(exc)
        return None

    def refused_target(self) -> str | None:
        """Why the configured target may not be loaded (not loopback, no ``--allow-remote``)."""
        allow = bool(option(self.options, "allow_remote", False))
        grpc_host = option(self.options, "grpc_host")
        host = self.environment.host
        if host:
            try:  # grpc://HOST:PORT is how GrpcUser may be given its target
                check_base_url(str(host), option="--host", schemes=("http", "https", "grpc"))
            except TargetUnusable as exc:
                return str(exc)
        for name, target in (("--host", self.environment.host), ("--grpc-host", grpc_host)):
            if target:
                try:
                    check_target_allowed(str(target), allow_remote=allow, option=name)
                except (RemoteTargetRefused, ValueError) as exc:
                    return str(exc)
        return None

    # -- listeners ------------------------------------------------------------------------------

    def on_test_start(self, **_kwargs: Any) -> None:
        self.window = [time.time(), time.time()]
        self.test_stopped = False
        self.collection.reset()
        self.refusal = self.refused_target()  # the web UI can change the host per test
        if self.refusal:
            print(f"servelab: {self.refusal}", file=sys.stderr)
        if self.recording is not None:  # on a worker: after the master's options arrived
            self._workload = Workload(self.options)
            self.period_s = pacing_period_s(self.shape_plan())
            self.recording.start()

    def on_test_stop(self, **_kwargs: Any) -> None:
        self.window[1] = time.time()
        self.test_stopped = True
        if self.recording is not None:
            self.recording.stop()

    def on_request(
        self,
        response_time: float | None = None,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        start_time: float | None = None,
        **_kwargs: Any,
    ) -> None:
        if self.recording is not None:
            self.recording.record(response_time, start_time, context, exception)

    def on_report_to_master(self, client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        if self.recording is not None:
            data[WIRE_KEY] = self.recording.snapshot()

    def on_worker_report(self, client_id: str, data: dict[str, Any], **_kwargs: Any) -> None:
        snapshot = data.get(WIRE_KEY)
        if snapshot is not None:
            self.collection.absorb(client_id, snapshot)

    def on_quitting(self, **_kwargs: Any) -> None:
        """Write the result (local runner, master), set the exit code Locust returns, and
        release what users shared — only now: a batch job a stopped user left in a thread may
        still be writing into its directory when the test stops."""
        try:
            if self.role != "worker":
                self._write_result()
        finally:
            edge, self._edge = self._edge, None
            if edge is not None:
                with self.edge_lock:
                    edge.close()
            directory, self._batch_dir = self._batch_dir, None
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)

    def _write_result(self) -> None:
        interrupted = not self.test_stopped  # Ctrl-C / SIGTERM before the test ended
        if interrupted and self.environment.runner is not None:
            self.environment.runner.quit()  # stop users; a master waits for final reports
        if self.recording is not None:
            if not self.recording.stopped:
                self.recording.stop()
            self.collection.absorb("local", self.recording.snapshot())
        # servelab's gates decide, not Locust's "exit 1 on any failure": deliberate invalid
        # payloads are expected rejections, and a failed run breaches the default gate anyway.
        self.environment.process_exit_code = self.finish(interrupted=interrupted)

    # -- the end --------------------------------------------------------------------------------

    def finish(self, *, interrupted: bool) -> int:
        """Merge, check the gates, write the result; the exit code (``loadtests.results.gates``:
        0 ok, 1 a gate breached, 2 the result could not be written, 3 INVALID, 130 interrupted)."""
        environment = self.environment
        recorder, side, processes = self.collection.merged()
        total = environment.stats.total
        classes = list(environment.user_classes)
        run = LocustRun(
            targets=tuple(getattr(cls, "servelab_target", "locust") for cls in classes),
            user_classes=tuple(cls.__name__ for cls in classes),
            options=self.options,
            window_start_s=self.window[0],
            window_end_s=time.time() if interrupted else self.window[1],
            interrupted=interrupted,
            distributed=self.role == "master",
            locust_stats={
                "requests": total.num_requests,
                "failures": total.num_failures,
                "p50_ms": total.get_response_time_percentile(0.5),
                "p99_ms": total.get_response_time_percentile(0.99),
            },
        )
        environment = fingerprint() | {"event_loop": "gevent"}  # Locust runs on gevent, not asyncio
        result = build_locust_result(run, recorder, side, processes, environment=environment)
        expressions = with_default_gate(
            list(option(self.options, "threshold", [])),
            default_gate=not option(self.options, "no_default_gate", False),
        )
        checks = evaluate_thresholds(expressions, result["summary"])
        result["extra"]["thresholds"] = [asdict(check) for check in checks]
        for line in [summary_line(result), *threshold_lines(checks)]:
            print(line, file=sys.stderr)
        path = Path(option(self.options, "result") or default_result_path())
        try:
            write_result(path, result)
        except OSError as exc:
            print(f"servelab: cannot write the result to {path}: {exc}", file=sys.stderr)
            return combine([EXIT_BAD_INPUT, EXIT_INTERRUPTED] if interrupted else [EXIT_BAD_INPUT])
        print(f"servelab: result {path}", file=sys.stderr)
        breached = any(not check.passed for check in checks)
        allow_invalid = bool(option(self.options, "allow_invalid", False))
        return result_exit_code(result, breached, allow_invalid=allow_invalid)

    # -- what users share -------------------------------------------------------------------------

    def workload(self) -> Workload:
        """This process's payloads (made at test start, once the master's options are in)."""
        if self._workload is None:
            self._workload = Workload(self.options)
        return self._workload

    def side(self) -> SideStats:
        """Where users add transport figures (stream, batch, edge) in this process."""
        if self.recording is None:
            raise RuntimeError("a Locust master runs no users")
        return self.recording.side

    def model(self) -> Model:
        if self._model is None:
            from targets.spec import load_model

            self._model = load_model(str(option(self.options, "model", "reference")))
        return self._model

    def edge_runtime(self) -> EdgeRuntime:
        """One runtime per process, as one edge device: its users queue in front of it (see
        ``loadtests.drivers.edge`` for why one runtime, not one per user); it lives until Locust
        quits, so its cache stays warm across tests. Hold ``edge_lock``."""
        if self._edge is None:
            from targets.edge.runtime import EdgeConfig, EdgeRuntime

            config = EdgeConfig(
                model=str(option(self.options, "model", "reference")),
                remote=self.environment.host or None,
            )
            self._edge = EdgeRuntime.from_config(config)
        return self._edge

    def batch_directory(self) -> Path:
        if self._batch_dir is None:
            self._batch_dir = Path(tempfile.mkdtemp(prefix="servelab-locust-batch-"))
        return self._batch_dir


# -- the result -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocustRun:
    """What the locustfile knows about the test, gathered from Locust's objects."""

    targets: tuple[str, ...]  # servelab target of each user class that ran
    user_classes: tuple[str, ...]
    options: object
    window_start_s: float  # wall clock (epoch seconds): test start .. stop on this node
    window_end_s: float
    interrupted: bool
    distributed: bool
    locust_stats: Mapping[str, Any]  # Locust's own totals (bucketed), for comparison


IN_PROCESS_USERS: Final = frozenset({"batch"})  # their model runs inside Locust


def _recorded_model(options: object, targets: list[str]) -> str | None:
    """``run.model``: the one named, the one in-process users ran, else unknown (the users'
    target is a server whose model servelab cannot see)."""
    named = option(options, "model")
    if named is not None:
        return str(named)
    return "reference" if targets and set(targets) <= IN_PROCESS_USERS else None


def build_locust_result(
    run: LocustRun,
    recorder: Recorder,
    side: SideStats,
    processes: list[ProcessSummary],
    *,
    environment: dict[str, Any],
) -> ResultDocument:
    """The servelab result document (``tool: locust``) of a merged Locust test."""
    options = run.options
    targets = sorted(set(run.targets))
    target = targets[0] if len(targets) == 1 else "mixed"
    start_second = int(run.window_start_s)
    recorder.finish()
    recorder.timeseries = [
        {**row, "t_s": int(row["t_s"]) - start_second} for row in recorder.timeseries
    ]
    window_s = max(run.window_end_s - run.window_start_s, 1e-9)
    run_time = option(options, "run_time")
    info = RunInfo(
        target=target,
        transport=target,
        mode="closed",  # Locust users send the next request when the last one ended
        model=_recorded_model(options, targets),
        seed=int(option(options, "seed", 42)),
        url=option(options, "host") or None,
        address=option(options, "grpc_host") or None,
        concurrency=option(options, "num_users"),
        duration_s=float(run_time) if run_time else None,
        batch_size=int(option(options, "batch_size", 256)) if "batch" in targets else None,
        api=str(option(options, "api", "v1")),
        tool="locust",
        label=option(options, "label"),
        partial=run.interrupted,
    )
    verdict = judge_locust(
        recorder, processes, interrupted=run.interrupted, distributed=run.distributed
    )
    extra: dict[str, Any] = {
        "bucketed_percentiles": False,
        "user_classes": list(run.user_classes),
        **transport_extra(side, window_s),
        "locust": {**run.locust_stats, "note": LOCUST_BUCKETS_NOTE},
        "workers": [{**asdict(p), "cpu_share": round(p.cpu_share, 4)} for p in processes],
        "generator": {
            "processes": len(processes),
            "max_cpu_share": max((p.cpu_share for p in processes), default=0.0),
            "window_epoch_s": [run.window_start_s, run.window_end_s],
        },
    }
    if option(options, "shape"):
        extra["shape"] = option(options, "shape")
    return build_result(
        info, recorder, window_s=window_s, verdict=verdict, environment=environment, extra=extra
    )


def evaluate_thresholds(expressions: list[str], summary: Mapping[str, Any]) -> list[Check]:
    """Every ``--threshold`` against the merged summary (already validated at parse time). A run
    that answered nothing fails them all: its zero latencies would pass any limit."""
    thresholds = [
        t for t in parse_thresholds(expressions, allow_relative=False)
        if isinstance(t, AbsoluteThreshold)
    ]  # fmt: skip
    if summary["requests"] - summary["expected_rejections"] <= 0:
        detail = "no answered requests: nothing to check"
        return [Check(t.expression, False, math.nan, t.value, detail) for t in thresholds]
    return check_absolute(list(thresholds), summary)


def threshold_lines(checks: list[Check]) -> list[str]:
    """One line per threshold, failures saying by how much."""
    return [
        f"servelab: threshold {'ok' if c.passed else 'FAILED'} {c.expression!r}: {c.detail}"
        for c in checks
    ]


def summary_line(result: Mapping[str, Any]) -> str:
    summary, verdict = result["summary"], result["verdict"]
    latency = summary["latency_ms"]
    state = "VALID" if verdict["valid"] else "INVALID — " + "; ".join(verdict["reasons"])
    return (
        f"servelab: {summary['requests']} requests, {summary['failures']} failures, "
        f"{summary['expected_rejections']} expected rejections; p50 {latency['p50']:.3f} ms, "
        f"p99 {latency['p99']:.3f} ms (exact); verdict {state}"
    )


def default_result_path(now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("results") / f"locust-{stamp}.json"
