"""The gRPC target: ``servelab.v1.Predictor`` on grpc.aio, plus health and server reflection.

``Predict`` is one request, one response, answered by the model directly. ``PredictStream`` is the
network face of the streaming target: every inbound message goes to one server-wide
``MicroBatcher`` by a reader task, while the handler awaits the futures in request order and
writes the answers, so reading and writing overlap and the bounded queues are the backpressure a
client feels. A bad stream message is answered in place (``PredictResponse.error``) and the stream
goes on; unary errors are status codes.

Admission: every unary call and every valid stream message holds a slot of one ``AdmissionGate``
while the model works on it (a stream message from batcher submit until its answer is ready).
Past ``--max-in-flight`` and ``--max-queue`` a call ends UNAVAILABLE and a stream message is
answered in place with ``error.code = "overloaded"``; both carry ``grpc-retry-pushback-ms``, the
trailing metadata grpc's own retry policy honours. A stream's reader waits at most once at a
time, so one busy stream is slowed (flow control), not shed. grpc's ``maximum_concurrent_rpcs``
is not used: it answers RESOURCE_EXHAUSTED, which here means an oversize message, and it would
count the health checks that must keep answering while the target sheds.

Errors become gRPC statuses in ``translate`` and nowhere else: a client's mistake gets the code
``targets.errors`` names for it, a model failure or anything unexpected is INTERNAL (never UNKNOWN,
never a client code). Messages over ``--max-message-bytes`` never reach a handler: grpc refuses them
with RESOURCE_EXHAUSTED (``grpc.max_receive_message_length``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from targets.admission import AdmissionGate
from targets.batching import BatchingConfig, MicroBatcher
from targets.errors import (
    ApiVersionDisabled,
    InvalidRequest,
    MalformedRequest,
    ModelVersionMismatch,
    Overloaded,
    RequestError,
    RequestTooLarge,
    UnsupportedMediaType,
)
from targets.files import write_ready_file
from targets.logs import JsonLogger
from targets.rpc import convert, predict_pb2_grpc
from targets.rpc import predict_pb2 as pb
from targets.schema import Limits
from targets.service import PredictionService
from targets.spec import load_model

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
PREDICT_ROUTE: Final = f"/{SERVICE_NAME}/Predict"
STREAM_ROUTE: Final = f"/{SERVICE_NAME}/PredictStream"
STREAM_TRANSPORT: Final = "grpc-stream"
SHUTDOWN_GRACE_S: Final = 10.0
HANDLED_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
ERROR_CODE_KEY: Final = "servelab-error-code"  # trailing metadata: the canonical error code
ERROR_FIELD_KEY: Final = "servelab-error-field"
RETRY_PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"  # honoured by grpc's retry policy (gRFC A6)

_STATUS_BY_ERROR: Final[dict[type[RequestError], grpc.StatusCode]] = {
    MalformedRequest: grpc.StatusCode.INVALID_ARGUMENT,
    UnsupportedMediaType: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidRequest: grpc.StatusCode.INVALID_ARGUMENT,
    RequestTooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ApiVersionDisabled: grpc.StatusCode.UNIMPLEMENTED,
    ModelVersionMismatch: grpc.StatusCode.FAILED_PRECONDITION,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client is told about an error: status, canonical code, message, field."""

    status: grpc.StatusCode
    code: str
    message: str
    field: str | None = None
    retry_after_ms: int | None = None

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        pairs: tuple[tuple[str, str], ...] = ((ERROR_CODE_KEY, self.code),)
        if self.field is not None:
            # A field path can quote the client's own key (options.<key>); metadata values must
            # be printable ASCII or the whole status fails to send, so escape everything else.
            pairs += ((ERROR_FIELD_KEY, self.field.encode("unicode_escape").decode("ascii")),)
        if self.retry_after_ms is not None:
            pairs += ((RETRY_PUSHBACK_KEY, str(self.retry_after_ms)),)
        return pairs


