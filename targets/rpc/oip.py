"""The Open Inference Protocol's gRPC service, ``inference.GRPCInferenceService`` (OIP v2 / KServe
V2, plus Triton's ``ModelStreamInfer``), beside ``servelab.v1.Predictor`` on the gRPC target.

- ``ServerLive`` / ``ServerReady``: true whenever the server answers (the model is loaded before
  it starts; while it drains, grpc refuses new calls and health says NOT_SERVING).
- ``ServerMetadata``, ``ModelMetadata``, ``ModelReady``: ``targets.oip``'s metadata; an unknown
  model name or version is NOT_FOUND (an empty version is none: the served one).
- ``ModelInfer``: one input tensor, in the typed ``contents`` field its datatype names
  (``fp64_contents``, ``fp32_contents``, ``int64_contents``, ``int_contents`` for INT8..32,
  ``uint_contents``, ``uint64_contents``, ``bool_contents``) or in ``raw_input_contents``
  (little-endian); the answer is ``output-0``, FP64, ``[rows, 1]``, in ``raw_output_contents``
  when the request was raw and in ``contents.fp64_contents`` otherwise. Errors are statuses
  (``targets.rpc.status.translate``): INVALID_ARGUMENT, INTERNAL (model failure), UNAVAILABLE
  (overload, with ``grpc-retry-pushback-ms``), RESOURCE_EXHAUSTED (over the message limit).
- ``ModelStreamInfer``: one ``ModelStreamInferResponse`` per request, in request order, through
  the server's ``MicroBatcher`` as ``PredictStream`` is; a bad or shed message is answered in
  place (``error_message`` set; ``infer_response.id`` echoes its id, if it had one) and the
  stream goes on.

Unary infer and every valid stream message hold a slot of the same ``AdmissionGate`` as the
Predictor's calls, so the server has one bound whichever protocol a client speaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, Final, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from targets import oip
from targets.errors import InvalidRequest, MalformedRequest
from targets.models import Model
from targets.rpc import inference_pb2 as pb
from targets.rpc.servicer import ModelServicer, Pending
from targets.rpc.status import Failure, abort, translate
from targets.schema import Limits, PredictRequest, Row

OIP_SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
INFER_ROUTE: Final = f"/{OIP_SERVICE_NAME}/ModelInfer"
STREAM_INFER_ROUTE: Final = f"/{OIP_SERVICE_NAME}/ModelStreamInfer"
NOT_FOUND_CODE: Final = "model_not_found"
# The typed contents field each datatype's values travel in (grpc_predict_v2.proto).
CONTENTS_FIELD: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}

_M = TypeVar("_M", bound=Message)


def decoder(message_type: type[_M]) -> Callable[[bytes], _M | MalformedRequest]:
    """A request deserializer that hands undecodable bytes on as a ``MalformedRequest`` (answered
    INVALID_ARGUMENT; grpc would answer a raising deserializer UNKNOWN)."""

    def decode(data: bytes) -> _M | MalformedRequest:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            name = message_type.DESCRIPTOR.full_name
            return MalformedRequest(f"message is not a valid {name}: {exc}")

    return decode


def model_not_found(model: Model, name: str, version: str) -> Failure | None:
    """NOT_FOUND when ``name`` (at ``version``, if not empty) is not the served model."""
    problem = oip.unknown_model(model, name, version or None)
    if problem is None:
        return None
    return Failure(grpc.StatusCode.NOT_FOUND, NOT_FOUND_CODE, problem, "model_name")


def _tensor_data(message: pb.ModelInferRequest, datatype: str) -> tuple[Any, str]:
    """The input's values (typed contents or decoded raw bytes) and the field they came from."""
    tensor = message.inputs[0]
    if message.raw_input_contents:
        if tensor.HasField("contents"):
            raise InvalidRequest(
                "inputs[0].contents must be empty when raw_input_contents is used",
                "inputs[0].contents",
            )
        if len(message.raw_input_contents) != 1:
            raise InvalidRequest(
                f"raw_input_contents must hold one entry per input (1), "
                f"got {len(message.raw_input_contents)}",
                "raw_input_contents",
            )
        where = "raw_input_contents[0]"
        return oip.decode_raw(datatype, message.raw_input_contents[0], where), where
    field = CONTENTS_FIELD[datatype]
    for descriptor, _ in tensor.contents.ListFields():
        if descriptor.name != field:
            raise InvalidRequest(
                f"inputs[0].contents.{descriptor.name} does not hold {datatype} values; "
                f"use inputs[0].contents.{field}",
                f"inputs[0].contents.{descriptor.name}",
            )
    return getattr(tensor.contents, field), f"inputs[0].contents.{field}"


