"""Fault injection on the load side: against a scripted faulty target the harness keeps going,
classifies every failure, and the result file still holds everything measured."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from loadtests.engine.harness import LoadPlan
from loadtests.jobs.run import execute
from loadtests.jobs.settings import RunSettings
from loadtests.results.result import load_result
from tests.loadtests.faulty import (
    CLOSE,
    HANG,
    OK,
    RESET,
    FaultyGrpcTarget,
    FaultyRestTarget,
    Script,
    Slow,
    Status,
    burst,
)

REQUESTS = 40
RUN_LIMIT_S = 60  # every run here is bounded by its request count; this only guards the test


def _settings(
    target: str,
    where: str,
    *,
    requests: int = REQUESTS,
    timeout_s: float = 5.0,
    client: str = "auto",
) -> RunSettings:
    plan = LoadPlan(concurrency=2, duration_s=None, requests=requests, drain_timeout_s=5.0)
    url, address = (where, None) if target == "rest" else (None, where)
    return RunSettings(
        target=target, url=url, address=address, plan=plan, timeout_s=timeout_s, connections=2,
        http_client=client,
    )  # fmt: skip


CLIENTS = pytest.mark.parametrize("client", ["fast", "aiohttp"])


async def _run(settings: RunSettings, out: Path) -> dict[str, object]:
    await asyncio.wait_for(execute(settings, out=out), RUN_LIMIT_S)
    return dict[str, object](load_result(out))  # the file on disk, not the object in memory


@pytest.mark.parametrize(
    ("script", "error", "faults"),
    [
        pytest.param(burst(HANG, 5, 10), "timeout", 5, id="hang"),
        pytest.param(burst(CLOSE, 5, 10), "disconnected", 5, id="close"),
        pytest.param(burst(RESET, 5, 10), "reset", 5, id="reset"),
        pytest.param(burst(Status(503), 5, 15), "http_503", 10, id="5xx-burst"),
        # request 0 is servelab's probe (a 500 passes it: the target is up), so the run's
        # own requests meet the faults from its first one
        pytest.param(burst(Status(500), 1, 4), "http_500", 3, id="5xx-at-start"),
    ],
)
@CLIENTS
async def test_rest_faults_are_classified_and_the_run_goes_on(
    tmp_path: Path, script: Script, error: str, faults: int, client: str
) -> None:
    target = await FaultyRestTarget(script).start()
    settings = _settings("rest", target.url, timeout_s=0.3, client=client)
    try:
        result = await _run(settings, tmp_path / "r.json")
    finally:
        await target.stop()
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert summary["requests"] == REQUESTS
    assert result["errors"] == {error: faults}
    assert summary["failures"] == faults
    assert summary["successes"] == REQUESTS - faults  # the run went on after the faults


@CLIENTS
async def test_slow_answers_are_successes_charged_their_wait(tmp_path: Path, client: str) -> None:
    delay_s = 0.05
    target = await FaultyRestTarget(burst(Slow(delay_s), 0, 4)).start()
    try:
        result = await _run(_settings("rest", target.url, client=client), tmp_path / "r.json")
    finally:
        await target.stop()
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert result["errors"] == {}
    assert summary["successes"] == REQUESTS
    assert summary["latency_ms"]["max"] >= delay_s * 1e3  # a lower bound, not a speed claim


async def _stop_after(target: FaultyRestTarget | FaultyGrpcTarget, answered: int) -> None:
    for _ in range(RUN_LIMIT_S * 100):  # polled; bounded
        if target.seen >= answered:
            break
        await asyncio.sleep(0.01)
    await target.stop()


@pytest.mark.parametrize("kind", ["rest", "rest-aiohttp", "grpc"])
async def test_a_target_killed_mid_run_leaves_a_result_with_classified_failures(
    tmp_path: Path, kind: str
) -> None:
    kind, _, client = kind.partition("-")
    target: FaultyRestTarget | FaultyGrpcTarget
    if kind == "rest":
        target = await FaultyRestTarget(lambda _: OK).start()
        where = target.url
    else:
        target = await FaultyGrpcTarget(lambda _: OK).start()
        where = target.address
    requests = 5_000  # far more than are answered before the kill, whatever the client
    killer = asyncio.ensure_future(_stop_after(target, 20))
    try:
        settings = _settings(kind, where, requests=requests, client=client or "auto")
        result = await _run(settings, tmp_path / "r.json")
    finally:
        await killer
    summary, errors = result["summary"], result["errors"]
    assert isinstance(summary, dict)
    assert isinstance(errors, dict)
    assert summary["requests"] == requests
    assert summary["successes"] >= 20
    assert summary["failures"] == sum(errors.values()) > 0
    # After the kill nothing listens (connect / UNAVAILABLE); the calls it cut are reset,
    # disconnected or cancelled — every one has a class, none is "unknown".
    gone, cut = {"rest": ("connect", {"disconnected", "reset"}),
                 "grpc": ("unavailable", {"cancelled"})}[kind]  # fmt: skip
    assert errors.get(gone, 0) > 0, errors
    assert set(errors) <= {gone, *cut}, errors


@pytest.mark.parametrize(
    ("script", "error", "faults"),
    [
        pytest.param(
            burst(Status(grpc.StatusCode.UNAVAILABLE), 5, 15),
            "unavailable",
            10,
            id="unavailable-burst",
        ),
        pytest.param(burst(Status(grpc.StatusCode.INTERNAL), 1, 3), "internal", 2, id="internal"),
        pytest.param(burst(HANG, 5, 8), "timeout", 3, id="hang"),
    ],
)
async def test_grpc_faults_are_classified_and_the_run_goes_on(
    tmp_path: Path, script: Script, error: str, faults: int
) -> None:
    target = await FaultyGrpcTarget(script).start()
    try:
        result = await _run(_settings("grpc", target.address, timeout_s=0.3), tmp_path / "r.json")
    finally:
        await target.stop()
    summary = result["summary"]
    assert isinstance(summary, dict)
    assert result["errors"] == {error: faults}
    assert summary["successes"] == REQUESTS - faults
