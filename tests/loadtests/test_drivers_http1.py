"""The lean HTTP/1.1 REST driver: against uvicorn (the real REST target), nginx (when installed),
and scripted loopback servers for the framings and failures a load test meets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.static_server import ANSWER as STATIC_ANSWER
from benchmarks.static_server import nginx_path, static_server
from loadtests.drivers.http1 import Http1Driver
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec

SPEC = PayloadSpec(invalid_fraction=0.2, v2_share_start=0.5, rows_per_request=3)
ANSWER = STATIC_ANSWER.encode()  # a canonical v1 answer of one prediction
PAYLOAD = Payload("v1", [[1.0, 2.0]], {"instances": [1.0, 2.0]})


async def _run(
    driver: Http1Driver, requests: int, concurrency: int = 4, spec: PayloadSpec = SPEC
) -> Recorder:
    plan = LoadPlan(concurrency=concurrency, duration_s=None, requests=requests)
    return await Harness(driver, PayloadGenerator(spec, 1), plan).run()


async def test_against_the_real_rest_target(spawn_target: Any) -> None:
    target = spawn_target("rest", "--log-level", "warning")
    driver = Http1Driver(target.url, connections=4)
    recorder = await _run(driver, 400)
    generator = PayloadGenerator(SPEC, 1)
    assert recorder.requests == 400
    assert recorder.failures == 0, recorder.errors
    assert recorder.expected_rejections == sum(not generator.payload(i).valid for i in range(400))
    assert recorder.schema_ok == recorder.schema_checked == recorder.successes
    assert recorder.predictions > recorder.successes  # v2 payloads carry 3 rows
    assert driver.bytes_sent > 0
    assert driver.bytes_received > 0


@pytest.mark.skipif(nginx_path() is None, reason="nginx not installed (apt-get install nginx)")
async def test_against_nginx_every_request_is_one_the_server_served(tmp_path: Path) -> None:
    with static_server(tmp_path / "nginx") as server:
        assert server.name == "nginx"
        driver = Http1Driver(server.url, connections=8)
        recorder = await _run(driver, 2_000, concurrency=8, spec=PayloadSpec())  # v1 answers
        assert recorder.successes == 2_000, recorder.errors
        for _ in range(300):  # nginx flushes its access log within a second: poll, bounded
            if server.served() == 2_000:
                break
            await asyncio.sleep(0.01)
        assert server.served() == 2_000


class Scripted:
    """A loopback server whose every request gets ``respond(writer)``; counts connections."""

    def __init__(self, respond: Callable[[asyncio.StreamWriter], Awaitable[bool]]) -> None:
        self.respond = respond
        self.connections = 0
        self.requests = 0
        self.url = ""

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1]) for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )  # fmt: skip
                await reader.readexactly(length)
                self.requests += 1
                if not await self.respond(writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _head(extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}".encode()


async def chunked(writer: asyncio.StreamWriter) -> bool:
    half = len(ANSWER) // 2
    parts = [ANSWER[:half], ANSWER[half:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    writer.write(_head("Transfer-Encoding: chunked\r\n\r\n") + body)
    await writer.drain()
    return True


async def close_delimited(writer: asyncio.StreamWriter) -> bool:
    writer.write(_head("Connection: close\r\n\r\n") + ANSWER)  # no length: EOF ends the body
    await writer.drain()
    return False


async def connection_close(writer: asyncio.StreamWriter) -> bool:
    writer.write(_head(f"Content-Length: {len(ANSWER)}\r\nConnection: close\r\n\r\n") + ANSWER)
    await writer.drain()
    return False


async def split_writes(writer: asyncio.StreamWriter) -> bool:
    data = _head(f"Content-Length: {len(ANSWER)}\r\n\r\n") + ANSWER
    for start in range(0, len(data), 7):  # headers and body cut at odd places
        writer.write(data[start : start + 7])
        await writer.drain()
    return True


@pytest.mark.parametrize(
    ("respond", "connections_per_request"),
    [(chunked, 0), (split_writes, 0), (close_delimited, 1), (connection_close, 1)],
)
async def test_framings_are_read_whole_and_keep_alive_is_honoured(
    respond: Callable[[asyncio.StreamWriter], Awaitable[bool]], connections_per_request: int
) -> None:
    async with Scripted(respond) as server:
        driver = Http1Driver(server.url, connections=2)
        await driver.open()
        replies = [await driver.send(PAYLOAD) for _ in range(20)]
        await driver.close()
    assert replies == [(Outcome.OK, None, 1, True)] * 20
    assert server.requests == 20
    # keep-alive: one connection for all; a server that closes: one per request
    assert server.connections == (20 if connections_per_request else 1)


async def test_the_pool_never_opens_more_connections_than_asked() -> None:
    async def slow(writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.005)
        writer.write(_head(f"Content-Length: {len(ANSWER)}\r\n\r\n") + ANSWER)
        await writer.drain()
        return True

    async with Scripted(slow) as server:
        driver = Http1Driver(server.url, connections=2)
        plan = LoadPlan(concurrency=8, duration_s=None, requests=80)
        recorder = await Harness(driver, PayloadGenerator(PayloadSpec(), 1), plan).run()
    assert recorder.successes == 80
    assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", "protocol"),
        (_head("Content-Length: 100000\r\n\r\n") + b"x" * 100_000, "protocol"),  # > max body
        (_head(f"Content-Length: {len(ANSWER) + 50}\r\n\r\n") + ANSWER, "disconnected"),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", "http_503"),
        (_head("Content-Length: 5\r\n\r\n") + b"{oops", "schema"),
    ],
)
async def test_bad_answers_are_classified_and_the_next_request_works(
    answer: bytes, error: str
) -> None:
    answers = iter([answer])

    async def respond(writer: asyncio.StreamWriter) -> bool:
        good = _head(f"Content-Length: {len(ANSWER)}\r\n\r\n") + ANSWER
        writer.write(next(answers, good))
        await writer.drain()
        return error != "disconnected"  # a short body: the server hangs up mid-answer

    async with Scripted(respond) as server:
        driver = Http1Driver(server.url, connections=1, max_body_bytes=10_000)
        await driver.open()
        first = await driver.send(PAYLOAD)
        second = await driver.send(PAYLOAD)
        await driver.close()
    assert first == (Outcome.FAILURE, error, 0, False)
    assert second == (Outcome.OK, None, 1, True)


async def test_nothing_listening_is_a_connect_failure() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    driver = Http1Driver(f"http://127.0.0.1:{port}", connections=1)
    await driver.open()
    assert await driver.send(PAYLOAD) == (Outcome.FAILURE, "connect", 0, False)
    await driver.close()


@pytest.mark.parametrize(
    ("url", "connections", "timeout_s", "words"),
    [
        ("https://127.0.0.1:1", 1, 1.0, "plain http"),
        ("127.0.0.1:8000", 1, 1.0, "plain http"),
        ("http://127.0.0.1:1", 0, 1.0, "connections"),
        ("http://127.0.0.1:1", 1, 0.0, "timeout_s"),
    ],
)
def test_bad_arguments_name_themselves(
    url: str, connections: int, timeout_s: float, words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Http1Driver(url, connections=connections, timeout_s=timeout_s)


async def test_busy_polling_records_the_same_requests_and_stops_spinning() -> None:
    async with Scripted(connection_close) as server:
        plan = LoadPlan(concurrency=2, duration_s=None, requests=50, busy_poll=True)
        harness = Harness(
            Http1Driver(server.url, connections=2), PayloadGenerator(PayloadSpec(), 1), plan
        )
        recorder = await harness.run()
    assert recorder.successes == 50
    assert harness.stats.busy_poll is True
    current = asyncio.current_task()
    assert [task for task in asyncio.all_tasks() if task is not current] == []  # spinner gone


async def test_a_send_cancelled_mid_answer_leaves_the_pool_usable() -> None:
    first = asyncio.Event()

    async def slow_first(writer: asyncio.StreamWriter) -> bool:
        if not first.is_set():
            first.set()
            await asyncio.sleep(0.2)  # the first answer comes after its send was cancelled
        writer.write(_head(f"Content-Length: {len(ANSWER)}\r\n\r\n") + ANSWER)
        await writer.drain()
        return True

    async with Scripted(slow_first) as server:
        driver = Http1Driver(server.url, connections=1)
        await driver.open()
        cancelled = asyncio.ensure_future(driver.send(PAYLOAD))
        await asyncio.wait_for(first.wait(), 5)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        reply = await driver.send(PAYLOAD)  # a fresh connection: the old one still owes an answer
        await driver.close()
    assert reply == (Outcome.OK, None, 1, True)
    assert server.connections == 2
