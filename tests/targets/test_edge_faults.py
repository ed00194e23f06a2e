"""The fault proxy on a controlled clock: real loopback sockets, the schedule's instant set by the
test, so each outage and reset is exercised on purpose and the counts are exact."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from targets.edge.breaker import CircuitBreaker
from targets.edge.faults import FaultProxy
from targets.edge.link import LinkSchedule, parse_link_profile
from targets.edge.quantize import parse_quant
from targets.edge.remote import RemoteClient, RemoteUnavailable
from targets.edge.runtime import EdgeRuntime
from targets.models import reference_prediction
from targets.schema import build_response
from targets.spec import load_model


class Clock:
    """The proxy's and the breaker's clock: seconds, moved by the test."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


async def _answer_canonically(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A minimal keep-alive REST remote: each POST gets the reference model's answer."""
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            body = json.loads(await reader.readexactly(length))
            answer = build_response(
                [reference_prediction(body["instances"])], transport="rest",
                model_name="remote", model_version="1", request_id="r", api="v1",
            )  # fmt: skip
            payload = json.dumps(answer).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def remote() -> AsyncIterator[tuple[str, int]]:
    server = await asyncio.start_server(_answer_canonically, "127.0.0.1", 0)
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def proxied(remote: tuple[str, int]) -> AsyncIterator[Any]:
    started: list[FaultProxy] = []

    async def start(profile: str) -> tuple[FaultProxy, Clock]:
        clock = Clock()
        proxy = FaultProxy(remote, LinkSchedule(parse_link_profile(profile), 7), clock=clock)
        await proxy.start()
        started.append(proxy)
        return proxy, clock

    yield start
    for proxy in started:
        await proxy.close()


def _client(proxy: FaultProxy, timeout_s: float = 2.0) -> RemoteClient:
    return RemoteClient(f"http://127.0.0.1:{proxy.port}", timeout_s=timeout_s)


async def _predict(client: RemoteClient, value: float) -> str:
    """``ok`` or the failure's kind; the blocking client runs in a thread, as the edge's does."""
    try:
        await asyncio.to_thread(client.predict, [[value] * 4], "v1")
    except RemoteUnavailable as exc:
        return exc.kind
    return "ok"


async def test_up_forwards_each_request_once_on_a_kept_alive_connection(proxied: Any) -> None:
    proxy, _clock = await proxied("reset=0%,delay=1ms")
    client = _client(proxy)
    assert [await _predict(client, v) for v in range(5)] == ["ok"] * 5
    client.close()
    assert proxy.stats() | {"outages_hit": None} == {
        "connections": 1, "forwarded": 5, "resets": 0, "dropped": 0, "blackholed": 0,
        "upstream_errors": 0, "outages_hit": None,
    }  # fmt: skip


async def test_resets_cut_the_connection_and_a_stale_retry_cannot_hide_a_fresh_one(
    proxied: Any,
) -> None:
    proxy, _clock = await proxied("reset=100%,delay=0ms")
    client = _client(proxy)
    kinds = [await _predict(client, v) for v in range(3)]
    client.close()
    assert all(kind in ("ConnectionResetError", "RemoteDisconnected") for kind in kinds), kinds
    assert proxy.stats()["resets"] == 3  # fresh connections: http.client does not retry those
    assert proxy.stats()["forwarded"] == 0


async def test_a_drop_outage_resets_a_kept_alive_connection_and_refuses_new_ones(
    proxied: Any,
) -> None:
    proxy, clock = await proxied("down=2s/5s,reset=0%,delay=0ms,outage=drop")
    client = _client(proxy)
    assert await _predict(client, 1.0) == "ok"
    clock.now_s = 3.5  # outage 0: the next request meets it on the same connection
    assert await _predict(client, 2.0) in ("ConnectionResetError", "RemoteDisconnected")
    assert await _predict(client, 3.0) in ("ConnectionResetError", "RemoteDisconnected")
    clock.now_s = 5.2  # up again
    assert await _predict(client, 4.0) == "ok"
    client.close()
    stats = proxy.stats()
    assert stats["outages_hit"] == [0]
    # the reused connection cut mid-stream, its retry and the next request refused at accept
    assert stats["dropped"] == 3
    assert stats["forwarded"] == 2


async def test_a_blackhole_outage_answers_nothing_until_the_client_gives_up(
    proxied: Any,
) -> None:
    proxy, clock = await proxied("down=2s/5s,reset=0%,delay=0ms,outage=blackhole")
    clock.now_s = 8.5  # outage 1
    client = _client(proxy, timeout_s=0.2)
    assert await _predict(client, 1.0) == "TimeoutError"
    client.close()
    assert proxy.stats()["blackholed"] == 1
    assert proxy.stats()["outages_hit"] == [1]
    assert proxy.stats()["forwarded"] == 0


async def test_the_edge_rides_out_an_outage_and_its_breaker_closes_after_it(
    proxied: Any,
) -> None:
    """The runtime, its breaker and the proxy on one clock: every step's source is known."""
    proxy, clock = await proxied("down=2s/5s,reset=0%,delay=0ms,outage=drop")
    breaker = CircuitBreaker(cooldown_s=1.0, clock=clock)
    runtime = EdgeRuntime(
        load_model("reference"), parse_quant("int8:8"), remote=_client(proxy), breaker=breaker
    )
    steps = [(0.5, "remote"), (3.5, "local"), (3.7, "local"), (4.6, "local"), (5.7, "remote")]
    sources = []
    for index, (at_s, _) in enumerate(steps):
        clock.now_s = at_s
        answer = await asyncio.to_thread(runtime.handle, {"instances": [float(index)] * 4})
        sources.append(answer["metadata"]["source"])
    runtime.close()
    assert sources == [source for _, source in steps]
    # opened at 3.5, its half-open trial at 4.6 met the outage (open again), 5.7's closed it
    assert (breaker.opens, breaker.closes, breaker.trials) == (2, 1, 2)
    assert runtime.stats()["errors"] == 0
    assert proxy.stats()["outages_hit"] == [0]


def test_the_proxy_process_says_its_port_then_its_counts_when_stdin_closes() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "targets.edge.faults", "--upstream", "127.0.0.1:9",
         "--profile", "down=1s/2s", "--seed", "3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    lines = [json.loads(line) for line in out.splitlines()]
    assert process.returncode == 0, err
    assert lines[0]["port"] > 0
    assert lines[0]["profile"] == "down=1s/2s,reset=10%,delay=50ms,outage=mixed"
    assert lines[0]["seed"] == 3
    assert lines[1]["stats"]["connections"] == 0


def test_the_proxy_process_refuses_a_bad_profile_in_one_line() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "targets.edge.faults", "--upstream", "127.0.0.1:9",
         "--profile", "down=9s/5s"],
        capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert completed.stderr.startswith("faults: --flaky-link 'down=9s/5s': down:")
    assert completed.stderr.count("\n") == 1
