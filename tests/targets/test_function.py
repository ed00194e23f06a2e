"""The function target: HTTP ↔ API Gateway v2 events, the mangum handler in its instance
process, the scale-to-zero rule (cold start, reuse, retirement, the maximum) and the front."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from targets.function.gateway import (
    COLD_START_HEADER,
    INIT_MS_HEADER,
    INSTANCE_HEADER,
    http_answer,
    http_event,
)
from targets.function.pool import InstancePool, Throttled

FAKE_INSTANCE = [sys.executable, str(Path(__file__).with_name("fake_function_instance.py"))]
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 30.0


def _event(path: str = "/v1/predict", body: bytes = b'{"instances": [1, 2, 3]}') -> dict[str, Any]:
    return http_event(
        method="POST",
        path=path,
        query="a=1",
        headers=[("Content-Type", "application/json"), ("Cookie", "x=1; y=2"), ("X-A", "1"),
                 ("X-A", "2"), ("Content-Length", str(len(body)))],
        body=body,
        request_id="req-1",
    )  # fmt: skip


def test_an_http_request_becomes_an_api_gateway_v2_event() -> None:
    event = _event()
    assert event["version"] == "2.0"
    assert event["requestContext"]["http"] == {
        "method": "POST", "path": "/v1/predict", "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1", "userAgent": "",
    }  # fmt: skip
    assert event["headers"] == {"content-type": "application/json", "x-a": "1,2"}
    assert event["cookies"] == ["x=1", "y=2"]
    assert (event["rawQueryString"], event["body"], event["isBase64Encoded"]) == (
        "a=1", '{"instances": [1, 2, 3]}', False,
    )  # fmt: skip
    binary = _event(body=b"\xff\x00")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"


def test_a_function_answer_becomes_http() -> None:
    status, headers, body = http_answer(
        {"statusCode": 201, "headers": {"Content-Type": "text/plain", "Content-Length": "9"},
         "cookies": ["a=b"], "body": base64.b64encode(b"\x01\x02").decode(),
         "isBase64Encoded": True}
    )  # fmt: skip
    assert (status, body) == (201, b"\x01\x02")
    assert headers == [("content-type", "text/plain"), ("set-cookie", "a=b")]
    assert http_answer({"hello": "world"}) == (
        200, [("content-type", "application/json")], b'{"hello":"world"}',
    )  # fmt: skip
    with pytest.raises(ValueError, match="statusCode"):
        http_answer({"statusCode": "200"})


def _instance_answers(events: list[dict[str, Any]], model: str = "reference") -> list[Any]:
    """The real instance process (the handler as a platform loads it), fed ``events``."""
    lines = "".join(json.dumps({"event": e, "request_id": f"r{i}"}) + "\n" for i, e in
                    enumerate(events))  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "targets.function.instance"], input=lines, capture_output=True,
        text=True, timeout=60, cwd=ROOT, env={"SERVELAB_MODEL": model, "PATH": ""},
        check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_handler_answers_api_gateway_events_as_the_rest_target_does() -> None:
    ready, ok, invalid, missing = _instance_answers(
        [_event(), _event(body=b'{"instances": "no"}'), _event(path="/nowhere")]
    )
    assert ready["ready"] is True
    assert ready["init_ms"] > 0
    assert (ok["statusCode"], ok["isBase64Encoded"]) == (200, False)
    assert ok["headers"]["content-type"] == "application/json"
    answer = json.loads(ok["body"])
    assert answer["predictions"] == [1.7]
    assert answer["metadata"]["transport"] == "function"
    assert invalid["statusCode"] == 422
    assert json.loads(invalid["body"])["error"]["code"] == "invalid_request"
    assert missing["statusCode"] == 404


def test_an_instance_whose_init_fails_says_so_and_exits() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "targets.function.instance"], input="", capture_output=True,
        text=True, timeout=60, cwd=ROOT, env={"SERVELAB_MODEL": "synthetic:nope", "PATH": ""},
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["ready"] is False


async def _poll(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {DEADLINE_S:g} s")
        await asyncio.sleep(0.02)  # polling the pool's state


async def test_the_first_request_starts_an_instance_the_next_reuses_it_then_it_retires() -> None:
    pool = InstancePool("reference", max_instances=1, idle_timeout_s=0.2, command=FAKE_INSTANCE)
    try:
        first = await pool.invoke(_event())
        second = await pool.invoke(_event())
        assert (first.cold, second.cold) == (True, False)
        assert first.instance == second.instance == 1
        assert json.loads(first.answer["body"]) == json.loads(second.answer["body"])
        await _poll(lambda: pool.stats()["instances"] == 0, "retired")
        assert pool.stats()["retired"] == 1
        third = await pool.invoke(_event())
        assert (third.cold, third.instance) == (True, 2)  # scaled to zero, so a new start
        assert pool.stats()["cold_starts"] == 2
    finally:
        await pool.close()
    assert pool.stats()["instances"] == 0


async def test_concurrent_requests_never_start_more_than_the_maximum() -> None:
    pool = InstancePool(
        "reference", max_instances=2, idle_timeout_s=30, max_waiting=2, command=FAKE_INSTANCE
    )
    try:
        done = await asyncio.gather(*(pool.invoke(_event()) for _ in range(4)))
        assert sorted(d.cold for d in done) == [False, False, True, True]
        assert {d.instance for d in done} == {1, 2}
        stats = pool.stats()
        assert (stats["peak_instances"], stats["cold_starts"], stats["invocations"]) == (2, 2, 4)
        busy = [asyncio.ensure_future(pool.invoke(_event())) for _ in range(4)]
        await asyncio.sleep(0)  # one loop turn: each takes an instance or a place in line
        with pytest.raises(Throttled):  # 2 busy, 2 waiting: the fifth is refused
            await pool.invoke(_event())
        assert all(not d.cold for d in await asyncio.gather(*busy))
        assert pool.stats()["peak_instances"] == 2
    finally:
        await pool.close()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[str]:
    """``servelab serve function`` on a free port: at most one instance, retired after 0.3 s."""
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "loadtests.cli", "serve", "function", "--port", "0",
         "--ready-file", str(ready), "--idle-timeout", "0.3s", "--max-function-instances", "1"],
        cwd=ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not ready.exists() or not ready.read_text():
            assert process.poll() is None, "the front exited"
            assert time.monotonic() < deadline, "front not ready"
            time.sleep(0.02)  # polling the ready file
        yield json.loads(ready.read_text())["url"]
    finally:
        process.terminate()
        assert process.wait(30) == 0  # drained, every instance stopped


def _post(url: str) -> tuple[int, dict[str, str], Any]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST", "/v1/predict", b'{"instances": [1, 2, 3]}', {"content-type": "application/json"}
        )
        answer = connection.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read())
    finally:
        connection.close()


def _stats(url: str) -> dict[str, Any]:
    from targets.function.client import front_stats

    stats = front_stats(url)
    assert stats is not None
    return stats


def test_the_front_answers_cold_then_warm_and_scales_to_zero(front: str) -> None:
    status, headers, body = _post(front)
    assert (status, headers[COLD_START_HEADER], headers[INSTANCE_HEADER]) == (200, "1", "1")
    assert float(headers[INIT_MS_HEADER]) > 0
    assert body["predictions"] == [1.7]
    _, warm, _ = _post(front)
    assert (warm[COLD_START_HEADER], warm[INSTANCE_HEADER]) == ("0", "1")
    assert _stats(front)["instance_cpu_s"] > 0
    deadline = time.monotonic() + DEADLINE_S
    while _stats(front)["instances"]:
        assert time.monotonic() < deadline, "the idle instance was never retired"
        time.sleep(0.05)  # polling the front's own figures
    _, again, _ = _post(front)
    assert (again[COLD_START_HEADER], again[INSTANCE_HEADER]) == ("1", "2")
    stats = _stats(front)
    assert (stats["cold_starts"], stats["retired"], stats["peak_instances"]) == (2, 1, 1)
