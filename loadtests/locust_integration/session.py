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

import dataclasses
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loadtests.errors import LoadOptionError
from loadtests.jobs.safety import RemoteTargetRefused, check_target_allowed
from loadtests.jobs.target_checks import TargetUnusable, check_base_url
from loadtests.locust_integration.contracts import (
    GRPC_SPEAKERS,
    SPEAKERS,
    build_grpc_contract,
    prepared_contract,
    prepared_grpc_contract,
    protocol_name,
    protocol_refusal,
)
from loadtests.locust_integration.document import (
    LocustRun,
    build_locust_result,
    default_result_path,
    evaluate_thresholds,
    summary_line,
    threshold_lines,
)
from loadtests.locust_integration.results import (
    WIRE_KEY,
    Collection,
    ProcessRecording,
    SideStats,
)
from loadtests.locust_integration.shape_plans import ShapePlan
from loadtests.locust_integration.support import (
    Workload,
    grpc_address,
    option,
    pacing_period_s,
)
from loadtests.results.environment import fingerprint
from loadtests.results.gates import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    combine,
    result_exit_code,
    with_default_gate,
)
from loadtests.results.result import write_result

if TYPE_CHECKING:
    from loadtests.locust_integration.edge_link import LocustLink
    from loadtests.protocols.base import HttpContract
    from loadtests.protocols.oip_grpc import OipGrpc
    from targets.edge.runtime import EdgeConfig, EdgeRuntime
    from targets.models import Model

