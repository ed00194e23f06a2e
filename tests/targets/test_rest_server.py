"""The REST target on a real uvicorn, in a subprocess on a free loopback port."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from targets.rest.client import RestClient
from targets.schema import response_problem
from tests.conftest import RunningTarget, ServelabCli


def _request(
    target: RunningTarget,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
) -> tuple[int, Any]:
    parts = urlsplit(target.url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(raw) if kind.startswith("application/json") else raw
    finally:
        connection.close()


def _predict(target: RunningTarget, body: object, path: str = "/v1/predict") -> tuple[int, Any]:
    return _request(
        target, "POST", path, json.dumps(body).encode(), {"content-type": "application/json"}
    )


def test_serves_curl_style_requests_and_every_bad_input_over_http(spawn_target: Any) -> None:
    target = spawn_target("rest", "--max-body-bytes", "4096")
    status, body = _predict(target, {"instances": [1, 2, 3]})
    assert status == 200
    assert body["predictions"] == [1.7]
    assert response_problem(body, expected_predictions=1) is None
    json_type = {"content-type": "application/json"}
    cases = [
        (b'{"instances": [1,', json_type, 400),
        (b"", json_type, 400),
        (b'{"instances": [1]}', {"content-type": "application/x-www-form-urlencoded"}, 415),
        (b'{"instances": [' + b"1," * 3000 + b"1]}", json_type, 413),
        (b'{"instance": [1]}', json_type, 422),
        (b'{"instances": ["x"]}', json_type, 422),
        (b'{"instances": [NaN, Infinity]}', json_type, 422),
        (b'{"instances": [[1, 2]]}', json_type, 422),
    ]
    for raw, headers, expected in cases:
        status, body = _request(target, "POST", "/v1/predict", raw, headers)
        assert status == expected, (raw[:40], body)
        assert set(body["error"]) >= {"code", "message"}
    assert _predict(target, {"instances": [5]})[0] == 200
    assert target.process.poll() is None


def test_real_server_health_metrics_and_openapi(spawn_target: Any) -> None:
    target = spawn_target("rest")
    assert _request(target, "GET", "/healthz") == (200, {"status": "ok"})
    assert _request(target, "GET", "/readyz")[1]["status"] == "ready"
    for _ in range(4):
        _predict(target, {"instances": [1]})
    status, text = _request(target, "GET", "/metrics")
    assert status == 200
    assert b'servelab_requests_total{route="/v1/predict",status="200"} 4.0' in text
    assert _request(target, "GET", "/openapi.json")[1]["info"]["title"] == "servelab REST target"


def test_several_workers_share_the_port_and_metrics_aggregate(spawn_target: Any) -> None:
    target = spawn_target("rest", "--workers", "2")
    requests = 40
    for _ in range(requests):  # fresh connections, spread over both workers by the kernel
        assert _predict(target, {"instances": [2]})[0] == 200
    _, text = _request(target, "GET", "/metrics")
    counted = [
        float(line.rsplit(" ", 1)[1])
        for line in text.decode().splitlines()
        if line.startswith('servelab_requests_total{route="/v1/predict",status="200"}')
    ]
    assert sum(counted) == requests


def test_sigterm_lets_in_flight_requests_finish(spawn_target: Any) -> None:
    target = spawn_target("rest", "--model", "synthetic:fixed:700ms")
    result: dict[str, Any] = {}

    def slow_call() -> None:
        result["answer"] = _predict(target, {"instances": [1]})

    caller = threading.Thread(target=slow_call)
    caller.start()
    _wait_for_connection(target)
    target.process.send_signal(signal.SIGTERM)
    caller.join(15)
    assert result["answer"][0] == 200
    assert target.process.wait(15) == 0


def _wait_for_connection(target: RunningTarget) -> None:
    """Poll /proc until the server holds an established connection from our caller."""
    port = target.info["port"]
    for _ in range(500):
        if _established(port):
            return
        threading.Event().wait(0.01)
    pytest.fail("the slow request never connected")


def _established(port: int) -> bool:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # 01 = ESTABLISHED
            return True
    return False


def test_v2_client_degrades_against_a_v1_only_server(spawn_target: Any) -> None:
    rows = [[1.0, 2.0], [3.0], []]
    with RestClient(spawn_target("rest").url) as modern:
        expected = modern.predict_rows(rows)
        assert modern.v2_available is True
    with RestClient(spawn_target("rest", "--disable-v2").url) as degraded:
        assert degraded.predict_rows(rows) == expected == [1.3, 2.5, 0.0]
        assert degraded.v2_available is False


def test_bad_spec_is_one_line_and_exit_2(servelab_cli: ServelabCli) -> None:
    result = servelab_cli(
        "serve", "rest", "--port", "0", "--model", "synthetic:nope:1ms", timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown synthetic kind 'nope'" in result.stderr


def test_busy_port_is_one_line_and_exit_2(servelab_cli: ServelabCli) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = servelab_cli("serve", "rest", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "rest", "--port", "70000"], "expected a port 0..65535"),
        (["serve", "rest", "--workers", "0"], "expected a positive integer"),
        (["serve", "rest", "--log-level", "loud"], "invalid choice: 'loud'"),
        (["serve", "ftp"], "invalid choice: 'ftp'"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    servelab_cli: ServelabCli, args: list[str], words: str
) -> None:
    result = servelab_cli(*args, timeout=60)
    assert result.returncode == 2
    assert words in result.stderr
    assert result.stderr.strip().count("\n") == 0
