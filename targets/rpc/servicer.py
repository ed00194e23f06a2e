"""The ``servelab.v1.Predictor`` servicer: the ``Predict`` and ``PredictStream`` handlers.

``Predict`` is one request, one response, answered by the model directly. ``PredictStream`` is the
network face of the streaming target: every inbound message goes to one server-wide
``MicroBatcher`` by a reader task, while the handler awaits the futures in request order and
writes the answers, so reading and writing overlap and the bounded queues are the backpressure a
client feels. A bad stream message is answered in place (``PredictResponse.error``) and the stream
goes on; unary errors are status codes (``targets.rpc.status.translate``).

Admission: every unary call and every valid stream message holds a slot of one ``AdmissionGate``
while the model works on it (a stream message from batcher submit until its answer is ready).
Past ``--max-in-flight`` and ``--max-queue`` a call ends UNAVAILABLE and a stream message is
answered in place with ``error.code = "overloaded"``; both carry ``grpc-retry-pushback-ms``. A
stream's reader waits at most once at a time, so one busy stream is slowed (flow control), not
shed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from targets.admission import AdmissionGate
from targets.batching import MicroBatcher
from targets.errors import MalformedRequest, Overloaded, RequestError
from targets.logs import JsonLogger
from targets.rpc import convert, predict_pb2_grpc
from targets.rpc import predict_pb2 as pb
from targets.rpc.status import Failure, abort, translate
from targets.service import PredictionService

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
PREDICT_ROUTE: Final = f"/{SERVICE_NAME}/Predict"
STREAM_ROUTE: Final = f"/{SERVICE_NAME}/PredictStream"
STREAM_TRANSPORT: Final = "grpc-stream"


@dataclass(slots=True)
class Pending:
    """One stream message on its way from reader to writer: its batcher future, or its rejection
    (``raw``: an OIP request sent as raw tensor bytes, answered the same way)."""

    started_s: float
    outcome: asyncio.Future[dict[str, Any]] | Failure
    request_id: str | None
    raw: bool = False


# A request as ``decode_request`` hands it over: the message, or why its bytes are not one.
_Decoded = pb.PredictRequest | MalformedRequest

# What the reader hands the writer: a message, the exception that broke reading, or end of input.
_StreamItem = Pending | Exception | None


def _forget(item: _StreamItem) -> None:
    """Drop an unanswered message without leaving "exception was never retrieved" behind."""
    if isinstance(item, Pending) and isinstance(item.outcome, asyncio.Future):
        item.outcome.add_done_callback(_retrieve_exception)


def _discard(pending: asyncio.Queue[_StreamItem]) -> None:
    while not pending.empty():
        _forget(pending.get_nowait())


def _retrieve_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class ModelServicer:
    """What both gRPC services over one model share: the service, its micro-batcher, the access
    log and the admission bound (``None``: no bound, for in-process callers — grpc-inprocess —
    that bound their own load)."""

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
        self.admission = admission or AdmissionGate.unbounded()

    def _access(self, transport: str, route: str, status: str, started_s: float, rid: Any) -> None:
        latency_ms = (time.perf_counter() - started_s) * 1e3
        self.logger.access(
            transport=transport, route=route, status=status, latency_ms=latency_ms, request_id=rid
        )

    def _log_internal(self, event: str, exc: Exception) -> None:
        self.logger.log("error", event, error=repr(exc), cause=repr(exc.__cause__))

    # -- a bidi stream over the micro-batcher (both services' stream handlers) ------------------

    async def _serve_stream(
        self, request_iterator: AsyncIterator[Any], context: Any, route: str
    ) -> AsyncGenerator[Any, None]:
        """The handler writes (awaiting futures in request order); a reader task reads. Each
        message becomes a ``Pending`` (``_submit``) and its answer a response (``_answer``)."""
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
                self._access(STREAM_TRANSPORT, route, status, item.started_s, request_id)
        except Exception as exc:  # a broken stream, not a bad message: end it with INTERNAL
            self._log_internal("stream_failed", exc)
            await abort(context, translate(exc))
        finally:
            if not reader.done():
                reader.cancel()
                await asyncio.wait({reader})
            _discard(pending)

    async def _read_stream(
        self,
        request_iterator: AsyncIterator[Any],
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

    async def _enqueue(
        self, started_s: float, parse: Any, request_id: str | None, raw: bool = False
    ) -> Pending:
        """A parsed message (``parse()``) into the batcher under an admission slot, or answered
        in place: a bad message by its error, past the bounds ``overloaded``."""
        try:
            request = parse()
            await self.admission.acquire()
        except (RequestError, Overloaded) as exc:
            return Pending(started_s, translate(exc), request_id, raw)
        try:
            future = await self.batcher.submit(request)
        except BaseException:
            self.admission.release()
            raise
        # Released when the answer is ready, even if the stream is gone by then.
        future.add_done_callback(self._release_slot)
        return Pending(started_s, future, request_id, raw)

    def _release_slot(self, _: asyncio.Future[dict[str, Any]]) -> None:
        self.admission.release()

    async def _submit(self, message: Any) -> Pending:
        """One stream message, validated and enqueued (``_enqueue``) or answered in place."""
        raise NotImplementedError

    async def _answer(self, item: Pending) -> tuple[Any, str, str | None]:
        """The response to one stream message, its status name and request id."""
        raise NotImplementedError


class PredictorServicer(ModelServicer, predict_pb2_grpc.PredictorServicer):
    """``Predict`` and ``PredictStream`` over one model; see the module docstring."""

    async def Predict(self, request: _Decoded, context: Any) -> pb.PredictResponse:
        started_s = time.perf_counter()
        if isinstance(request, MalformedRequest):  # bytes that are no PredictRequest
            self._access("grpc", PREDICT_ROUTE, "INVALID_ARGUMENT", started_s, None)
            await abort(context, translate(request))
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
            await abort(context, failure)
        self._access("grpc", PREDICT_ROUTE, "OK", started_s, answer["metadata"]["request_id"])
        return response

    async def PredictStream(
        self, request_iterator: AsyncIterator[_Decoded], context: Any
    ) -> AsyncIterator[pb.PredictResponse]:
        """Every message through the micro-batcher (``ModelServicer._serve_stream``)."""
        async with aclosing(self._serve_stream(request_iterator, context, STREAM_ROUTE)) as stream:
            async for response in stream:
                yield response

    async def _submit(self, message: _Decoded) -> Pending:
        """Validate one stream message; a valid one takes an admission slot (or is answered
        ``overloaded`` in place) and goes to the batcher (waiting while full)."""
        started_s = time.perf_counter()
        if isinstance(message, MalformedRequest):  # undecodable: answered in place like any bad one
            return Pending(started_s, translate(message), None)

        def parse() -> Any:
            body, api = convert.to_canonical(message, enable_v2=self.service.enable_v2)
            return self.service.parse(body, api)

        return await self._enqueue(started_s, parse, message.request_id or None)

    async def _answer(self, item: Pending) -> tuple[pb.PredictResponse, str, str | None]:
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


def decode_request(data: bytes) -> _Decoded:
    """Parse a request message; bytes that are no ``PredictRequest`` become a ``MalformedRequest``
    the handler answers INVALID_ARGUMENT (grpc would answer a raising deserializer UNKNOWN)."""
    try:
        return pb.PredictRequest.FromString(data)
    except DecodeError as exc:
        return MalformedRequest(
            f"message is not a valid {pb.PredictRequest.DESCRIPTOR.full_name}: {exc}"
        )