Role = Literal["local", "worker", "master"]


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
        self.contract: HttpContract | None = None  # RestUser's, prepared for ``_contract_host``
        self._contract_host: str | None = None
        self.grpc_contract: OipGrpc | None = None  # the gRPC users' (oip), for ``_grpc_address``
        self._grpc_address: str | None = None
        self.period_s = 0.0
        self.refusal: str | None = None
        self.window = [time.time(), time.time()]  # wall clock: this test's start and stop
        self.test_stopped = False
        self.batch_users = 0
        self.edge_lock = threading.Lock()  # under Locust, monkey-patched: a greenlet lock
        self._model: Model | None = None
        self._edge: EdgeRuntime | None = None
        self.link: LocustLink | None = None  # --flaky-link: the proxy before the edge's remote
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

    def targets(self) -> dict[str, str]:
        """The servelab target of each user class that runs, by name ("locust": your own)."""
        classes = getattr(self.environment, "user_classes", None) or ()
        return {cls.__name__: getattr(cls, "servelab_target", "locust") for cls in classes}

    def configuration_error(self) -> str | None:
        """What makes this run impossible before any load: a remote target without
        ``--allow-remote``, protocol options that cannot work, or a ``--shape`` without its
        shape class (or the reverse)."""
        refusal = self.refused_target() or protocol_refusal(self.options, self.targets())
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
        edge = "edge" in self.targets().values()
        if edge and option(self.options, "flaky_link") and not self.environment.host:
            return "--flaky-link needs --host: the edge runtime's remote, behind the link"
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

    def prepare_contract(self) -> str | None:
        """Build and prepare the users' contracts for the current hosts, once per process
        (again only if the web UI changed the host): readiness checked, the model's metadata
        read — RestUser's on ``--host``, the gRPC users' (``--protocol oip``) on their address.
        Why the target cannot be loaded, in one line, or ``None``."""
        try:
            self._prepare_rest()
            self._prepare_grpc()
        except LoadOptionError as exc:
            return f"--protocol {protocol_name(self.options)}: {exc}"
        return None

    def _prepare_rest(self) -> None:
        host = self.environment.host
        if not host or SPEAKERS.isdisjoint(self.targets().values()):
            return  # no RestUser runs here (FastHttpUser itself refuses a missing host)
        if self.contract is not None and self._contract_host == host:
            return
        self.contract = prepared_contract(self.options, str(host))
        self._contract_host = str(host)
        self._workload = None  # the contract may fix the rows' width

    def _prepare_grpc(self) -> None:
        if GRPC_SPEAKERS.isdisjoint(self.targets().values()):
            return
        if build_grpc_contract(self.options) is None:
            return  # servelab's own Predictor: nothing to ask
        address = grpc_address(self.options, self.environment.host)
        if self._grpc_address == address:
            return
        self.grpc_contract = prepared_grpc_contract(self.options, address)
        self._grpc_address = address
        self._workload = None

    # -- listeners ------------------------------------------------------------------------------

    def on_test_start(self, **_kwargs: Any) -> None:
        self.window = [time.time(), time.time()]
        self.test_stopped = False
        self.collection.reset()
        self.refusal = self.refused_target()  # the web UI can change the host per test
        if not self.refusal and self.recording is not None:  # a worker has the options now
            self.refusal = self.prepare_contract()
        if self.refusal:
            print(f"servelab: {self.refusal}", file=sys.stderr)
        if self.recording is not None:  # on a worker: after the master's options arrived
            self._workload = self._new_workload()
            self.period_s = pacing_period_s(self.shape_plan())
            self.recording.start()

    def on_test_stop(self, **_kwargs: Any) -> None:
        self.window[1] = time.time()
        self.test_stopped = True
        if self.recording is not None:
            if self.link is not None and self._edge is not None:
                self.link.count_window(self.recording.side, self._edge.breaker)
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
            if self.link is not None:
                self.link.stop()
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
        self._add_link(result["extra"], side)
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
            self._workload = self._new_workload()
        return self._workload

    def _new_workload(self) -> Workload:
        contract = self.contract or self.grpc_contract
        width = contract.row_width() if contract is not None else None
        return Workload(self.options, row_width=width)

    def rest_contract(self) -> HttpContract:
        """RestUser's contract, prepared (``prepare_contract``, at test start)."""
        if self.contract is None:  # Locust as a library, without a test start
            problem = self.prepare_contract()
            if problem or self.contract is None:
                raise LoadOptionError(problem or "RestUser needs --host http://...")
        return self.contract

    def oip_contract(self) -> OipGrpc | None:
        """The gRPC users' contract for ``--protocol oip``, prepared (``None``: servelab's own
        ``Predictor``)."""
        if self._grpc_address is None:  # Locust as a library, without a test start
            problem = self.prepare_contract()
            if problem:
                raise LoadOptionError(problem)
        return self.grpc_contract

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

    def _add_link(self, extra: dict[str, Any], side: SideStats) -> None:
        """``extra.link`` of a ``--flaky-link`` run (the proxy's counts: this process's)."""
        from loadtests.locust_integration.edge_link import link_extra, link_schedule

        seed = int(option(self.options, "seed", 42))
        schedule = link_schedule(option(self.options, "flaky_link"), seed)
        if schedule is not None and any(name.startswith("edge_link:") for name in side.counters):
            proxy = self.link.stop() if self.link is not None else None
            extra["link"] = link_extra(side.counters, schedule, proxy)

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
            self._edge = EdgeRuntime.from_config(self._behind_link(config))
        return self._edge

    def _behind_link(self, config: EdgeConfig) -> EdgeConfig:
        """``config`` with its remote behind the flaky link's proxy, when ``--flaky-link``."""
        from loadtests.locust_integration.edge_link import LocustLink, link_schedule

        seed = int(option(self.options, "seed", 42))
        schedule = link_schedule(option(self.options, "flaky_link"), seed)
        if schedule is None or not config.remote:
            return config
        self.link = LocustLink(schedule, config.remote)
        return dataclasses.replace(config, remote=self.link.url, cooldown_s=self.link.cooldown_s)

    def batch_directory(self) -> Path:
        if self._batch_dir is None:
            self._batch_dir = Path(tempfile.mkdtemp(prefix="servelab-locust-batch-"))
        return self._batch_dir
