"""The gRPC target's Open Inference Protocol service (``inference.GRPCInferenceService``), against
an in-process grpc.aio server on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import contextlib
import io
from array import array
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from targets.admission import AdmissionGate
from targets.batching import BatchingConfig
from targets.logs import JsonLogger
from targets.models import Model, ReferenceModel
from targets.rpc import inference_pb2 as pb
from targets.rpc.oip import OIP_SERVICE_NAME
from targets.rpc.server import build_server
from targets.schema import DEFAULT_MAX_BODY_BYTES
from targets.service import PredictionService
from targets.spec import load_model
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, running_grpc

ROWS = [[1.0, 2.0, 3.0], [0.5, -4.0, 10.0]]
Tensor = pb.ModelInferRequest.InferInputTensor


class ThreeFeatures(ReferenceModel):
    name = "three"
    version = "7"
    features = 3


class OipClient:
    """Typed calls to the service, made from the channel with ``inference_pb2``'s messages."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel

    def _method(self, name: str, response: Any) -> Any:
        return self.channel.unary_unary(
            f"/{OIP_SERVICE_NAME}/{name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response.FromString,
        )

    async def call(self, name: str, request: Any, response: Any) -> Any:
        return await self._method(name, response)(request, timeout=STEP_TIMEOUT_S)

    async def infer(self, request: pb.ModelInferRequest | bytes) -> pb.ModelInferResponse:
        method = self.channel.unary_unary(
            f"/{OIP_SERVICE_NAME}/ModelInfer",
            request_serializer=lambda message: (
                message if isinstance(message, bytes) else message.SerializeToString()
            ),
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        response: pb.ModelInferResponse = await method(request, timeout=STEP_TIMEOUT_S)
        return response

    async def infer_error(self, request: pb.ModelInferRequest | bytes) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await self.infer(request)
        return caught.value

    async def stream(
        self, requests: Sequence[pb.ModelInferRequest]
    ) -> list[pb.ModelStreamInferResponse]:
        method = self.channel.stream_stream(
            f"/{OIP_SERVICE_NAME}/ModelStreamInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelStreamInferResponse.FromString,
        )
        return [response async for response in method(iter(requests), timeout=STEP_TIMEOUT_S)]


@contextlib.asynccontextmanager
async def serving(
    model: str | Model = "reference", admission: AdmissionGate | None = None
) -> AsyncIterator[OipClient]:
    if admission is None:
        async with running_grpc(model) as running:
            yield OipClient(running.channel)
        return
    service = PredictionService(
        load_model(model) if isinstance(model, str) else model, transport="grpc"
    )
    target = build_server(
        service,
        batching=BatchingConfig(),
        max_message_bytes=DEFAULT_MAX_BODY_BYTES,
        logger=JsonLogger(io.StringIO(), "info"),
        admission=admission,
    )
    await target.start("127.0.0.1", 0)
    assert target.address is not None
    async with grpc.aio.insecure_channel(target.address) as channel:
        yield OipClient(channel)
    await target.stop(grace_s=0)


def flat(rows: Sequence[Sequence[float]]) -> list[float]:
    return [value for row in rows for value in row]


def request(
    datatype: str = "FP64",
    shape: Sequence[int] = (2, 3),
    *,
    model: str = "reference",
    request_id: str = "",
    **contents: Any,
) -> pb.ModelInferRequest:
    if not contents:
        contents = {"fp64_contents": flat(ROWS)}
    tensor = Tensor(
        name="input-0",
        datatype=datatype,
        shape=list(shape),
        contents=pb.InferTensorContents(**contents),
    )
    return pb.ModelInferRequest(model_name=model, id=request_id, inputs=[tensor])


def raw_request(datatype: str, typecode: str, values: Sequence[float], shape: Sequence[int]) -> Any:
    tensor = Tensor(name="input-0", datatype=datatype, shape=list(shape))
    raw = array(typecode, values).tobytes()  # little-endian on this machine (x86/arm64)
    return pb.ModelInferRequest(model_name="reference", inputs=[tensor], raw_input_contents=[raw])


def predictions(response: pb.ModelInferResponse) -> tuple[list[int], list[float]]:
    (output,) = response.outputs
    assert (output.name, output.datatype) == ("output-0", "FP64")
    if response.raw_output_contents:
        (raw,) = response.raw_output_contents
        assert not output.HasField("contents")
        return list(output.shape), array("d", raw).tolist()
    return list(output.shape), list(output.contents.fp64_contents)


def _reflected(address: str) -> tuple[list[str], list[str], str]:
    """What reflection says: the services, the OIP's methods, ModelStreamInfer's output type."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        service = descriptor_pool.DescriptorPool(database).FindServiceByName(OIP_SERVICE_NAME)
        stream = service.methods_by_name["ModelStreamInfer"]
        return services, [method.name for method in service.methods], stream.output_type.full_name


async def test_health_and_reflection_list_the_oip_service() -> None:
    async with running_grpc() as running:
        health = health_pb2_grpc.HealthStub(running.channel)
        reply = await health.Check(
            health_pb2.HealthCheckRequest(service=OIP_SERVICE_NAME), timeout=STEP_TIMEOUT_S
        )
        # The reflection database speaks blocking grpc: run it off the server's event loop.
        services, methods, stream_output = await asyncio.to_thread(_reflected, running.address)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert OIP_SERVICE_NAME in services
    served = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
    assert methods == [method.name for method in served]
    assert methods[-2:] == ["ModelInfer", "ModelStreamInfer"]
    assert stream_output == "inference.ModelStreamInferResponse"


async def test_server_live_ready_and_metadata() -> None:
    async with serving() as client:
        live = await client.call("ServerLive", pb.ServerLiveRequest(), pb.ServerLiveResponse)
        ready = await client.call("ServerReady", pb.ServerReadyRequest(), pb.ServerReadyResponse)
        meta = await client.call(
            "ServerMetadata", pb.ServerMetadataRequest(), pb.ServerMetadataResponse
        )
    assert (live.live, ready.ready) == (True, True)
    assert meta.name == "servelab"
    assert meta.version
    assert list(meta.extensions) == []


@pytest.mark.parametrize("version", ["", "1.0"])
async def test_model_metadata_and_ready(version: str) -> None:
    async with serving() as client:
        meta = await client.call(
            "ModelMetadata",
            pb.ModelMetadataRequest(name="reference", version=version),
            pb.ModelMetadataResponse,
        )
        ready = await client.call(
            "ModelReady",
            pb.ModelReadyRequest(name="reference", version=version),
            pb.ModelReadyResponse,
        )
    assert (meta.name, list(meta.versions), meta.platform) == ("reference", ["1.0"], "servelab")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input-0", "FP64", [-1, -1])
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [
        ("output-0", "FP64", [-1, 1])
    ]
    assert ready.ready


async def test_declared_features_are_published() -> None:
    async with serving(ThreeFeatures()) as client:
        meta = await client.call(
            "ModelMetadata", pb.ModelMetadataRequest(name="three"), pb.ModelMetadataResponse
        )
        error = await client.infer_error(
            request("FP64", (1, 2), model="three", fp64_contents=[1, 2])
        )
    assert list(meta.inputs[0].shape) == [-1, 3]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "takes 3 features, got 2" in (error.details() or "")


@pytest.mark.parametrize(
    ("method", "message", "response"),
    [
        ("ModelMetadata", pb.ModelMetadataRequest(name="other"), pb.ModelMetadataResponse),
        ("ModelReady", pb.ModelReadyRequest(name="other"), pb.ModelReadyResponse),
        ("ModelReady", pb.ModelReadyRequest(name="reference", version="9"), pb.ModelReadyResponse),
        ("ModelInfer", request(model="other"), pb.ModelInferResponse),
    ],
)
async def test_unknown_model_or_version_is_not_found(
    method: str, message: Any, response: Any
) -> None:
    async with serving() as client:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.call(method, message, response)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_fp64_rows_get_the_models_own_predictions_and_the_id_back() -> None:
    async with serving() as client:
        response = await client.infer(request(request_id="req-9"))
    assert (response.model_name, response.model_version, response.id) == (
        "reference",
        "1.0",
        "req-9",
    )
    assert predictions(response) == ([2, 1], ReferenceModel().predict(ROWS))


@pytest.mark.parametrize(
    ("datatype", "contents", "rows"),
    [
        (
            "FP32",
            {"fp32_contents": [1.1, 2.2, 3.3, 4.4]},
            [array("f", [1.1, 2.2, 3.3, 4.4]).tolist()],
        ),
        ("INT64", {"int64_contents": [2**40, -3, 7, 1]}, [[2.0**40, -3.0, 7.0, 1.0]]),
        ("INT32", {"int_contents": [5, -6, 7, 8]}, [[5.0, -6.0, 7.0, 8.0]]),
        ("UINT8", {"uint_contents": [255, 0, 1, 2]}, [[255.0, 0.0, 1.0, 2.0]]),
        ("BOOL", {"bool_contents": [True, False, True, True]}, [[1.0, 0.0, 1.0, 1.0]]),
    ],
)
async def test_typed_contents_of_each_datatype(
    datatype: str, contents: dict[str, Any], rows: list[list[float]]
) -> None:
    async with serving() as client:
        response = await client.infer(request(datatype, (1, 4), **contents))
    assert predictions(response) == ([1, 1], ReferenceModel().predict(rows))


@pytest.mark.parametrize(
    ("datatype", "typecode", "values"),
    [
        ("FP64", "d", flat(ROWS)),
        ("FP32", "f", [1.1, 2.2, 3.3, -4.4, 5.5, 6.6]),
        ("INT64", "q", [1, 2, 3, -4, 2**50, 6]),
        ("UINT16", "H", [1, 2, 3, 4, 65535, 6]),
    ],
)
async def test_raw_contents_get_raw_answers(
    datatype: str, typecode: str, values: list[float]
) -> None:
    async with serving() as client:
        response = await client.infer(raw_request(datatype, typecode, values, (2, 3)))
    seen = [float(value) for value in array(typecode, values).tolist()]
    assert predictions(response) == ([2, 1], ReferenceModel().predict([seen[:3], seen[3:]]))


async def test_bool_raw_contents_are_one_byte_each() -> None:
    tensor = Tensor(name="input-0", datatype="BOOL", shape=[3])
    message = pb.ModelInferRequest(
        model_name="reference", inputs=[tensor], raw_input_contents=[b"\x01\x00\x01"]
    )
    async with serving() as client:
        response = await client.infer(message)
    assert predictions(response) == ([1, 1], ReferenceModel().predict([[1.0, 0.0, 1.0]]))


def _two_inputs() -> pb.ModelInferRequest:
    message = request()
    message.inputs.append(message.inputs[0])
    return message


def _raw_and_typed() -> pb.ModelInferRequest:
    message = request()
    message.raw_input_contents.append(array("d", flat(ROWS)).tobytes())
    return message


@pytest.mark.parametrize(
    ("message", "names"),
    [
        (request("FP64", (2, 2)), "inputs[0].contents.fp64_contents has 6 values"),
        (request("FP64", (2, 3, 1)), "inputs[0].shape"),
        (request("BYTES", (1, 1), bytes_contents=[b"x"]), "BYTES"),
        (pb.ModelInferRequest(model_name="reference"), "exactly one tensor"),
        (_two_inputs(), "exactly one tensor"),
        (request("FP32", (2, 3)), "inputs[0].contents.fp64_contents does not hold FP32"),
        (request("INT8", (1, 1), int_contents=[300]), "INT8's range"),
        (request("FP64", (1, 1), fp64_contents=[float("nan")]), "finite"),
        (_raw_and_typed(), "inputs[0].contents must be empty"),
        (raw_request("FP64", "b", [1, 2, 3], (1, 3)), "not a whole number of FP64 values"),
        (b"\xff\xff\xff", "not a valid inference.ModelInferRequest"),
    ],
)
async def test_bad_requests_are_invalid_argument(message: Any, names: str) -> None:
    async with serving() as client:
        error = await client.infer_error(message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert names in (error.details() or "")


async def test_a_failing_model_is_internal() -> None:
    async with serving("tests.targets.sample_models:ExplodingModel") as client:
        error = await client.infer_error(request(model="exploding"))
    assert error.code() == grpc.StatusCode.INTERNAL


async def test_past_the_admission_bound_infer_is_unavailable() -> None:
    gate = AdmissionGate(1, 0)
    async with serving(admission=gate) as client:
        await gate.acquire()  # the one slot is taken
        error = await client.infer_error(request())
        gate.release()
        served = await client.infer(request())
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(error.trailing_metadata() or ())["grpc-retry-pushback-ms"] == "1000"
    assert predictions(served)[1] == ReferenceModel().predict(ROWS)


async def test_stream_answers_in_order_and_goes_on_after_an_error() -> None:
    rows = [[float(index), 1.0, 2.0] for index in range(6)]
    messages = [
        request("FP64", (1, 3), request_id=f"s{index}", fp64_contents=row)
        for index, row in enumerate(rows)
    ]
    messages[2] = request("BYTES", (1, 1), request_id="bad", bytes_contents=[b"x"])
    messages[4] = request(model="other", request_id="lost")
    async with serving() as client:
        responses = await client.stream(messages)
    assert len(responses) == len(messages)
    for index, response in enumerate(responses):
        if index in (2, 4):
            assert response.error_message
            assert response.infer_response.id == messages[index].id
            continue
        assert response.error_message == ""
        assert response.infer_response.id == f"s{index}"
        assert predictions(response.infer_response) == (
            [1, 1],
            ReferenceModel().predict([rows[index]]),
        )
    assert "BYTES" in responses[2].error_message
    assert "'other' is not served" in responses[4].error_message


async def test_stream_takes_raw_contents_and_multi_row_messages() -> None:
    messages = [raw_request("FP64", "d", flat(ROWS), (2, 3)), request()]
    async with serving() as client:
        responses = await client.stream(messages)
    assert [predictions(r.infer_response) for r in responses] == [
        ([2, 1], ReferenceModel().predict(ROWS))
    ] * 2
    assert responses[0].infer_response.raw_output_contents  # raw in, raw out
    assert not responses[1].infer_response.raw_output_contents


async def test_stream_model_failure_is_an_error_message() -> None:
    async with serving("tests.targets.sample_models:ExplodingModel") as client:
        responses = await client.stream([request(model="exploding")] * 2)
    assert [bool(response.error_message) for response in responses] == [True, True]
    assert "failed" in responses[0].error_message