def translate(exc: Exception) -> Failure:
    """The one place an exception becomes a gRPC status; see the module docstring."""
    if isinstance(exc, RequestError):
        status = next(
            (_STATUS_BY_ERROR[kind] for kind in type(exc).__mro__ if kind in _STATUS_BY_ERROR),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        return Failure(status, exc.code, exc.message, exc.field)
    if isinstance(exc, Overloaded):  # not RESOURCE_EXHAUSTED: that one means an oversize message
        return Failure(
            grpc.StatusCode.UNAVAILABLE,
            exc.code,
            exc.message,
            retry_after_ms=exc.retry_after_s * 1000,
        )
    # ModelFailure's message names the model and the exception type, not the exception's text
    # (which could leak internals); anything else is a server bug and says no more than that.
    code = convert.error_code(exc)
    message = (
        str(exc) if code != convert.INTERNAL_ERROR_CODE else f"internal error: {type(exc).__name__}"
    )
    return Failure(grpc.StatusCode.INTERNAL, code, message)


async def _abort(context: Any, failure: Failure) -> NoReturn:
    await context.abort(failure.status, failure.message, failure.trailing_metadata())
    raise RuntimeError("grpc context.abort() returned")  # abort always raises


@dataclass(slots=True)
class _Pending:
    """One stream message on its way from reader to writer: its batcher future, or its rejection."""

    started_s: float
    outcome: asyncio.Future[dict[str, Any]] | Failure
    request_id: str | None


# A request as ``_decode_request`` hands it over: the message, or why its bytes are not one.
_Decoded = pb.PredictRequest | MalformedRequest

# What the reader hands the writer: a message, the exception that broke reading, or end of input.
_StreamItem = _Pending | Exception | None


def _forget(item: _StreamItem) -> None:
    """Drop an unanswered message without leaving "exception was never retrieved" behind."""
    if isinstance(item, _Pending) and isinstance(item.outcome, asyncio.Future):
        item.outcome.add_done_callback(_retrieve_exception)


def _discard(pending: asyncio.Queue[_StreamItem]) -> None:
    while not pending.empty():
        _forget(pending.get_nowait())


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class PredictorServicer(predict_pb2_grpc.PredictorServicer):
    """``Predict`` and ``PredictStream`` over one model; see the module docstring."""

    def __init__(
        self,
        service: PredictionService,
        batcher: MicroBatcher,
        logger: JsonLogger,
        *,
        pending_limit: int,
        admission: AdmissionGate | None = None,
    ) -> None:
        self.service = service
        self.batcher = batcher
        self.logger = logger
        self.pending_limit = pending_limit
        # None: no bound, for in-process callers (grpc-inprocess) that bound their own load.
        self.admission = admission or AdmissionGate.unbounded()

    def _access(self, transport: str, route: str, status: str, started_s: float, rid: Any) -> None:
        latency_ms = (time.perf_counter() - started_s) * 1e3
        self.logger.access(
            transport=transport, route=route, status=status, latency_ms=latency_ms, request_id=rid
        )

    def _log_internal(self, event: str, exc: Exception) -> None:
        self.logger.log("error", event, error=repr(exc), cause=repr(exc.__cause__))

    async def Predict(self, request: _Decoded, context: Any) -> pb.PredictResponse:
        started_s = time.perf_counter()
        if isinstance(request, MalformedRequest):  # bytes that are no PredictRequest
            self._access("grpc", PREDICT_ROUTE, "INVALID_ARGUMENT", started_s, None)
            await _abort(context, translate(request))
        if self.logger.enabled("debug"):  # lets a test see a call arrive before it signals
            self.logger.log("debug", "rpc_started", route=PREDICT_ROUTE, peer=context.peer())
        try:
            async with self.admission.admit():
                body, api = convert.to_canonical(request, enable_v2=self.service.enable_v2)
                answer = await self.service.predict_async(self.service.parse(body, api))
            response = convert.to_response(answer)
        except asyncio.CancelledError:  # the client went away or the grace period ran out
            self._access("grpc", PREDICT_ROUTE, "CANCELLED", started_s, request.request_id or None)
            raise
        except Exception as exc:  # the one error boundary of unary calls
            failure = translate(exc)
            if failure.status == grpc.StatusCode.INTERNAL:
                self._log_internal("predict_failed", exc)
            self._access(
                "grpc", PREDICT_ROUTE, failure.status.name, started_s, request.request_id or None
            )
            await _abort(context, failure)
        self._access("grpc", PREDICT_ROUTE, "OK", started_s, answer["metadata"]["request_id"])
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[_Decoded], context: Any
    ) -> AsyncIterator[pb.PredictResponse]:
        """The handler writes (awaiting futures in request order); a reader task reads."""
        pending: asyncio.Queue[_StreamItem] = asyncio.Queue(self.pending_limit)
        reader = asyncio.get_running_loop().create_task(
            self._read_stream(request_iterator, pending)
        )
        try:
            while (item := await pending.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                response, status, request_id = await self._answer(item)
                yield response
                self._access(STREAM_TRANSPORT, STREAM_ROUTE, status, item.started_s, request_id)
        except Exception as exc:  # a broken stream, not a bad message: end it with INTERNAL
            self._log_internal("stream_failed", exc)
            await _abort(context, translate(exc))
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.wait({reader})
            _discard(pending)

    async def _read_stream(
        self,
        request_iterator: AsyncIterator[_Decoded],
        pending: asyncio.Queue[_StreamItem],
    ) -> None:
        """Read every message (``async for``, never mixed with ``read()``) and queue it.

        ``pending`` is bounded and the batcher's queue is bounded, so a slow model or a client
        that does not read its answers stops this loop, and HTTP/2 flow control the sender.
        """
        try:
            async for message in request_iterator:
                item = await self._submit(message)
                try:
                    await pending.put(item)
                except asyncio.CancelledError:
                    _forget(item)
                    raise
        except Exception as exc:  # handed to the writer, which ends the stream with INTERNAL
            await pending.put(exc)
        else:
            await pending.put(None)

    async def _submit(self, message: _Decoded) -> _Pending:
        """Validate one stream message; a valid one takes an admission slot (or is answered
        ``overloaded`` in place) and goes to the batcher (waiting while full)."""
        started_s = time.perf_counter()
        if isinstance(message, MalformedRequest):  # undecodable: answered in place like any bad one
            return _Pending(started_s, translate(message), None)
        request_id = message.request_id or None
        try:
            body, api = convert.to_canonical(message, enable_v2=self.service.enable_v2)
            request = self.service.parse(body, api)
            await self.admission.acquire()
        except (RequestError, Overloaded) as exc:
            return _Pending(started_s, translate(exc), request_id)
        try:
            future = await self.batcher.submit(request)
        except BaseException:
            self.admission.release()
            raise
        # Released when the answer is ready, even if the stream is gone by then.
        future.add_done_callback(self._release_slot)
        return _Pending(started_s, future, request_id)

    def _release_slot(self, _: asyncio.Future[dict[str, Any]]) -> None:
        self.admission.release()

    async def _answer(self, item: _Pending) -> tuple[pb.PredictResponse, str, str | None]:
        """The response to one stream message, its status name and request id."""
        failure = item.outcome
        if isinstance(failure, asyncio.Future):
            try:
                answer = await failure
            except Exception as exc:  # the model failed this batch: answered in place too
                failure = translate(exc)
                self._log_internal("stream_predict_failed", exc)
            else:
                return convert.to_response(answer), "OK", answer["metadata"]["request_id"]
        response = convert.to_error_response(failure.code, failure.message, failure.field)
        return response, failure.status.name, item.request_id


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
        """Bind ``host:port`` (0 = a free port), start serving, report SERVING; the bound port."""
        try:
            bound: int = self.server.add_insecure_port(format_address(host, port))
        except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
            raise OSError(
                f"cannot bind gRPC server to {format_address(host, port)}: {exc}"
            ) from exc
        if not bound:
            raise OSError(f"cannot bind gRPC server to {format_address(host, port)}")
        self.batcher.start()
        await self.server.start()
        for name in ("", SERVICE_NAME):
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
    """Wire a grpc.aio server (Predictor, health, reflection) around ``service``; not yet bound.

    Stream responses carry ``transport="grpc-stream"``: the batcher answers through a sibling
    service that shares the model, limits and API switch. ``admission`` bounds Predictor work
    (UNAVAILABLE past it); ``None`` admits everything.
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
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return GrpcTarget(server, servicer, health_servicer, batcher)


def _decode_request(data: bytes) -> _Decoded:
    """Parse a request message; bytes that are no ``PredictRequest`` become a ``MalformedRequest``
    the handler answers INVALID_ARGUMENT (grpc would answer a raising deserializer UNKNOWN)."""
    try:
        return pb.PredictRequest.FromString(data)
    except DecodeError as exc:
        return MalformedRequest(
            f"message is not a valid {pb.PredictRequest.DESCRIPTOR.full_name}: {exc}"
        )


def _add_predictor(servicer: PredictorServicer, server: Any) -> None:
    """``add_PredictorServicer_to_server`` with ``_decode_request`` as the request deserializer."""
    handlers = {
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict,
            request_deserializer=_decode_request,
            response_serializer=pb.PredictResponse.SerializeToString,
        ),
        "PredictStream": grpc.stream_stream_rpc_method_handler(
            servicer.PredictStream,
            request_deserializer=_decode_request,
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
    """``servelab serve grpc``: the options ``loadtests.cli.app`` defines for it."""
    if args.max_message_bytes < 64:
        raise ValueError("--max-message-bytes must be at least 64")
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
