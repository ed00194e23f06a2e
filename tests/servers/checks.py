"""What a ``servelab run`` against a real server must show, and direct probes of how a server
answers each kind of servelab's deliberately invalid requests (for test_real_servers.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from loadtests.cli.app import main
from loadtests.engine.workload import Payload
from loadtests.protocols.base import INVALID_KINDS
from loadtests.protocols.kserve_v1 import invalid_instances
from loadtests.protocols.oip import invalid_inputs
from loadtests.protocols.oip_grpc import INFER, OipGrpc
from loadtests.protocols.tensors import TensorSpec
from loadtests.results.document import ResultDocument
from loadtests.results.result import load_result
from tests.servers.launch import RunningServer

TENSOR = "input-0:FP64:-1,64"
GENERATOR_BEHIND = "load generator could not keep up:"
# after a 500, MLServer and KServe drop the connection: what servelab sent on it fails so
CLOSED_AFTER_500 = {"reset", "disconnected"}

# the servers are on loopback: no proxy from the environment may see the direct probes
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def servelab_run(tmp_path: Path, *args: str) -> tuple[int, ResultDocument]:
    """``servelab run ARGS`` in this process; its exit code and the result file it wrote."""
    out = tmp_path / "result.json"
    code = main(["run", *args, "--out", str(out), "--no-progress"])
    return code, load_result(out)


def rest_run(tmp_path: Path, server: RunningServer, *args: str) -> tuple[int, ResultDocument]:
    return servelab_run(tmp_path, "--target", "rest", "--url", server.base_url, *args)


def grpc_run(tmp_path: Path, server: RunningServer, *args: str) -> tuple[int, ResultDocument]:
    assert server.grpc_address is not None
    return servelab_run(tmp_path, "--target", "grpc", "--address", server.grpc_address, *args)


def assert_clean(code: int, result: ResultDocument, *, requests: int | None = None) -> None:
    """Every request a success whose answer passed the protocol's schema check, and exit 0 —
    or, for an open-loop run on a busy machine, exit 3 with the generator named as the only
    reason (see ``assert_exit_by_verdict``)."""
    summary = result["summary"]
    assert summary["schema_success_rate"] == 1.0, result["errors"]
    assert summary["failures"] == 0
    assert summary["expected_rejections"] == 0
    assert summary["successes"] == summary["requests"] > 0
    if requests is not None:
        assert summary["requests"] == requests
    if result["run"]["mode"] == "closed":
        assert (code, result["verdict"]["valid"]) == (0, True), result["verdict"]
    else:
        assert_exit_by_verdict(code, result)


def assert_exit_by_verdict(code: int, result: ResultDocument) -> None:
    """Exit 0 for a VALID run. An open loop holds servelab's sends to a schedule: on this
    2-core machine, shared with the server (and with whatever else runs), the generator can
    start more than 5 % of its sends over 1 ms late. servelab then calls the measurement INVALID
    for that reason alone and exits 3 (README "Exit codes") — right, and not the server's doing;
    any other reason fails the test."""
    verdict = result["verdict"]
    if verdict["valid"]:
        assert code == 0, verdict
        return
    assert verdict["reasons"], verdict
    assert all(reason.startswith(GENERATOR_BEHIND) for reason in verdict["reasons"]), verdict
    assert code == 3, verdict


def assert_invalid_injection(
    code: int, result: ResultDocument, statuses: Mapping[str, int], connection_dropped: bool
) -> None:
    """The 4xx kinds came back as expected rejections; the 500 kinds as ``http_500`` failures
    (plus, where the server drops the connection after a 500, ``reset``/``disconnected``), and
    the default gate (success rate >= 0.99) failed the run: exit 1."""
    summary, errors = result["summary"], result["errors"]
    rejects = any(400 <= status < 500 for status in statuses.values())
    assert (summary["expected_rejections"] > 0) is rejects, summary
    assert errors.get("http_500", 0) > 0, errors
    allowed = {"http_500"} | (CLOSED_AFTER_500 if connection_dropped else set())
    assert set(errors) <= allowed, errors
    assert summary["failures"] == sum(errors.values())
    assert summary["successes"] > 0
    total = summary["successes"] + summary["failures"] + summary["expected_rejections"]
    assert total == summary["requests"]
    assert result["verdict"]["valid"] is True
    assert code == 1


def post_status(url: str, body: object) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with _LOOPBACK.open(request, timeout=10.0) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def invalid_statuses(url: str, protocol: str) -> dict[str, int]:
    """The server's status for each kind of servelab's own invalid bodies (slot i is kind i)."""
    tensor = TensorSpec.parse(TENSOR)
    statuses = {}
    for slot, kind in enumerate(INVALID_KINDS):
        if protocol == "oip":
            body: dict[str, Any] = invalid_inputs(tensor, slot)
        else:  # kserve-v1, and bentoml's body, which carries the same "instances" field
            body = invalid_instances(slot)
            if protocol == "bentoml":
                body = {"instances": body.get("instances", "none")}
        statuses[kind] = post_status(url, body)
    return statuses


def grpc_invalid_statuses(address: str) -> dict[str, str]:
    """The status ``ModelInfer`` answers each kind of servelab's own invalid requests with."""
    contract = OipGrpc(model_name="digits", tensors=(TensorSpec.parse(TENSOR),))
    statuses = {}
    with grpc.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        infer = channel.unary_unary(INFER)  # bytes in, bytes out
        for slot, kind in enumerate(INVALID_KINDS):
            payload = Payload("v1", [[0.0] * 64], {}, valid=False, slot=slot)
            try:
                infer(contract.request_bytes(payload), timeout=10.0)
                statuses[kind] = "OK"
            except grpc.RpcError as exc:
                statuses[kind] = exc.code().name
    return statuses


def assert_grpc_invalid_injection(
    code: int, result: ResultDocument, statuses: Mapping[str, str]
) -> None:
    """INVALID_ARGUMENT kinds are expected rejections, INTERNAL ones ``internal`` failures (the
    channel stays up), and the default gate fails the run: exit 1."""
    summary, errors = result["summary"], result["errors"]
    assert summary["expected_rejections"] > 0, summary
    assert set(errors) == {"internal"}, errors
    assert summary["failures"] == errors["internal"] > 0
    total = summary["successes"] + summary["failures"] + summary["expected_rejections"]
    assert total == summary["requests"]
    assert sorted(set(statuses.values())) == ["INTERNAL", "INVALID_ARGUMENT"]
    assert result["verdict"]["valid"] is True
    assert code == 1
