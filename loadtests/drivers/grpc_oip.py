"""The Open Inference Protocol's unary ``ModelInfer`` over grpc.aio, for any OIP server
(MLServer, KServe, Triton, servelab's own gRPC target). Requests go out as the bytes the
contract serialized once per distinct payload, through a multicallable with identity
serialisers; answers are judged by the contract. Errors are classified as the native gRPC
driver classifies them (``drivers.grpc.reply_for_error``): INVALID_ARGUMENT to a deliberately
invalid payload is an expected rejection."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import grpc

from loadtests.drivers.base import DriverBase, Reply, WireView
from loadtests.drivers.grpc import (
    MESSAGE_CACHE_LIMIT,
    CallTimeouts,
    check_timeout,
)
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.oip_grpc import INFER, STREAM_ERROR, STREAM_INFER, OipGrpc, verdict_key


class RequestBytes:
    """Payload → the contract's serialized ``ModelInferRequest``, once per distinct payload
    (entries hold their payload, so an ``id`` is not reused while it is a key)."""

    def __init__(self, contract: OipGrpc, limit: int = MESSAGE_CACHE_LIMIT) -> None:
        self.contract = contract
        self.limit = limit
        self._entries: dict[int, tuple[Payload, bytes]] = {}

    def __call__(self, payload: Payload) -> bytes:
        entry = self._entries.get(id(payload))
        if entry is None or entry[0] is not payload:
            if len(self._entries) >= self.limit:
                self._entries.clear()
            entry = self._entries[id(payload)] = (payload, self.contract.request_bytes(payload))
        return entry[1]

    def fill(self, payloads: Iterable[Payload]) -> None:
        for payload in itertools.islice(payloads, self.limit - len(self._entries)):
            self(payload)


class OipAnswerJudge:
    """``OipGrpc.judge`` once per distinct answer: a valid payload's verdict depends only on the
    rows it sent and the answer's bytes without its id (``verdict_key``), so a repeated answer
    costs a scan of its first fields and a dict look-up instead of parsing and checking it
    (~20 µs a call on a loaded loop, measured against the gRPC target)."""

    def __init__(self, contract: OipGrpc, limit: int = MESSAGE_CACHE_LIMIT) -> None:
        self.contract = contract
        self.limit = limit
        self._verdicts: dict[tuple[int, bytes], Reply] = {}

    def __call__(self, payload: Payload, answer: bytes) -> Reply:
        if not payload.valid:
            return self.contract.judge(payload, answer)
        key = (payload.expected_predictions, verdict_key(answer))
        reply = self._verdicts.get(key)
        if reply is None:
            reply = self.contract.judge(payload, answer)
            if len(self._verdicts) >= self.limit:
                self._verdicts.clear()
            self._verdicts[key] = reply
        return reply


class GrpcOipDriver(DriverBase):
    """One ``ModelInfer`` per request, round-robin over ``channels`` channels (one HTTP/2
    connection each); ``credentials``: a secure channel (``--cacert``), else plaintext."""

    transport = "grpc"
    wire: WireView = "hidden"  # grpc core queues a call that finds no free stream, unseen

    def __init__(
        self,
        address: str,
        contract: OipGrpc,
        *,
        channels: int = 1,
        timeout_s: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        if channels < 1:
            raise LoadOptionError("channels must be a positive int")
        check_timeout(timeout_s)
        self.address = address
        self.contract = contract
        self.channels = channels
        self.timeout_s = timeout_s
        self.credentials = credentials
        super().__init__()
        self._metadata = tuple((key.lower(), value) for key, value in contract.metadata) or None
        self._request = RequestBytes(contract)
        self._timeouts = CallTimeouts(timeout_s)
        self._judge = OipAnswerJudge(contract)
        self._channels: list[grpc.aio.Channel] = []
        self._calls: list[Any] = []
        self._next = 0

    async def open(self) -> None:
        options = [("grpc.use_local_subchannel_pool", 1)]
        for _ in range(self.channels):
            if self.credentials is None:
                channel = grpc.aio.insecure_channel(self.address, options=options)
            else:
                channel = grpc.aio.secure_channel(self.address, self.credentials, options=options)
            self._channels.append(channel)
            self._calls.append(channel.unary_unary(INFER))  # bytes in, bytes out
        self._timeouts.deadlines.start()

    def prepare(self, payloads: Iterable[Payload]) -> None:
        self._request.fill(payloads)

    async def send(self, payload: Payload) -> Reply:
        calls = self._calls
        if not calls:
            raise RuntimeError("GrpcOipDriver.send() before open()")
        index = self._next
        self._next = (index + 1) % len(calls)
        data = self._request(payload)
        self.bytes_sent += len(data)
        answer = await self._timeouts.answer(payload, calls[index](data, metadata=self._metadata))
        if isinstance(answer, Reply):
            return answer
        self.bytes_received += len(answer)
        return self._judge(payload, answer)

    async def close(self) -> None:
        await self._timeouts.deadlines.stop()
        channels, self._channels, self._calls = self._channels, [], []
        for channel in channels:
            await channel.close()


class OipStream:
    """``ModelStreamInfer`` (Triton's extension, served by servelab's gRPC target) for the
    streaming driver: requests as the contract's bytes, answers parsed as
    ``ModelStreamInferResponse``. An answer carrying ``error_message`` is the server refusing
    that request in place: an expected rejection for a deliberately invalid payload, else a
    ``stream_error`` failure; the stream goes on."""

    def __init__(self, contract: OipGrpc) -> None:
        self.contract = contract
        self.request = RequestBytes(contract)

    def open_call(self, channel: Any) -> Any:
        from targets.rpc import inference_pb2

        metadata = tuple((key.lower(), value) for key, value in self.contract.metadata) or None
        call = channel.stream_stream(
            STREAM_INFER, response_deserializer=inference_pb2.ModelStreamInferResponse.FromString
        )
        return call(metadata=metadata)

    def encode(self, payload: Payload) -> tuple[Any, int]:
        data = self.request(payload)
        return data, len(data)

    def judge(self, payload: Payload, answer: Any) -> Reply:
        if answer.error_message:
            return Reply.expected_rejection() if not payload.valid else Reply.failure(STREAM_ERROR)
        if not payload.valid:
            return Reply.failure("accepted_invalid")
        return self.contract.judge_message(payload, answer.infer_response)
