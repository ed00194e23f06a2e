"""gRPC drivers: unary ``Predict`` over grpc.aio channels, and the servicer called in-process.

The streaming driver lives in ``grpc_stream``; this module also holds what all three share — the
payload → protobuf edge and the one place a gRPC outcome becomes a ``Reply``::

    exception out of a call ─────► status_of ────────────────┐   (AioRpcError, CallAborted,
    in-place stream error code ──► STATUS_BY_ERROR_CODE ─────┤    TimeoutError → status;
                                                             │    none: client_* classes)
                                                             ▼
    reply_for_status:  INVALID_ARGUMENT ─► judge_answer(rejected=True): expected rejection
                       any other status ─► failure, ERROR_CLASS_BY_STATUS (DEADLINE → timeout)

Channels are made in ``open()``, never at import or in a constructor: grpc is not fork-safe, and a
driver may be built in one process and run in another.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Final, NoReturn, Protocol

import grpc

from loadtests.drivers.base import DriverBase, Reply, WireView, judge_answer
from loadtests.drivers.deadlines import Deadlines
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from targets.rpc import convert
from targets.rpc import predict_pb2 as pb

_SPECIAL_CLASSES: Final = {grpc.StatusCode.DEADLINE_EXCEEDED: "timeout"}
ERROR_CLASS_BY_STATUS: Final[Mapping[grpc.StatusCode, str]] = {
    code: _SPECIAL_CLASSES.get(code, code.name.lower()) for code in grpc.StatusCode
}
# The unary status the server gives each canonical error code (``targets.rpc.server.translate``;
# a test holds the two together), so an error answered in place on a stream is classified exactly
# as the same error ending a unary call.
STATUS_BY_ERROR_CODE: Final[Mapping[str, grpc.StatusCode]] = {
    "malformed_request": grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported_media_type": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_request": grpc.StatusCode.INVALID_ARGUMENT,
    "payload_too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "api_version_disabled": grpc.StatusCode.UNIMPLEMENTED,
    "model_version_mismatch": grpc.StatusCode.FAILED_PRECONDITION,
    "model_error": grpc.StatusCode.INTERNAL,
    "internal_error": grpc.StatusCode.INTERNAL,
    "overloaded": grpc.StatusCode.UNAVAILABLE,
}
MESSAGE_CACHE_LIMIT: Final = 1 << 14
_SERVICE: Final = pb.DESCRIPTOR.services_by_name["Predictor"].full_name
PREDICT_PATH: Final = f"/{_SERVICE}/Predict"
PREDICT_STREAM_PATH: Final = f"/{_SERVICE}/PredictStream"
# grpc.aio's details when its own core refused an operation — e.g. a stream write racing the
# GOAWAY of a target going down. The status then says INTERNAL, but no server said it, so it is
# counted as the client's, apart from the target's own ``internal``.
CLIENT_CORE_DETAILS: Final = "Internal error from Core"
CLIENT_INTERNAL: Final = "client_internal"


# -- payload → message -------------------------------------------------------------------------


def _doubles(values: object) -> list[float]:
    """A ``repeated double`` for a canonical row; NaN stands for what a double cannot carry."""
    if not isinstance(values, list):  # absent, null or not a list: no row proto3 can carry
        return [math.nan]
    return [
        float(value) if type(value) in (int, float) else math.nan  # bool is not a number here
        for value in values
    ]


def to_message(payload: Payload) -> pb.PredictRequest:
    """The ``PredictRequest`` for a payload's canonical body.

    A v2 body with ``rows`` becomes a v2 ``rows`` message, anything else one v1 ``instances`` row.
    proto3 cannot carry what makes the workload's invalid bodies invalid (a string, a null or a
    list where a double goes; an absent field, which proto3 reads as the empty — valid — row), so
    each becomes NaN, the one invalid value a ``repeated double`` holds: the server's canonical
    validator then rejects the message (INVALID_ARGUMENT) as REST rejects the JSON.
    """
    body = payload.body
    rows = body.get("rows")
    if payload.api == "v2" and isinstance(rows, list) and rows:
        request_id, model_version = body.get("request_id"), body.get("model_version")
        message = convert.rows_request(
            [_doubles(row) for row in rows],
            request_id=request_id if isinstance(request_id, str) else None,
            model_version=model_version if isinstance(model_version, str) else None,
        )
        options = body.get("options")
        if isinstance(options, dict):  # as text, so the server judges a bad option as it would
            message.options.update({str(key): str(value) for key, value in options.items()})
        if "instances" in body:  # both fields: the server must see both to reject the pair
            message.instances.extend(_doubles(body["instances"]))
        return message
    return convert.instances_request(_doubles(body.get("instances")))


class MessageCache:
    """Payload → (message, its serialized bytes), built once per distinct payload object.

    Workloads cycle a pool of payloads, so conversion and serialization leave the timed path
    after the first lap: the drivers send the bytes through multicallables without a request
    serializer. Entries hold their payload, so an ``id`` cannot be reused while it is a key.
    """

    def __init__(self, limit: int = MESSAGE_CACHE_LIMIT) -> None:
        if limit < 1:
            raise LoadOptionError("limit must be a positive int")
        self.limit = limit
        self._entries: dict[int, tuple[Payload, pb.PredictRequest, bytes]] = {}

    def _entry(self, payload: Payload) -> tuple[Payload, pb.PredictRequest, bytes]:
        entry = self._entries.get(id(payload))
        if entry is not None and entry[0] is payload:
            return entry
        message = to_message(payload)
        if len(self._entries) >= self.limit:
            self._entries.clear()
        entry = self._entries[id(payload)] = (payload, message, message.SerializeToString())
        return entry

    def get(self, payload: Payload) -> tuple[pb.PredictRequest, int]:
        """The message and its serialized size."""
        _, message, data = self._entry(payload)
        return message, len(data)

    def data(self, payload: Payload) -> bytes:
        """The serialized message."""
        return self._entry(payload)[2]

    def fill(self, payloads: Iterable[Payload]) -> None:
        """Build the entries of ``payloads`` now (as many as the cache holds)."""
        for payload in itertools.islice(payloads, self.limit - len(self._entries)):
            self._entry(payload)

    def sized(self, payload: Payload) -> tuple[bytes, int]:
        """The serialized message and its size (the hit looked up inline: a stream's hot path)."""
        entry = self._entries.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = self._entry(payload)
        data = entry[2]
        return data, len(data)


# -- the one boundary: gRPC outcome → Reply ----------------------------------------------------


class CallAborted(Exception):
    """Raised by ``RecordingContext.abort``, as grpc raises out of a servicer that aborts."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


def reply_for_status(payload: Payload, code: grpc.StatusCode) -> Reply:
    """A call that ended with ``code`` (not OK): INVALID_ARGUMENT is the client's mistake — an
    expected rejection for a deliberately invalid payload — anything else a failure by class."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return judge_answer(payload, False, None, True)
    return Reply.failure(ERROR_CLASS_BY_STATUS.get(code, "unknown"))


def status_of(exc: Exception) -> grpc.StatusCode | None:
    """The status an exception out of a call stands for; ``None`` when no peer gave it one."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return None if exc.details() == CLIENT_CORE_DETAILS else exc.code()
    if isinstance(exc, CallAborted):
        return exc.code
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return None


def error_class(exc: Exception) -> str:
    """The error class of an exception that ended a call or a whole stream."""
    status = status_of(exc)
    if status is not None:
        return ERROR_CLASS_BY_STATUS.get(status, "unknown")
    if isinstance(exc, grpc.aio.AioRpcError):
        return CLIENT_INTERNAL
    return f"client_{type(exc).__name__}"


def reply_for_error(payload: Payload, exc: Exception) -> Reply:
    """The reply for an exception out of a call; nothing a target or network does escapes."""
    status = status_of(exc)
    if status is None:
        return Reply.failure(error_class(exc))
    return reply_for_status(payload, status)


def judge_response(payload: Payload, response: pb.PredictResponse) -> Reply:
    """An answered message: an in-place error (streams) by its code, else the canonical check."""
    if response.HasField("error"):
        status = STATUS_BY_ERROR_CODE.get(response.error.code, grpc.StatusCode.UNKNOWN)
        return reply_for_status(payload, status)
    return judge_answer(payload, True, convert.from_response(response), False)


class AnswerJudge:
    """``judge_response`` once per distinct answer to a payload.

    A ``PredictResponse``'s verdict depends on the payload, its predictions and whether it has
    metadata at all (proto3 strings are always strings, so ``request_id`` — unique per answer —
    never changes it): those are the key, and a repeated answer costs a tuple and a dict look-up
    instead of the canonical body and its check. In-place errors are judged every time. Entries
    hold their payload, so an ``id`` cannot be reused while it is a key.
    """

    def __init__(self, limit: int = MESSAGE_CACHE_LIMIT) -> None:
        self.limit = limit
        self._verdicts: dict[tuple[Any, ...], tuple[Payload, Reply]] = {}

    def __call__(self, payload: Payload, response: pb.PredictResponse) -> Reply:
        if response.HasField("error"):
            return judge_response(payload, response)
        key = (id(payload), response.HasField("metadata"), *response.predictions)
        entry = self._verdicts.get(key)
        if entry is not None and entry[0] is payload:
            return entry[1]
        reply = judge_response(payload, response)
        if len(self._verdicts) >= self.limit:
            self._verdicts.clear()
        self._verdicts[key] = (payload, reply)
        return reply


class CallTimeouts:
    """Unary calls' timeouts kept by one sweeper (``Deadlines``), not by a grpc deadline a call
    — a timer in grpc core, 3-30 µs of client CPU a call against the gRPC target. A call past
    its timeout is cancelled (the server sees the stream reset, not a ``grpc-timeout`` header)
    and answers DEADLINE_EXCEEDED, as an expired grpc deadline does. ``answer`` is the one
    place a unary call is awaited: its response, or the ``Reply`` it ended in."""

    def __init__(self, timeout_s: float) -> None:
        self._expired: set[Any] = set()
        self.deadlines: Deadlines[Any] = Deadlines(timeout_s, expire=self._expire)

    def _expire(self, call: Any) -> None:
        self._expired.add(call)
        call.cancel()

    async def answer(self, payload: Payload, call: Any) -> Any:
        """``await call`` under the timeout; an exception out of it becomes its ``Reply``
        (the driver's one error boundary), a cancel of the send itself propagates."""
        self.deadlines.add(call)
        try:
            return await call
        except asyncio.CancelledError:
            if call not in self._expired:
                raise
            self._expired.discard(call)
            return reply_for_status(payload, grpc.StatusCode.DEADLINE_EXCEEDED)
        except Exception as exc:
            return reply_for_error(payload, exc)
        finally:
            self.deadlines.forget(call)


def check_timeout(timeout_s: float | None, *, optional: bool = False) -> None:
    if timeout_s is None and optional:
        return
    if timeout_s is None or not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise LoadOptionError(f"timeout_s must be a positive number of seconds, got {timeout_s}")


# -- unary over the network --------------------------------------------------------------------


class GrpcUnaryDriver(DriverBase):
    """One unary ``Predict`` per request, round-robin over ``channels`` grpc.aio channels.

    Each channel gets its own subchannel pool, so ``channels=N`` means N HTTP/2 connections
    (grpc otherwise shares one connection between channels with equal arguments). Byte counts are
    serialized message sizes: every message sent, every response received (no HTTP/2 framing).
    """

    transport = "grpc"
    # grpc core queues a call that finds no free HTTP/2 stream and does not say so: the
    # on-wire instant is not observable, so client-queue time is absent for this driver.
    wire: WireView = "hidden"

    def __init__(self, address: str, *, channels: int = 1, timeout_s: float = 30.0) -> None:
        if channels < 1:
            raise LoadOptionError("channels must be a positive int")
        check_timeout(timeout_s)
        self.address = address
        self.channels = channels
        self.timeout_s = timeout_s
        super().__init__()
        self._messages = MessageCache()
        self._judge = AnswerJudge()
        self._timeouts = CallTimeouts(timeout_s)
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[Any] = []
        self._next = 0

    async def open(self) -> None:
        for _ in range(self.channels):
            channel = grpc.aio.insecure_channel(
                self.address, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            self._channels.append(channel)
            # bytes out (serialized once per payload), a PredictResponse back
            self._calls.append(
                channel.unary_unary(
                    PREDICT_PATH, response_deserializer=pb.PredictResponse.FromString
                )
            )
        self._timeouts.deadlines.start()

    def prepare(self, payloads: Iterable[Payload]) -> None:
        self._messages.fill(payloads)

    async def send(self, payload: Payload) -> Reply:
        calls = self._calls
        if not calls:
            raise RuntimeError("GrpcUnaryDriver.send() before open()")
        index = self._next
        self._next = (index + 1) % len(calls)
        data = self._messages.data(payload)
        self.bytes_sent += len(data)
        response = await self._timeouts.answer(payload, calls[index](data))
        if isinstance(response, Reply):
            return response
        self.bytes_received += response.ByteSize()
        return self._judge(payload, response)

    async def close(self) -> None:
        await self._timeouts.deadlines.stop()
        channels, self._channels, self._calls = self._channels, [], []
        for channel in channels:
            await channel.close()


# -- in-process: the servicer without a socket -------------------------------------------------


class PredictServicer(Protocol):
    def Predict(
        self, request: pb.PredictRequest, context: Any
    ) -> Awaitable[pb.PredictResponse]: ...


class RecordingContext:
    """Just enough of ``grpc.aio.ServicerContext`` for a unary servicer called directly."""

    __slots__ = ("code", "details", "trailing_metadata")

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailing_metadata: Sequence[tuple[str, str]] = ()

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str]] = (),
    ) -> NoReturn:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata
        raise CallAborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailing_metadata: Sequence[tuple[str, str]]) -> None:
        self.trailing_metadata = trailing_metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def peer(self) -> str:
        return "inprocess"

    def time_remaining(self) -> float | None:
        return None

    def cancelled(self) -> bool:
        return False


