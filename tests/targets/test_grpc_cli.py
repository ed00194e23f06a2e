"""``servelab serve grpc`` end to end: a real subprocess, its ready file polled, SIGTERM drained."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from targets.rpc import predict_pb2 as pb
from targets.rpc import predict_pb2_grpc
from tests.conftest import RunningTarget, ServelabCli
from tests.targets.test_grpc_support import STEP_TIMEOUT_S, expected

SpawnTarget = Callable[..., RunningTarget]


def log_events(log: Path) -> list[dict[str, object]]:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    return [json.loads(line) for line in lines]


def wait_for_event(target: RunningTarget, event: str) -> None:
    """Poll the target's log for ``event`` (bounded); fail with the log if it never shows."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(record.get("event") == event for record in log_events(target.log)):
            return
        assert target.process.poll() is None, target.log.read_text()
        time.sleep(0.01)
    raise AssertionError(f"no {event!r} in the log:\n{target.log.read_text()}")


def test_serve_grpc_announces_its_address_and_answers(spawn_target: SpawnTarget) -> None:
    target = spawn_target("grpc", "--batch-size", "4", "--window-ms", "1")
    info = target.info
    assert info["transport"] == "grpc"
    assert info["host"] == "127.0.0.1"
    assert info["address"] == target.address == f"127.0.0.1:{info['port']}"
    assert info["url"] == f"grpc://{target.address}"
    assert info["pid"] == target.process.pid
    with grpc.insecure_channel(target.address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="servelab.v1.Predictor"), timeout=STEP_TIMEOUT_S
        )
        stub = predict_pb2_grpc.PredictorStub(channel)
        response = stub.Predict(pb.PredictRequest(instances=[1.0, 2.0]), timeout=STEP_TIMEOUT_S)
        streamed = list(
            stub.PredictStream(iter([pb.PredictRequest(instances=[4.0])]), timeout=STEP_TIMEOUT_S)
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert list(response.predictions) == expected([[1.0, 2.0]])
    assert [list(answer.predictions) for answer in streamed] == [expected([[4.0]])]
    assert target.stop() == 0
    requests = [record for record in log_events(target.log) if record["event"] == "request"]
    assert [(record["route"], record["status"]) for record in requests] == [
        ("/servelab.v1.Predictor/Predict", "OK"),
        ("/servelab.v1.Predictor/PredictStream", "OK"),
    ]


def test_sigterm_lets_the_in_flight_call_finish_then_exits_zero(spawn_target: SpawnTarget) -> None:
    target = spawn_target("grpc", "--model", "synthetic:fixed:300ms", "--log-level", "debug")
    with grpc.insecure_channel(target.address) as channel:
        stub = predict_pb2_grpc.PredictorStub(channel)
        in_flight = stub.Predict.future(pb.PredictRequest(instances=[3.0]), timeout=30)
        wait_for_event(target, "rpc_started")  # the server holds the call: now signal it
        target.process.send_signal(signal.SIGTERM)
        response = in_flight.result(timeout=30)
    assert list(response.predictions) == expected([[3.0]])
    assert target.process.wait(timeout=30) == 0
    events = [record["event"] for record in log_events(target.log)]
    # The call was answered after the shutdown began, and before it ended.
    assert events.index("stopping") < events.index("request") < events.index("stopped")


def test_bad_model_spec_is_one_line_and_exit_2(servelab_cli: ServelabCli) -> None:
    result = servelab_cli(
        "serve", "grpc", "--port", "0", "--model", "synthetic:nope:1ms", timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "bad --model" in result.stderr


def test_busy_port_is_an_error_not_a_shared_socket(servelab_cli: ServelabCli) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = servelab_cli("serve", "grpc", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert f"cannot bind gRPC server to 127.0.0.1:{port}" in result.stderr


def test_importing_the_package_loads_no_grpc() -> None:
    code = "import sys, targets.rpc; print('grpc' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "False"
