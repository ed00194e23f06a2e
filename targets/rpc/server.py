"""The gRPC target's server: ``servelab.v1.Predictor`` and the Open Inference Protocol's
``inference.GRPCInferenceService`` (``targets.rpc.oip``) on grpc.aio, plus health and reflection.

``build_server`` wires the servicer (``targets.rpc.servicer``), the health service and server
reflection into one grpc.aio server; ``GrpcTarget`` binds, starts and stops it; ``serve`` and
``main`` run it as ``servelab serve grpc`` until SIGTERM/SIGINT, then drain gracefully.

grpc's ``maximum_concurrent_rpcs`` is not used: it answers RESOURCE_EXHAUSTED, which here means an
oversize message, and it would count the health checks that must keep answering while the target
sheds (admission is the servicer's ``AdmissionGate``). Messages over ``--max-message-bytes``
never reach a handler: grpc refuses them with RESOURCE_EXHAUSTED
(``grpc.max_receive_message_length``). Errors become statuses in ``targets.rpc.status``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from targets.admission import AdmissionGate
from targets.batching import BatchingConfig, MicroBatcher
from targets.errors import AddressUnavailable, InputError
from targets.files import write_ready_file
from targets.logs import JsonLogger
from targets.rpc import oip
from targets.rpc import predict_pb2 as pb
from targets.rpc.servicer import (
    PREDICT_ROUTE,
    SERVICE_NAME,
    STREAM_ROUTE,
    STREAM_TRANSPORT,
    PredictorServicer,
    decode_request,
)
from targets.rpc.status import (
    ERROR_CODE_KEY,
    ERROR_FIELD_KEY,
    RETRY_PUSHBACK_KEY,
    Failure,
    translate,
)
from targets.schema import MIN_BODY_BYTES, Limits
from targets.service import PredictionService
from targets.spec import load_model

SHUTDOWN_GRACE_S: Final = 10.0
HANDLED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

# Also the names that moved to ``servicer`` and ``status``, so existing imports keep working.
__all__ = [
    "ERROR_CODE_KEY",
    "ERROR_FIELD_KEY",
    "HANDLED_SIGNALS",
    "PREDICT_ROUTE",
    "RETRY_PUSHBACK_KEY",
    "SERVICE_NAME",
    "SHUTDOWN_GRACE_S",
    "STREAM_ROUTE",
    "STREAM_TRANSPORT",
    "Failure",
    "GrpcTarget",
    "PredictorServicer",
    "build_server",
    "format_address",
    "main",
    "serve",
    "translate",
]


class GrpcTarget:
    """A built gRPC server and its parts; ``start``/``stop`` it from a running event loop."""

    def __init__(
        self,
        server: Any,
        servicer: PredictorServicer,
        health: health.aio.HealthServicer,
        batcher: MicroBatcher,
    ) -> None:
        self.server = server
        self.servicer = servicer
        self.health = health
        self.batcher = batcher
        self.port: int | None = None
        self.address: str | None = None  # HOST:PORT once started

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Bind ``host:port`` (0 = a free port), start serving, report SERVING; the bound port.
        ``AddressUnavailable`` when the address is taken or not this host's."""
        try:
            bound: int = self.server.add_insecure_port(format_address(host, port))
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise AddressUnavailable(
                f"cannot bind gRPC server to {format_address(host, port)}: {exc}"
            ) from exc
        if not bound:
            raise AddressUnavailable(f"cannot bind gRPC server to {format_address(host, port)}")
        self.batcher.start()
        await self.server.start()
        for name in ("", SERVICE_NAME, oip.OIP_SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.port = bound
        self.address = format_address(host, bound)
        return bound

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """NOT_SERVING first, refuse new calls, let in-flight ones finish within ``grace_s``."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await self.batcher.stop()

    async def __aenter__(self) -> GrpcTarget:
        """``async with build_server(...) as target: await target.start()`` stops it at exit."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(grace_s=0)


def build_server(
    service: PredictionService,
    *,
    batching: BatchingConfig,
    max_message_bytes: int,
    logger: JsonLogger,
    admission: AdmissionGate | None = None,
) -> GrpcTarget:
    """Wire a grpc.aio server (Predictor, OIP's GRPCInferenceService, health, reflection) around
    ``service``; not yet bound.

    Stream responses carry ``transport="grpc-stream"``: the batcher (shared by ``PredictStream``
    and ``ModelStreamInfer``) answers through a sibling service that shares the model, limits and
    API switch. ``admission`` bounds the work of both services (UNAVAILABLE past it); ``None``
    admits everything.
    """
    stream_service = PredictionService(
        service.model,
        transport=STREAM_TRANSPORT,
        limits=service.limits,
        enable_v2=service.enable_v2,
    )
    batcher = MicroBatcher(stream_service, batching)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),  # a busy port must fail, not be shared silently
        ]
    )
    servicer = PredictorServicer(
        service, batcher, logger, pending_limit=batching.queue_size, admission=admission
    )
    _add_predictor(servicer, server)
    inference = oip.InferenceServicer(
        service, batcher, logger, pending_limit=batching.queue_size, admission=admission
    )
    oip.add_to_server(inference, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, oip.OIP_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return GrpcTarget(server, servicer, health_servicer, batcher)


def _add_predictor(servicer: PredictorServicer, server: Any) -> None:
    """``add_PredictorServicer_to_server`` with ``decode_request`` as the request deserializer."""
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict,
            request_deserializer=decode_request,
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            servicer.PredictStream,
            request_deserializer=decode_request,
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


def format_address(host: str, port: int) -> str:
    """``HOST:PORT``, with an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


async def serve(
    service: PredictionService,
    *,
    host: str,
    port: int,
    ready_file: str | None,
    batching: BatchingConfig,
    max_message_bytes: int,
    logger: JsonLogger,
    admission: AdmissionGate | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully; the process exit code."""
    target = build_server(
        service,
        batching=batching,
        max_message_bytes=max_message_bytes,
        logger=logger,
        admission=admission,
    )
    bound = await target.start(host, port)
    address = format_address(host, bound)
    info = {
        "transport": "grpc",
        "host": host,
        "port": bound,
        "address": address,
        "url": f"grpc://{address}",
        "pid": os.getpid(),
    }
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in HANDLED_SIGNALS:
        loop.add_signal_handler(signum, stop_requested.set)
    try:
        if ready_file:
            write_ready_file(ready_file, info)
        logger.log("info", "serving", model=service.model.name, v2=service.enable_v2, **info)
        await stop_requested.wait()
        logger.log("info", "stopping", grace_s=SHUTDOWN_GRACE_S)
    finally:
        # Default handlers again, so a second signal during the drain ends the process at once.
        for signum in HANDLED_SIGNALS:
            loop.remove_signal_handler(signum)
        await target.stop(SHUTDOWN_GRACE_S)
    logger.log("info", "stopped")
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(args: argparse.Namespace) -> int:
    """``servelab serve grpc``: the options ``loadtests.cli.serve`` defines for it."""
    if args.max_message_bytes < MIN_BODY_BYTES:
        raise InputError(f"--max-message-bytes must be at least {MIN_BODY_BYTES}")
    logger = JsonLogger(level=args.log_level)
    service = PredictionService(
        load_model(args.model),
        transport="grpc",
        limits=Limits(max_instances=args.max_instances, max_body_bytes=args.max_message_bytes),
        enable_v2=not args.disable_v2,
    )
    batching = BatchingConfig(
        max_batch_rows=args.batch_size, window_s=args.window_ms / 1e3, queue_size=args.queue_size
    )
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        code: int = runner.run(
            serve(
                service,
                host=args.host,
                port=args.port,
                ready_file=args.ready_file,
                batching=batching,
                max_message_bytes=args.max_message_bytes,
                logger=logger,
                admission=AdmissionGate(args.max_in_flight, args.max_queue),
            )
        )
    return code