class GrpcInProcessDriver(DriverBase):
    """Calls the servicer's ``Predict`` directly: conversion, validation, model and the status
    translation, without channel, socket or HTTP/2 — what gRPC costs on top of it is the gap to
    ``GrpcUnaryDriver``. An exception the servicer lets out is UNKNOWN, as grpc would answer."""

    transport = "grpc-inprocess"
    in_process = True
    wire: WireView = "at_dispatch"

    def __init__(self, servicer: PredictServicer, *, timeout_s: float | None = None) -> None:
        check_timeout(timeout_s, optional=True)
        self.servicer = servicer
        self.timeout_s = timeout_s
        super().__init__()
        self._messages = MessageCache()

    async def send(self, payload: Payload) -> Reply:
        message, size = self._messages.get(payload)
        self.bytes_sent += size
        context = RecordingContext()
        try:
            if self.timeout_s is None:
                response = await self.servicer.Predict(message, context)
            else:
                async with asyncio.timeout(self.timeout_s):
                    response = await self.servicer.Predict(message, context)
        except (CallAborted, TimeoutError) as exc:
            return reply_for_error(payload, exc)
        except Exception:  # a servicer bug: what grpc would answer for it
            return reply_for_status(payload, grpc.StatusCode.UNKNOWN)
        if context.code is not None and context.code != grpc.StatusCode.OK:
            return reply_for_status(payload, context.code)
        self.bytes_received += response.ByteSize()
        return judge_response(payload, response)
