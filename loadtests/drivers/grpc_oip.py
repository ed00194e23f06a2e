"""The Open Inference Protocol's unary ``ModelInfer`` over grpc.aio, for any OIP server
(MLServer, KServe, Triton, servelab's own gRPC target). Requests go out as the bytes the
contract serialized once per distinct payload, through a multicallable with identity
serialisers; answers are judged by the contract. Errors are classified as the native gRPC
driver classifies them (``drivers.grpc.reply_for_error``): INVALID_ARGUMENT to a deliberately
invalid payload is an expected rejection."""

from __future__ import annotations

from typing import Any

import grpc

from loadtests.drivers.base import DriverBase, Reply, WireView
from loadtests.drivers.grpc import check_timeout, reply_for_error
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.oip_grpc import INFER, STREAM_ERROR, STREAM_INFER, OipGrpc


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
        self._requests: dict[int, tuple[Payload, bytes]] = {}
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

    def _request(self, payload: Payload) -> bytes:
        entry = self._requests.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = self._requests[id(payload)] = (payload, self.contract.request_bytes(payload))
        return entry[1]

    async def send(self, payload: Payload) -> Reply:
        calls = self._calls
        if not calls:
            raise RuntimeError("GrpcOipDriver.send() before open()")
        index = self._next
        self._next = (index + 1) % len(calls)
        data = self._request(payload)
        self.bytes_sent += len(data)
        try:
            answer = await calls[index](data, timeout=self.timeout_s, metadata=self._metadata)
        except Exception as exc:  # the driver's one error boundary
            return reply_for_error(payload, exc)
        self.bytes_received += len(answer)
        return self.contract.judge(payload, answer)

    async def close(self) -> None:
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
        self._requests: dict[int, tuple[Payload, bytes]] = {}

    def open_call(self, channel: Any) -> Any:
        from targets.rpc import inference_pb2

        metadata = tuple((key.lower(), value) for key, value in self.contract.metadata) or None
        call = channel.stream_stream(
            STREAM_INFER, response_deserializer=inference_pb2.ModelStreamInferResponse.FromString
        )
        return call(metadata=metadata)

    def encode(self, payload: Payload) -> tuple[Any, int]:
        entry = self._requests.get(id(payload))
        if entry is None or entry[0] is not payload:
            entry = self._requests[id(payload)] = (payload, self.contract.request_bytes(payload))
        return entry[1], len(entry[1])

    def judge(self, payload: Payload, answer: Any) -> Reply:
        if answer.error_message:
            return Reply.expected_rejection() if not payload.valid else Reply.failure(STREAM_ERROR)
        if not payload.valid:
            return Reply.failure("accepted_invalid")
        return self.contract.judge_message(payload, answer.infer_response)
