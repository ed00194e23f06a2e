"""Every target ``servelab`` can load, in one table: what it is, which options it takes, and how
its driver is made. ``servelab run`` / ``sweep`` / ``bench``, the Python API and the CLI's
``--target`` choices all read this table; nothing else lists target names.

Adding a target is one ``Target`` entry here plus its driver module (README: "Adding a target").
Each factory imports only what its transport needs, so listing the targets imports no driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from loadtests.errors import LoadOptionError

if TYPE_CHECKING:
    from ssl import SSLContext

    import grpc

    from loadtests.drivers.base import DriverBase
    from loadtests.protocols.base import HttpContract
    from loadtests.protocols.oip_grpc import OipGrpc
    from targets.edge.link import LinkSchedule

ServerKind = Literal["rest", "grpc", "function"]
HTTP_SERVERS: Final = frozenset({"rest", "function"})  # the kinds of server reached by a URL
# Options a target may accept beyond the common ones (model, load shape, payloads, gates):
# ``url``/``address`` name a running target; ``front`` configures the function front servelab
# starts (--idle-timeout, --max-function-instances); the rest tune one transport.
Option = Literal[
    "url", "address", "connections", "batch_size", "window_ms", "client", "tight", "front",
    "flaky_link", "runtime",
]  # fmt: skip
# Reads a target's CPU seconds so far from its base URL, where the process tree servelab
# started is not the target's cost (a function front counts its instances, not itself).
CpuReader = Callable[[str], float | None]


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """What a driver factory gets: the run's settings for its transport, already resolved
    (``url``/``address``: the target's, given or started; ``connections``: the number the run
    asked for, or its default for the load shape)."""

    model: str
    url: str | None = None
    address: str | None = None
    connections: int = 1
    channels: int | None = None  # gRPC channels, when --connections was given
    timeout_s: float = 30.0
    batch_size: int | None = None
    window_ms: float | None = None
    client: str = "auto"
    contract: HttpContract | None = None  # REST: the wire contract (servelab's own by default)
    ssl: SSLContext | None = None  # REST over https
    grpc_contract: OipGrpc | None = None  # gRPC: the OIP contract (None: servelab's Predictor)
    credentials: grpc.ChannelCredentials | None = None  # gRPC over TLS
    edge_runtime: str = "python"  # edge: what computes the model (--runtime python|wasm)
    link: LinkSchedule | None = None  # edge: a fault proxy before the remote (--flaky-link)


@dataclass(frozen=True, slots=True)
class Target:
    """One loadable target. ``server``: the kind of server servelab starts on loopback when no
    ``--url``/``--address`` names one (``None``: the target runs in this process alone);
    ``in_process``: its model runs in this process, so the run's CPU is the target's cost and
    the generator's own CPU is no verdict rule; ``probed``: one request is sent before the
    clock starts, to refuse a server that is down or speaks another protocol."""

    name: str
    transport: str
    make_driver: Callable[[DriverOptions], DriverBase]
    server: ServerKind | None = None
    in_process: bool = False
    probed: bool = False
    options: frozenset[Option] = frozenset()
    cpu_reader: CpuReader | None = None
    cost_scope: str = "target process tree"

    def takes(self, option: Option) -> bool:
        return option in self.options


def _inprocess(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.inprocess import InProcessDriver
    from targets.spec import load_model

    return InProcessDriver(load_model(options.model))


def _rest_inprocess(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.inprocess import AsgiDriver
    from targets.rest.app import create_app
    from targets.service import PredictionService
    from targets.spec import load_model

    return AsgiDriver(create_app(PredictionService(load_model(options.model), transport="rest")))


def _grpc_inprocess(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.grpc import GrpcInProcessDriver
    from targets.batching import MicroBatcher
    from targets.logs import JsonLogger
    from targets.rpc.server import PredictorServicer
    from targets.service import PredictionService
    from targets.spec import load_model

    service = PredictionService(load_model(options.model), transport="grpc")
    # Unary Predict never touches the batcher; the servicer only needs one to exist.
    servicer = PredictorServicer(
        service, MicroBatcher(service), JsonLogger(level="warning"), pending_limit=1024
    )
    return GrpcInProcessDriver(servicer, timeout_s=options.timeout_s)


def _rest(options: DriverOptions) -> DriverBase:
    url = options.url or ""
    if options.client == "fast" or (options.client == "auto" and url.startswith("http://")):
        from loadtests.drivers.http1 import Http1Driver

        return Http1Driver(
            url, connections=options.connections, timeout_s=options.timeout_s,
            contract=options.contract,
        )  # fmt: skip
    from loadtests.drivers.rest import RestDriver

    return RestDriver(
        url, connections=options.connections, timeout_s=options.timeout_s,
        contract=options.contract, ssl=options.ssl,
    )  # fmt: skip


def _function(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.http1 import Http1Driver
    from targets.function.gateway import COLD_START_HEADER

    # The REST driver, reading the front's cold-start header (one request per instance at a
    # time: more connections than instances only queue at the front).
    return Http1Driver(
        options.url or "", connections=options.connections, timeout_s=options.timeout_s,
        contract=options.contract, cold_start_header=COLD_START_HEADER,
    )  # fmt: skip


def _function_cpu_s(url: str) -> float | None:
    from targets.function.client import instance_cpu_s

    return instance_cpu_s(url)


def _grpc(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.grpc import GrpcUnaryDriver

    if options.grpc_contract is not None:
        from loadtests.drivers.grpc_oip import GrpcOipDriver

        return GrpcOipDriver(
            options.address or "", options.grpc_contract, channels=options.channels or 1,
            timeout_s=options.timeout_s, credentials=options.credentials,
        )  # fmt: skip
    # One HTTP/2 connection multiplexes every call (the gRPC norm); --connections N opts into N
    # channels, each its own connection.
    return GrpcUnaryDriver(
        options.address or "", channels=options.channels or 1, timeout_s=options.timeout_s
    )


def _grpc_stream(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.grpc_stream import GrpcStreamDriver

    if options.grpc_contract is not None:
        from loadtests.drivers.grpc_oip import OipStream

        return GrpcStreamDriver(
            options.address or "", streams=options.connections, timeout_s=options.timeout_s,
            contract=OipStream(options.grpc_contract),
        )  # fmt: skip
    # One stream per closed-loop worker (ping-pong), else --connections or the rate's share.
    return GrpcStreamDriver(
        options.address or "", streams=options.connections, timeout_s=options.timeout_s
    )


def _edge(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.edge import EdgeDriver
    from targets.edge.runtime import EdgeConfig

    # The remote is the REST target servelab started (or --url); quantisation, cache and the
    # remote timeout keep EdgeConfig's defaults.
    config = EdgeConfig(model=options.model, remote=options.url, runtime=options.edge_runtime)
    if options.link is not None:  # --flaky-link: through the fault proxy
        from loadtests.drivers.flaky_edge import FlakyEdgeDriver

        return FlakyEdgeDriver(config, options.link)
    return EdgeDriver(config)


def _stream(options: DriverOptions) -> DriverBase:
    from loadtests.drivers import stream
    from targets.spec import load_model

    window_ms = options.window_ms
    return stream.StreamDriver(
        load_model(options.model),
        batch_size=options.batch_size or stream.DEFAULT_BATCH_SIZE,
        window_ms=stream.DEFAULT_WINDOW_MS if window_ms is None else window_ms,
    )


def _batch(options: DriverOptions) -> DriverBase:
    from loadtests.drivers.batch import BatchDriver
    from targets.batch.scoring import DEFAULT_BATCH_SIZE
    from targets.spec import load_model

    return BatchDriver(
        load_model(options.model),
        batch_size=options.batch_size or DEFAULT_BATCH_SIZE,
        threads=options.connections,  # the pool never caps the concurrency asked for
    )


TARGETS: Final[Mapping[str, Target]] = {
    target.name: target
    for target in (
        # the model called in this process; --loop tight: back to back, no harness
        Target("inprocess", "inprocess", _inprocess, in_process=True,
               options=frozenset({"tight"})),
        Target("rest-inprocess", "rest-inprocess", _rest_inprocess, in_process=True),  # ASGI
        Target("grpc-inprocess", "grpc-inprocess", _grpc_inprocess, in_process=True),
        Target("rest", "rest", _rest, server="rest", probed=True,
               options=frozenset({"url", "connections", "client"})),
        Target("grpc", "grpc", _grpc, server="grpc", probed=True,
               options=frozenset({"address", "connections"})),
        Target("grpc-stream", "grpc-stream", _grpc_stream, server="grpc", probed=True,
               options=frozenset({"address", "connections"})),
        Target("batch", "batch", _batch, in_process=True,
               options=frozenset({"batch_size", "connections"})),
        Target("stream", "stream", _stream, in_process=True,
               options=frozenset({"batch_size", "window_ms"})),
        # The edge runtime runs here; its remote is a REST target (started, or --url). The
        # remote may be down on purpose, so it is not probed.
        Target("edge", "edge", _edge, server="rest", in_process=True,
               options=frozenset({"url", "flaky_link", "runtime"})),
        # The REST app as a function behind the scale-to-zero front. Not probed: a probe would
        # start an instance before the clock and hide the run's first cold start.
        Target("function", "function", _function, server="function",
               options=frozenset({"url", "connections", "front"}), cpu_reader=_function_cpu_s,
               cost_scope="function instances while alive (the front excluded)"),
    )
}  # fmt: skip


def target(name: str) -> Target:
    """The registry entry for ``name``; ``LoadOptionError`` naming the choices otherwise."""
    found = TARGETS.get(name)
    if found is None:
        raise LoadOptionError(f"--target must be one of {', '.join(TARGETS)}, got {name!r}")
    return found
