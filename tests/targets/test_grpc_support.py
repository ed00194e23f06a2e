"""Helpers the gRPC tests share: an in-process server on 127.0.0.1 port 0, and small models.

The server runs inside the test's event loop (``build_server`` + ``GrpcTarget.start``), so tests
can read the batcher's counters and the servicer's log directly. This module holds no tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from targets.batching import BatchingConfig
from targets.logs import JsonLogger
from targets.models import Model, reference_prediction
from targets.rpc import predict_pb2_grpc
from targets.rpc.server import GrpcTarget, build_server
from targets.schema import DEFAULT_MAX_BODY_BYTES, Limits
from targets.service import PredictionService
from targets.spec import load_model

STEP_TIMEOUT_S = 10.0  # bounds every wait; never reached when things work


class GateModel:
    """Reference predictions, held until the test opens the gate: an in-flight call on demand."""

    name = "gate"
    version = "1.0"

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        return [reference_prediction(row) for row in rows]

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.entered.set()
        await self.release.wait()
        return self.predict(rows)


class RunningGrpc:
    """A started in-process target, a channel and stub to it, and its log."""

    def __init__(self, target: GrpcTarget, channel: grpc.aio.Channel, log: io.StringIO) -> None:
        self.target = target
        self.channel = channel
        self.stub = predict_pb2_grpc.PredictorStub(channel)
        self.log = log

    @property
    def address(self) -> str:
        assert self.target.address is not None
        return self.target.address

    def access_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines()]
        return [line for line in lines if line["event"] == "request"]


@contextlib.asynccontextmanager
async def running_grpc(
    model: str | Model = "reference",
    *,
    enable_v2: bool = True,
    max_instances: int = Limits().max_instances,
    max_message_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchingConfig | None = None,
) -> AsyncIterator[RunningGrpc]:
    """Serve ``model`` on 127.0.0.1 port 0 for the duration of the block."""
    service = PredictionService(
        load_model(model) if isinstance(model, str) else model,
        transport="grpc",
        limits=Limits(max_instances=max_instances, max_body_bytes=max_message_bytes),
        enable_v2=enable_v2,
    )
    log = io.StringIO()
    target = build_server(
        service,
        batching=batching or BatchingConfig(),
        max_message_bytes=max_message_bytes,
        logger=JsonLogger(log, "info"),
    )
    await target.start("127.0.0.1", 0)
    channel = grpc.aio.insecure_channel(target.address)
    try:
        yield RunningGrpc(target, channel, log)
    finally:
        await channel.close()
        await target.stop(grace_s=0)


def expected(rows: Sequence[Sequence[float]]) -> list[float]:
    """The lesson's reference values, written out independently of the model code."""
    return [round(sum(row) / len(row) * 0.8 + 0.1, 4) if row else 0.0 for row in rows]
