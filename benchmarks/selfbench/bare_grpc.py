"""The bare grpc.aio client servelab's gRPC drivers are compared with: ``concurrency`` callers on
one channel (as ``servelab run --target grpc``), each awaiting its call, nothing recorded; or as
many bidi streams in ping-pong. Prints one JSON line: calls, CPU and wall seconds of the window.

    python -m benchmarks.selfbench.bare_grpc ADDRESS {unary,stream,oip} CONCURRENCY SECONDS

``oip``: unary ``inference.GRPCInferenceService/ModelInfer`` of the digits model (64 FP64
features a row), pre-serialized, through an identity multicallable — the leanest OIP client.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
import uvloop

from loadtests.drivers.grpc import to_message
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.protocols.oip_grpc import INFER, OipGrpc
from loadtests.protocols.tensors import TensorSpec
from targets.rpc import predict_pb2_grpc

WARMUP_S = 0.5


def _oip_request(payload: Payload) -> bytes:
    contract = OipGrpc(model_name="digits", tensors=(TensorSpec.parse("input-0:FP64:-1,64"),))
    return contract.request_bytes(payload)


async def main(address: str, mode: str, concurrency: int, seconds: float) -> dict[str, float]:
    generator = PayloadGenerator(PayloadSpec(), seed=1)
    generator_64 = PayloadGenerator(PayloadSpec(min_instances=64, max_instances=64), seed=1)
    messages = [to_message(generator.payload(index)) for index in range(64)]
    counts = [0] * concurrency
    async with grpc.aio.insecure_channel(address) as channel:
        await channel.channel_ready()
        stub = predict_pb2_grpc.PredictorStub(channel)
        stop_at = time.perf_counter() + WARMUP_S + seconds

        async def unary(slot: int) -> None:
            index = 0
            while time.perf_counter() < stop_at:
                await stub.Predict(messages[index & 63])
                index += 1
                counts[slot] += 1

        async def stream(slot: int) -> None:
            call = stub.PredictStream()
            index = 0
            while time.perf_counter() < stop_at:
                await call.write(messages[index & 63])
                await call.read()
                index += 1
                counts[slot] += 1
            await call.done_writing()
            while await call.read() != grpc.aio.EOF:  # drain (see DESIGN: read() until EOF)
                pass

        model_infer = channel.unary_unary(INFER)
        requests = [_oip_request(generator_64.payload(index)) for index in range(64)]

        async def oip(slot: int) -> None:
            index = 0
            while time.perf_counter() < stop_at:
                await model_infer(requests[index & 63])
                index += 1
                counts[slot] += 1

        caller = {"unary": unary, "stream": stream, "oip": oip}[mode]
        tasks = [asyncio.ensure_future(caller(slot)) for slot in range(concurrency)]
        await asyncio.sleep(WARMUP_S)
        calls0, cpu0, wall0 = sum(counts), time.process_time(), time.perf_counter()
        await asyncio.gather(*tasks)
        calls, cpu, wall = sum(counts), time.process_time(), time.perf_counter()
    return {"calls": calls - calls0, "cpu_s": cpu - cpu0, "wall_s": wall - wall0}


if __name__ == "__main__":
    address, mode, concurrency, seconds = sys.argv[1:5]
    figures = uvloop.run(main(address, mode, int(concurrency), float(seconds)))
    print(json.dumps(figures))
