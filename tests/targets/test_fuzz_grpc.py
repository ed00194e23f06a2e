"""Malformed, invalid and oversize messages, sent as raw bytes to an in-process gRPC target.

A seeded generator builds four kinds of message (1,200 in all): decodable but invalid (NaN,
Infinity, too many instances, both ``instances`` and ``rows``, bad options, a request id too long)
must answer INVALID_ARGUMENT; over ``--max-message-bytes`` RESOURCE_EXHAUSTED; bytes that do not
decode as a ``PredictRequest`` INVALID_ARGUMENT, never OK or UNKNOWN; valid messages with random
bytes flipped any answer but UNKNOWN or INTERNAL (a client's bytes must not look like a server
fault). Afterwards the server still answers a valid request OK.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError

from targets.rpc import predict_pb2 as pb
from targets.rpc.server import PREDICT_ROUTE, STREAM_ROUTE
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, RunningGrpc, expected, running_grpc

SEED = 20_260_701
MAX_MESSAGE_BYTES = 8_192
MAX_INSTANCES = 64
PER_KIND = {"invalid": 450, "oversize": 150, "undecodable": 400, "mutated": 200}
CONCURRENCY = 32
OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT

Generator = Callable[[random.Random], bytes]


def _finite(rng: random.Random) -> float:
    return rng.choice([0.0, -1.5, 3.0, rng.uniform(-1e6, 1e6), rng.random()])


def _row(rng: random.Random, size: int) -> list[float]:
    return [_finite(rng) for _ in range(size)]


def _with_bad_number(rng: random.Random) -> bytes:
    row = _row(rng, rng.randint(0, 8))
    row.insert(rng.randint(0, len(row)), rng.choice([math.nan, math.inf, -math.inf]))
    if rng.random() < 0.5:
        return pb.PredictRequest(instances=row).SerializeToString()
    rows = [pb.Row(values=_row(rng, 3)) for _ in range(rng.randint(0, 3))]
    rows.insert(rng.randint(0, len(rows)), pb.Row(values=row))
    return pb.PredictRequest(rows=rows).SerializeToString()


def _too_many_instances(rng: random.Random) -> bytes:
    count = rng.randint(MAX_INSTANCES + 1, 4 * MAX_INSTANCES)
    if rng.random() < 0.5:
        return pb.PredictRequest(instances=_row(rng, count)).SerializeToString()
    rows = [pb.Row(values=_row(rng, 2)) for _ in range(count // 2 + 1)]
    return pb.PredictRequest(rows=rows).SerializeToString()


def _instances_and_rows(rng: random.Random) -> bytes:
    return pb.PredictRequest(
        instances=_row(rng, rng.randint(1, 4)),
        rows=[pb.Row(values=_row(rng, 2)) for _ in range(rng.randint(1, 3))],
    ).SerializeToString()


def _bad_options(rng: random.Random) -> bytes:
    options = rng.choice(
        [
            {"precision": rng.choice(["x", "", "1.5", "13", "-1", "99999999999", "2e1"])},
            {rng.choice(["colour", "precison", "Precision"]): "2"},
        ]
    )
    return pb.PredictRequest(
        rows=[pb.Row(values=_row(rng, 2))], options=options
    ).SerializeToString()


def _request_id_too_long(rng: random.Random) -> bytes:
    request_id = "r" * rng.randint(129, 1_000)
    return pb.PredictRequest(rows=[pb.Row(values=[1.0])], request_id=request_id).SerializeToString()


INVALID_GENERATORS: tuple[Generator, ...] = (
    _with_bad_number,
    _too_many_instances,
    _instances_and_rows,
    _bad_options,
    _request_id_too_long,
)


def _invalid(rng: random.Random) -> bytes:
    return rng.choice(INVALID_GENERATORS)(rng)


def _oversize(rng: random.Random) -> bytes:
    size = rng.randint(MAX_MESSAGE_BYTES + 1, 4 * MAX_MESSAGE_BYTES)
    if rng.random() < 0.5:  # a well-formed message that is merely too big
        return pb.PredictRequest(instances=[1.0] * (size // 8)).SerializeToString()
    return rng.randbytes(size)


def _undecodable(rng: random.Random) -> bytes:
    """Random bytes, redrawn until protobuf refuses them (random bytes often parse)."""
    while True:
        data = rng.randbytes(rng.randint(1, 512))
        try:
            pb.PredictRequest.FromString(data)
        except DecodeError:
            return data


def _mutated(rng: random.Random) -> bytes:
    """A valid v2 message with a few bytes overwritten: may decode to anything, or to nothing."""
    message = pb.PredictRequest(
        rows=[pb.Row(values=_row(rng, rng.randint(1, 4))) for _ in range(rng.randint(1, 3))],
        request_id=f"fuzz-{rng.randint(0, 999)}",
        options={"precision": "3"},
    )
    data = bytearray(message.SerializeToString())
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


GENERATORS: dict[str, Generator] = {
    "invalid": _invalid,
    "oversize": _oversize,
    "undecodable": _undecodable,
    "mutated": _mutated,
}


def _messages(seed: int) -> Iterator[tuple[str, bytes]]:
    rng = random.Random(seed)
    kinds = [kind for kind, count in PER_KIND.items() for _ in range(count)]
    rng.shuffle(kinds)
    for kind in kinds:
        yield kind, GENERATORS[kind](rng)


def _allowed(kind: str, data: bytes) -> set[grpc.StatusCode]:
    if kind == "invalid":
        return {INVALID}
    if kind == "oversize":
        return {grpc.StatusCode.RESOURCE_EXHAUSTED}
    if kind == "undecodable":
        return {INVALID}
    # Mutated bytes that still decode are a request like any other: any client-facing answer.
    return set(grpc.StatusCode) - {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}


def _identity(data: bytes) -> bytes:
    return data


async def _status(call: Any, data: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        await call(data, timeout=STEP_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return OK, ""


async def _valid_request_answers(running: RunningGrpc) -> None:
    row = [1.0, 2.0, 3.0]
    response = await running.stub.Predict(pb.PredictRequest(instances=row), timeout=STEP_TIMEOUT_S)
    assert list(response.predictions) == expected([row])


@pytest.mark.slow
async def test_raw_message_flood_gets_the_documented_codes_and_the_server_still_serves() -> None:
    messages = list(_messages(SEED))
    assert len(messages) >= 1_000
    assert (
        sum(len(data) > MAX_MESSAGE_BYTES for kind, data in messages if kind == "oversize")
        == (PER_KIND["oversize"])
    )
    async with running_grpc(max_instances=MAX_INSTANCES, max_message_bytes=MAX_MESSAGE_BYTES) as r:
        call = r.channel.unary_unary(
            PREDICT_ROUTE, request_serializer=_identity, response_deserializer=_identity
        )
        gate = asyncio.Semaphore(CONCURRENCY)

        async def send(data: bytes) -> tuple[grpc.StatusCode, str]:
            async with gate:
                return await _status(call, data)

        answers = await asyncio.gather(*(send(data) for _, data in messages))
        await _valid_request_answers(r)

    seen: collections.Counter[tuple[str, str]] = collections.Counter()
    wrong = []
    for (kind, data), (status, details) in zip(messages, answers, strict=True):
        seen[(kind, status.name)] += 1
        if status not in _allowed(kind, data):
            wrong.append(f"{kind} {data[:40]!r}… ({len(data)} B) -> {status.name}: {details}")
    assert not wrong, f"{len(wrong)} wrong answers, first ones:\n" + "\n".join(wrong[:10])
    for kind, count in PER_KIND.items():
        assert sum(n for (k, _), n in seen.items() if k == kind) == count


async def test_undecodable_stream_messages_are_answered_in_place_and_the_stream_goes_on() -> None:
    rng = random.Random(SEED)
    valid = pb.PredictRequest(instances=[1.0, 2.0, 3.0]).SerializeToString()
    sent = [valid if index % 5 == 0 else _undecodable(rng) for index in range(100)]
    async with running_grpc() as running:
        stream = running.channel.stream_stream(
            STREAM_ROUTE, request_serializer=_identity, response_deserializer=_identity
        )
        call = stream(iter(sent), timeout=STEP_TIMEOUT_S)
        answers = [pb.PredictResponse.FromString(raw) async for raw in call]
        assert await call.code() == OK
    assert len(answers) == len(sent)
    for data, answer in zip(sent, answers, strict=True):
        if data is valid:
            assert list(answer.predictions) == expected([[1.0, 2.0, 3.0]])
        else:
            assert answer.error.code == "malformed_request"


def test_undecodable_generator_yields_bytes_protobuf_refuses() -> None:
    rng = random.Random(SEED)
    for _ in range(50):
        with pytest.raises(DecodeError):
            pb.PredictRequest.FromString(_undecodable(rng))
    assert struct.calcsize("<d") == 8  # the size arithmetic of _oversize counts 8 B per double


@pytest.mark.parametrize("key", ["preci\x11ion", "précision", "a\nb"])
async def test_unknown_option_with_unprintable_key_is_invalid_argument(key: str) -> None:
    """Found by fuzzing: the field path quoted the key into trailing metadata, which must be
    printable ASCII, so the status failed to send and the client saw INTERNAL."""
    message = pb.PredictRequest(rows=[pb.Row(values=[1.0])], options={key: "2"})
    async with running_grpc() as running:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.stub.Predict(message, timeout=STEP_TIMEOUT_S)
    assert caught.value.code() == INVALID
    trailing = dict(caught.value.trailing_metadata() or ())
    assert trailing["servelab-error-field"] == f"options.{key}".encode("unicode_escape").decode()