def request_rows(message: pb.ModelInferRequest, model: Model, limits: Limits) -> list[Row]:
    """The rows of a ``ModelInferRequest``'s one input tensor; ``InvalidRequest`` says why not."""
    oip.one_input(len(message.inputs))
    tensor = message.inputs[0]
    datatype = oip.check_datatype(tensor.datatype, "inputs[0].datatype")
    shape = oip.check_shape(list(tensor.shape), model, limits, "inputs[0].shape")
    oip.check_requested_outputs([output.name for output in message.outputs])
    data, where = _tensor_data(message, datatype)
    return oip.tensor_rows(datatype, shape, data, where)


def infer_response(
    model: Model, request_id: str, predictions: list[float], *, raw: bool
) -> pb.ModelInferResponse:
    """``output-0``, FP64, ``[rows, 1]``: raw contents for a raw request, typed otherwise."""
    output = pb.ModelInferResponse.InferOutputTensor(
        name=oip.OUTPUT_NAME, datatype=oip.OUTPUT_DATATYPE, shape=[len(predictions), 1]
    )
    response = pb.ModelInferResponse(
        model_name=model.name, model_version=model.version, id=request_id
    )
    if raw:
        response.raw_output_contents.append(oip.encode_fp64(predictions))
    else:
        output.contents.fp64_contents.extend(predictions)
    response.outputs.append(output)
    return response


def _metadata_response(model: Model) -> pb.ModelMetadataResponse:
    metadata = oip.model_metadata(model)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=metadata["name"],
        versions=metadata["versions"],
        platform=metadata["platform"],
        inputs=[tensor(**spec) for spec in metadata["inputs"]],
        outputs=[tensor(**spec) for spec in metadata["outputs"]],
    )


_Decoded = pb.ModelInferRequest | MalformedRequest


