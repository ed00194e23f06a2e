"""One run's settings, built one way for every caller: ``servelab run`` (from its options), a
bench cell, a sweep point, the Python API. ``load_plan`` turns the load options into a
``LoadPlan``; ``PayloadSpec.from_options`` the payload options into a spec; ``RunSettings``
validates the whole against the target's registry entry; ``aimed_at`` points it at a target
servelab started; ``driver_options`` is what the registry's driver factory gets.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loadtests.drivers.registry import HTTP_SERVERS, DriverOptions, Target, target
from loadtests.engine.data import read_rows
from loadtests.engine.harness import DEFAULT_GRACE_S, LoadPlan
from loadtests.engine.parts import SchedulePart
from loadtests.engine.schedule import Arrival, RateProfile, read_trace
from loadtests.engine.workload import PayloadSpec
from loadtests.errors import ConfigError, LoadOptionError
from loadtests.jobs.safety import check_target_allowed
from loadtests.jobs.target_checks import check_target_options
from loadtests.protocols.base import HttpContract
from loadtests.protocols.registry import ProtocolOptions, protocol
from targets.edge.config import RUNTIMES as EDGE_RUNTIMES
from targets.edge.link import LinkSchedule, parse_link_profile
from targets.models import input_width
from targets.spec import load_model

if TYPE_CHECKING:
    import grpc

    from loadtests.jobs.launch import LaunchedTarget
    from loadtests.protocols.oip_grpc import OipGrpc

HTTP_CLIENTS = ("auto", "fast", "aiohttp")
DEFAULT_DURATION_S = 10.0
DEFAULT_CONCURRENCY = 8
DEFAULT_INSTANCES = 8
LEARNED_PREFIXES = ("sklearn:", "onnx:")


def load_plan(
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    stages: Sequence[tuple[float, float]] | None = None,
    ramp: bool = False,
    trace: str | None = None,
    arrival: Arrival = "constant",
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 0.0,
    think_time_s: float = 0.0,
    busy_poll: bool = False,
    grace_s: float = DEFAULT_GRACE_S,
) -> LoadPlan:
    """The plan the load options describe: open loop when a rate, stages or a trace is given,
    else closed loop at ``concurrency`` (default 8). Without ``duration_s`` or ``requests`` the
    run lasts 10 s."""
    if ramp and not stages:
        raise LoadOptionError("--ramp needs --stages")
    if duration_s is None and not requests:
        duration_s = DEFAULT_DURATION_S
    closed = LoadPlan(
        mode="closed",
        concurrency=concurrency or DEFAULT_CONCURRENCY,
        think_time_s=think_time_s,
        duration_s=duration_s,
        requests=requests,
        warmup_s=warmup_s,
        busy_poll=busy_poll,
        drain_timeout_s=grace_s,
    )
    if not (rate or stages or trace):
        return closed
    profile = None
    if rate:
        profile = RateProfile.constant(rate)
    elif stages:
        profile = RateProfile.steps(stages, ramp=ramp)
    return dataclasses.replace(
        closed,
        mode="open",
        concurrency=1,
        think_time_s=0.0,
        profile=profile,
        arrival=arrival,
        trace_offsets_ns=read_trace(trace) if trace else None,
    )


def function_front_args(idle_timeout_s: float | None, max_instances: int | None) -> tuple[str, ...]:
    """``RunSettings.server_args`` for the function front servelab starts (none given: its
    defaults)."""
    args: tuple[str, ...] = ()
    if idle_timeout_s is not None:
        args += ("--idle-timeout", f"{idle_timeout_s:g}s")
    if max_instances is not None:
        args += ("--max-function-instances", str(max_instances))
    return args


def default_instances(model_spec: str) -> tuple[int, int]:
    """Features per row when ``--instances`` is not given: the width a learned model declares
    (``digits`` takes 64; ``sklearn:``/``onnx:`` files say theirs), else 8. Only those models are
    loaded here; user code (``package.module:callable``) runs in the target alone."""
    spec = model_spec.strip()
    if spec == "digits" or spec.startswith(LEARNED_PREFIXES):
        width = input_width(load_model(model_spec))
        if width is not None:
            return width, width
    return DEFAULT_INSTANCES, DEFAULT_INSTANCES


@dataclass(frozen=True, slots=True)
class RunSettings:
    """Everything one run was asked for, validated against its target's registry entry."""

    target: str
    model: str = "reference"
    url: str | None = None
    address: str | None = None
    plan: LoadPlan = field(default_factory=LoadPlan)
    payloads: PayloadSpec = field(default_factory=PayloadSpec)
    seed: int = 42
    api: str = "v1"
    batch_size: int | None = None
    window_ms: float | None = None
    connections: int | None = None
    http_client: str = "auto"  # REST: "fast" (drivers/http1.py), "aiohttp", or auto by scheme
    loop: str = "harness"  # "tight": inprocess only, the model called back to back (tight.py)
    timeout_s: float = 30.0
    label: str | None = None
    profile: str | None = None
    group: str | None = None
    repeat: int = 0
    target_pid: int | None = None
    allow_remote: bool = False
    model_given: bool = True  # False: --model was left at its default (recorded as unknown
    # for a target servelab did not start)
    protocol: str = "servelab"  # the wire contract (loadtests/protocols/registry.py)
    protocol_options: ProtocolOptions = field(default_factory=ProtocolOptions)
    cacert: str | None = None  # https: trust this CA bundle
    insecure: bool = False  # https: do not verify the server's certificate
    # The HTTP contract as the server described it (OIP metadata, BentoML's docs), set by the
    # run before the load so the probe and the run send the same requests.
    contract: HttpContract | None = None
    grpc_contract: OipGrpc | None = None  # the same, for OIP over gRPC
    processes: int = 1  # generator processes sharing the load (jobs/processes.py)
    part: SchedulePart | None = None  # set in each of those processes: its share
    # More options for the server servelab starts for the run: a function front's
    # --idle-timeout / --max-function-instances (``function_front_args``).
    server_args: tuple[str, ...] = ()
    edge_runtime: str = "python"  # edge: what computes the model (--runtime python|wasm)
    # edge: a fault proxy between the runtime and its remote, this profile (targets/edge/link.py)
    flaky_link: str | None = None

    def __post_init__(self) -> None:
        spec = target(self.target)
        if self.flaky_link is not None:
            if not spec.takes("flaky_link"):
                raise LoadOptionError(f"--flaky-link goes with --target edge, not {self.target}")
            if self.processes > 1:  # one edge device behind one link
                raise LoadOptionError("--flaky-link runs one edge runtime: no --processes")
            self.link_schedule()  # a bad profile: one line, before any load
        self._check_processes()
        if self.server_args and not spec.takes("front"):
            raise LoadOptionError(
                "--idle-timeout and --max-function-instances go with --target function"
            )
        if self.server_args and self.url:
            raise LoadOptionError(
                "--idle-timeout and --max-function-instances configure the front servelab "
                "starts; with --url the front is already running"
            )
        self._check_edge_runtime(spec)
        if self.loop not in ("harness", "tight"):
            raise LoadOptionError(f"--loop must be harness or tight, got {self.loop!r}")
        if self.loop == "tight" and not spec.takes("tight"):
            raise LoadOptionError(f"--loop tight needs --target inprocess, not {self.target}")
        if self.loop == "tight" and self.payloads.invalid_fraction:
            raise LoadOptionError("--loop tight calls the model directly: no --invalid-fraction")
        if self.http_client not in HTTP_CLIENTS:
            raise LoadOptionError(
                f"--client must be one of {', '.join(HTTP_CLIENTS)}, got {self.http_client!r}"
            )
        check_target_options(
            self.target, url=self.url, address=self.address, target_pid=self.target_pid
        )
        if self.url is not None:
            check_target_allowed(self.url, allow_remote=self.allow_remote, option="--url")
        if self.address is not None:
            check_target_allowed(self.address, allow_remote=self.allow_remote, option="--address")
        protocol(self.protocol).check_target(self.target)
        if self.payloads.data is not None:
            read_rows(self.payloads.data)  # a bad --data file: one line, before any load
        if (self.cacert or self.insecure) and not (
            (self.url or "").startswith("https://") or self.address
        ):
            raise LoadOptionError("--cacert and --insecure go with an https:// --url")
        if spec.server == "rest" or spec.takes("url"):
            self.http_contract()  # a missing --model-name or a bad template: before any load
        elif spec.server == "grpc":
            self.new_grpc_contract()
        if self.insecure and spec.server == "grpc":
            raise LoadOptionError("--insecure is for https; gRPC over TLS verifies (--cacert)")

    def link_schedule(self) -> LinkSchedule | None:
        """The flaky link's schedule (seeded by the run's seed), or ``None`` without one."""
        if self.flaky_link is None:
            return None
        return LinkSchedule(parse_link_profile(self.flaky_link), self.seed)

    def _check_processes(self) -> None:
        """``--processes N``: a closed loop gives each process at least one of its workers
        (``--loop tight``: one caller each), and a request count at least one request each."""
        count, plan = self.processes, self.plan
        if type(count) is not int or count < 1:
            raise LoadOptionError(f"--processes must be a positive integer, got {count!r}")
        if self.part is not None and self.part.count != count:
            raise LoadOptionError(f"part {self.part} is not one of {count} processes")
        if count == 1 or self.part is not None:  # a part's plan is already its share
            return
        if self.loop == "tight" and plan.concurrency != count:
            raise LoadOptionError(
                f"--loop tight runs one caller per process: --concurrency {plan.concurrency} "
                f"is not --processes {count} (leave --concurrency out)"
            )
        if plan.mode == "closed" and count > plan.concurrency:
            raise LoadOptionError(
                f"--processes {count} exceeds --concurrency {plan.concurrency}: each generator "
                "process runs at least one of the closed loop's workers"
            )
        if plan.requests is not None and count > plan.requests:
            raise LoadOptionError(
                f"--processes {count} exceeds --requests {plan.requests}: each generator "
                "process sends at least one request"
            )

    def _check_edge_runtime(self, spec: Target) -> None:
        if self.edge_runtime not in EDGE_RUNTIMES:
            raise LoadOptionError(
                f"--runtime must be one of {', '.join(EDGE_RUNTIMES)}, got {self.edge_runtime!r}"
            )
        if self.edge_runtime != "python" and not spec.takes("runtime"):
            raise LoadOptionError(f"--runtime goes with --target edge, not {self.target}")

    @property
    def spec(self) -> Target:
        return target(self.target)

    @property
    def rate_per_s(self) -> float | None:
        profile = self.plan.profile
        if self.plan.mode != "open" or profile is None:
            return None
        return profile.segments[0].start_rate if len(profile.segments) == 1 else None

    def aimed_at(self, server: LaunchedTarget | None) -> RunSettings:
        """These settings pointed at ``server``, a target servelab started for them (its URL or
        address unless one was given, and its PID for the cost when it runs apart)."""
        if server is None:
            return self
        kind = self.spec.server
        return dataclasses.replace(
            self,
            url=self.url or (server.url if kind in HTTP_SERVERS else None),
            address=self.address or (server.address if kind == "grpc" else None),
            target_pid=None if self.spec.in_process else server.pid,
        )

    def http_contract(self) -> HttpContract:
        """A fresh contract for the HTTP targets (the probe and the run share one, described
        by the server's metadata before the load)."""
        return protocol(self.protocol).http(self.protocol_options)

    def new_grpc_contract(self) -> OipGrpc | None:
        """A fresh gRPC contract when the protocol has one (``None``: servelab's Predictor)."""
        factory = protocol(self.protocol).grpc
        return None if factory is None else factory(self.protocol_options)

    def grpc_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS for a gRPC target when ``--cacert`` names a bundle (``None``: plaintext)."""
        if self.cacert is None:
            return None
        import grpc

        try:
            roots = Path(self.cacert).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read --cacert {self.cacert}: {exc.strerror}") from None
        return grpc.ssl_channel_credentials(root_certificates=roots)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context an https target is reached with (``None``: plain http)."""
        if not (self.url or "").startswith("https://"):
            return None
        context = ssl.create_default_context(cafile=self.cacert)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def driver_options(self, server: LaunchedTarget | None = None) -> DriverOptions:
        """What the target's driver factory gets (``server``: the one servelab started)."""
        kind = self.spec.server
        url = self.url or (server.url if server is not None and kind in HTTP_SERVERS else None)
        address = self.address or (
            server.address if server is not None and kind == "grpc" else None
        )
        return DriverOptions(
            model=self.model,
            url=url,
            address=address,
            connections=self._connections(),
            channels=self.connections,
            timeout_s=self.timeout_s,
            batch_size=self.batch_size,
            window_ms=self.window_ms,
            client=self.http_client,
            contract=self.contract,
            ssl=self.ssl_context(),
            grpc_contract=self.grpc_contract,
            credentials=self.grpc_credentials(),
            edge_runtime=self.edge_runtime,
            link=self.link_schedule(),
        )

    def _connections(self) -> int:
        """``--connections``, else the concurrency, else the rate's share within 4..64."""
        if self.connections:
            return self.connections
        if self.plan.mode == "closed":
            return self.plan.concurrency
        return min(max(int((self.rate_per_s or 100) / 100), 4), 64)
