"""Compatibility both ways: frozen v1 clients against the new server, and the v2 client helper
against servers that do not speak v2."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from targets.rpc import predict_pb2 as pb
from targets.rpc import predict_pb2_grpc
from targets.rpc.client import PredictClient
from targets.schema import response_problem
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, expected, running_grpc

LEGACY_DIR = Path(__file__).parent / "legacy"
ROWS = [[1.0, 2.0], [3.0], [0.5, 0.25, 4.0]]

# Runs in its own interpreter: the v1 stubs declare the same protobuf package (servelab.v1) as the
# current ones, and one descriptor pool cannot hold both.
LEGACY_CLIENT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import grpc
    import predict_v1_pb2 as pb
    import predict_v1_pb2_grpc as pb_grpc

    def as_dict(response):
        meta = response.metadata
        return {"predictions": list(response.predictions),
                "metadata": {key: getattr(meta, key) for key in
                             ("transport", "model_name", "model_version", "request_id", "api")}}

    with grpc.insecure_channel(sys.argv[1]) as channel:
        stub = pb_grpc.PredictorStub(channel)
        unary = stub.Predict(pb.PredictRequest(instances=[1.0, 2.0, 3.0], debug=True), timeout=10)
        stream = list(stub.PredictStream(
            iter([pb.PredictRequest(instances=[value], debug=True) for value in (0.5, 7.0)]),
            timeout=10))
    print(json.dumps({"unary": as_dict(unary), "stream": [as_dict(r) for r in stream]}))
    """
)


async def run_legacy_client(address: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LEGACY_CLIENT,
        address,
        str(LEGACY_DIR),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_frozen_v1_client_sending_the_removed_debug_field_still_works() -> None:
    async with running_grpc() as running:
        result = await run_legacy_client(running.address)
    unary = result["unary"]
    assert response_problem(unary, expected_predictions=1) is None
    assert unary["predictions"] == expected([[1.0, 2.0, 3.0]])
    assert (unary["metadata"]["transport"], unary["metadata"]["api"]) == ("grpc", "v1")
    assert [answer["predictions"][0] for answer in result["stream"]] == expected([[0.5], [7.0]])
    assert {answer["metadata"]["transport"] for answer in result["stream"]} == {"grpc-stream"}


async def test_client_uses_v2_rows_on_a_v2_server() -> None:
    async with running_grpc() as running:
        client = PredictClient(running.channel)
        answer = await client.predict(ROWS, request_id="r1")
    assert answer["predictions"] == expected(ROWS)
    assert (answer["metadata"]["api"], answer["metadata"]["request_id"]) == ("v2", "r1")
    assert (client.v2_available, client.calls) == (True, 1)


@pytest.mark.parametrize("precision", [None, 1])
async def test_client_degrades_to_one_v1_call_per_row_on_a_v1_only_server(
    precision: int | None,
) -> None:
    async with running_grpc() as v2_server, running_grpc(enable_v2=False) as v1_server:
        via_v2 = await PredictClient(v2_server.channel).predict(ROWS, precision=precision)
        client = PredictClient(v1_server.channel)
        degraded = await client.predict(ROWS, precision=precision)
        assert (client.v2_available, client.calls) == (False, 1 + len(ROWS))
        again = await client.predict(ROWS, precision=precision)  # remembered: no v2 attempt
        assert client.calls == 1 + 2 * len(ROWS)
        v1_statuses = [line["status"] for line in v1_server.access_lines()]
    assert degraded["predictions"] == via_v2["predictions"] == again["predictions"]
    assert response_problem(degraded, expected_predictions=len(ROWS)) is None
    assert degraded["metadata"]["api"] == "v1"
    assert v1_statuses == ["UNIMPLEMENTED"] + ["OK"] * 2 * len(ROWS)


class PreV2Predictor(predict_pb2_grpc.PredictorServicer):
    """What a server built before v2 does: it knows no `rows` and answers `instances` alone."""

    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        return pb.PredictResponse(
            predictions=expected([list(request.instances)]),
            metadata=pb.Metadata(transport="grpc", model_name="old", api="v1"),
        )

    async def PredictStream(
        self, request_iterator: AsyncIterator[pb.PredictRequest], context: Any
    ) -> AsyncIterator[pb.PredictResponse]:
        async for request in request_iterator:
            yield await self.Predict(request, context)


async def test_client_degrades_when_a_pre_v2_server_silently_ignores_rows() -> None:
    server = grpc.aio.server()
    predict_pb2_grpc.add_PredictorServicer_to_server(PreV2Predictor(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with PredictClient.open(f"127.0.0.1:{port}") as client:
            answer = await asyncio.wait_for(client.predict(ROWS), STEP_TIMEOUT_S)
    finally:
        await server.stop(0)
    assert answer["predictions"] == expected(ROWS)
    assert client.v2_available is False


async def test_client_raises_other_rpc_errors() -> None:
    async with running_grpc() as running:
        client = PredictClient(running.channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.predict([[float("nan")]])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.v2_available is None


@pytest.mark.parametrize(
    ("rows", "precision", "problem"),
    [([], None, "rows"), ([[1.0]], 13, "precision"), ([[1.0]], -1, "precision")],
)
async def test_client_checks_its_arguments(
    rows: list[list[float]], precision: int | None, problem: str
) -> None:
    async with running_grpc() as running:
        with pytest.raises(ValueError, match=problem):
            await PredictClient(running.channel).predict(rows, precision=precision)