class InferenceServicer(ModelServicer):
    """``inference.GRPCInferenceService`` over one model; see the module docstring."""

    async def ServerLive(self, request: object, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: object, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=True)

    async def ServerMetadata(self, request: object, context: Any) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(**oip.server_metadata())

    async def ModelReady(
        self, request: pb.ModelReadyRequest | MalformedRequest, context: Any
    ) -> pb.ModelReadyResponse:
        await self._find_model(request, context)
        return pb.ModelReadyResponse(ready=True)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest | MalformedRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        await self._find_model(request, context)
        return _metadata_response(self.service.model)

    async def _find_model(
        self,
        request: pb.ModelReadyRequest | pb.ModelMetadataRequest | MalformedRequest,
        context: Any,
    ) -> None:
        if isinstance(request, MalformedRequest):
            await abort(context, translate(request))
        failure = model_not_found(self.service.model, request.name, request.version)
        if failure is not None:
            await abort(context, failure)

    def _parse(self, message: pb.ModelInferRequest) -> PredictRequest:
        rows = request_rows(message, self.service.model, self.service.limits)
        return PredictRequest(rows=rows, api="v2", request_id=oip.request_id(message.id))

    async def ModelInfer(self, request: _Decoded, context: Any) -> pb.ModelInferResponse:
        started_s = time.perf_counter()
        if isinstance(request, MalformedRequest):  # bytes that are no ModelInferRequest
            self._access("grpc", INFER_ROUTE, "INVALID_ARGUMENT", started_s, None)
            await abort(context, translate(request))
        model = self.service.model
        failure = model_not_found(model, request.model_name, request.model_version)
        if failure is not None:
            self._access("grpc", INFER_ROUTE, "NOT_FOUND", started_s, request.id or None)
            await abort(context, failure)
        try:
            async with self.admission.admit():
                answer = await self.service.predict_async(self._parse(request))
            request_id = answer["metadata"]["request_id"]
            raw = bool(request.raw_input_contents)
            response = infer_response(model, request_id, answer["predictions"], raw=raw)
        except asyncio.CancelledError:  # the client went away or the grace period ran out
            self._access("grpc", INFER_ROUTE, "CANCELLED", started_s, request.id or None)
            raise
        except Exception as exc:  # the one error boundary of unary inference
            failure = translate(exc)
            if failure.status == grpc.StatusCode.INTERNAL:
                self.logger.log("error", "infer_failed", error=repr(exc), cause=repr(exc.__cause__))
            self._access("grpc", INFER_ROUTE, failure.status.name, started_s, request.id or None)
            await abort(context, failure)
        self._access("grpc", INFER_ROUTE, "OK", started_s, request_id)
        return response

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[_Decoded], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Every message through the micro-batcher (``ModelServicer._serve_stream``); a bad one
        is answered in place (``error_message``) and the stream goes on."""
        stream = self._serve_stream(request_iterator, context, STREAM_INFER_ROUTE)
        async with aclosing(stream) as answers:
            async for response in answers:
                yield response

    async def _submit(self, message: _Decoded) -> Pending:
        """Validate one message; a valid one takes an admission slot and goes to the batcher."""
        started_s = time.perf_counter()
        if isinstance(message, MalformedRequest):
            return Pending(started_s, translate(message), None)
        request_id = message.id or None
        raw = bool(message.raw_input_contents)
        failure = model_not_found(self.service.model, message.model_name, message.model_version)
        if failure is not None:
            return Pending(started_s, failure, request_id, raw)
        return await self._enqueue(started_s, lambda: self._parse(message), request_id, raw)

    async def _answer(self, item: Pending) -> tuple[pb.ModelStreamInferResponse, str, str | None]:
        """The response to one stream message, its status name and request id."""
        failure = item.outcome
        if isinstance(failure, asyncio.Future):
            try:
                answer = await failure
            except Exception as exc:  # the model failed this batch: answered in place too
                failure = translate(exc)
                self._log_internal("stream_infer_predict_failed", exc)
            else:
                request_id = answer["metadata"]["request_id"]
                response = infer_response(
                    self.service.model, request_id, answer["predictions"], raw=item.raw
                )
                return pb.ModelStreamInferResponse(infer_response=response), "OK", request_id
        rejected = pb.ModelStreamInferResponse(error_message=failure.message)
        if item.request_id is not None:
            rejected.infer_response.id = item.request_id
        return rejected, failure.status.name, item.request_id


def add_to_server(servicer: InferenceServicer, server: Any) -> None:
    """Register ``servicer`` on a grpc.aio ``server``, with undecodable-message handling."""
    unary: dict[str, tuple[Callable[..., Any], type[Message], type[Message]]] = {
        "ServerLive": (servicer.ServerLive, pb.ServerLiveRequest, pb.ServerLiveResponse),
        "ServerReady": (servicer.ServerReady, pb.ServerReadyRequest, pb.ServerReadyResponse),
        "ModelReady": (servicer.ModelReady, pb.ModelReadyRequest, pb.ModelReadyResponse),
        "ServerMetadata": (
            servicer.ServerMetadata,
            pb.ServerMetadataRequest,
            pb.ServerMetadataResponse,
        ),
        "ModelMetadata": (
            servicer.ModelMetadata,
            pb.ModelMetadataRequest,
            pb.ModelMetadataResponse,
        ),
        "ModelInfer": (servicer.ModelInfer, pb.ModelInferRequest, pb.ModelInferResponse),
    }
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            method,
            request_deserializer=decoder(request),
            response_serializer=response.SerializeToString,
        )
        for name, (method, request, response) in unary.items()
    }
    handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
        servicer.ModelStreamInfer,
        request_deserializer=decoder(pb.ModelInferRequest),
        response_serializer=pb.ModelStreamInferResponse.SerializeToString,
    )
    generic = grpc.method_handlers_generic_handler(OIP_SERVICE_NAME, handlers)
    server.add_generic_rpc_handlers((generic,))
    server.add_registered_method_handlers(OIP_SERVICE_NAME, handlers)
