"""Four instants per request — intended, dispatched, on wire, ended — and the four histograms
made from them: exact on the virtual clock, and ordered correctly against a real server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loadtests.drivers.base import Driver, FakeDriver
from loadtests.drivers.http1 import Http1Driver
from loadtests.drivers.rest import RestDriver
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.histogram import IntArray
from loadtests.engine.records import WIRE_UNSEEN, Outcome, RequestRecord
from loadtests.engine.schedule import RateProfile
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from loadtests.results.events import EventLog, read_events, recompute_result
from loadtests.results.result import RunInfo, build_result
from loadtests.results.verdict import judge_run

MS = 1_000_000


def _virtual(driver: Driver, plan: LoadPlan, sink: Any = None) -> Harness:
    harness = Harness(driver, PayloadGenerator(PayloadSpec(), 1), plan, schedule_seed=3)
    if sink is not None:
        harness.recorder.sink = sink

    async def main() -> None:
        await harness.run()

    run_virtual(main)
    return harness


class Columns:
    """A recorder sink that keeps every folded column, to check requests one by one."""

    def __init__(self) -> None:
        self.parts: dict[str, list[IntArray]] = {"scheduled": [], "dispatched": [], "ended": []}
        self.parts["wire"] = []

    def write_columns(
        self,
        start_ns: int,
        error_names: Sequence[str],
        scheduled: IntArray,
        dispatched: IntArray,
        ended: IntArray,
        flags: IntArray,
        predictions: IntArray,
        wire: IntArray,
    ) -> None:
        for name, column in (
            ("scheduled", scheduled), ("dispatched", dispatched), ("ended", ended), ("wire", wire)
        ):  # fmt: skip
            self.parts[name].append(column.copy())

    def column(self, name: str) -> IntArray:
        return np.concatenate(self.parts[name])


def test_wait_for_a_connection_is_client_queue_and_service_starts_at_the_wire() -> None:
    # 4 workers share one 10 ms connection: each waits for the three ahead of it.
    driver = FakeDriver(lambda _: 0.010, connections=1)
    plan = LoadPlan(mode="closed", concurrency=4, duration_s=None, requests=400)
    recorder = _virtual(driver, plan).recorder
    service = recorder.service.summary_ms()
    assert service["min"] == pytest.approx(10.0, rel=1e-3)
    assert service["max"] == pytest.approx(10.0, rel=1e-3)
    queue = recorder.client_queue.summary_ms()
    assert recorder.client_queue.total == recorder.requests
    assert queue["p50"] == pytest.approx(30.0, rel=1e-3)  # three services ahead
    assert recorder.latency.summary_ms()["p50"] == pytest.approx(40.0, rel=1e-3)
    assert recorder.lateness.summary_ms()["max"] == 0.0  # a closed loop is never late


def test_open_loop_splits_queueing_into_client_queue_and_lateness_stays_the_generators() -> None:
    # 150/s offered to a 100/s single connection: the queue builds in the client.
    driver = FakeDriver(lambda _: 0.010, connections=1)
    plan = LoadPlan(mode="open", profile=RateProfile.constant(150.0), duration_s=2.0)
    harness = _virtual(driver, plan, sink=(columns := Columns()))
    recorder = harness.recorder
    intended, dispatched = columns.column("scheduled"), columns.column("dispatched")
    wire, ended = columns.column("wire"), columns.column("ended")
    assert (dispatched - intended <= 1_000).all()  # virtual time: every send on schedule (±float)
    tick = 1_000  # float seconds on the virtual clock round to within a few ns
    assert (np.diff(np.sort(wire)) >= 10 * MS - tick).all()  # one request on the wire at a time
    assert (np.abs(ended - wire - 10 * MS) <= tick).all()
    assert recorder.client_queue.summary_ms()["max"] > 300  # the backlog, not the server
    assert recorder.service.summary_ms()["p99"] == pytest.approx(10.0, rel=1e-3)
    verdict = judge_run(recorder, harness.stats, mode="open", in_process=True)
    assert verdict.valid
    assert any(note.startswith("target saturated: served 100.") for note in verdict.notes)
    assert any("client queue p99" in note for note in verdict.notes)


def test_a_target_with_headroom_has_no_notes() -> None:
    driver = FakeDriver(lambda _: 0.010, connections=4)
    plan = LoadPlan(mode="open", profile=RateProfile.constant(150.0), duration_s=2.0)
    harness = _virtual(driver, plan)
    verdict = judge_run(harness.recorder, harness.stats, mode="open", in_process=True)
    assert verdict.valid
    assert verdict.notes == ()
    assert harness.recorder.client_queue.summary_ms()["max"] == 0.0


def test_a_driver_with_nothing_to_wait_for_has_zero_client_queue() -> None:
    recorder = _virtual(
        FakeDriver(lambda _: 0.002), LoadPlan(requests=50, duration_s=None)
    ).recorder
    assert recorder.client_queue.total == 50
    assert recorder.client_queue.summary_ms()["max"] == 0.0


def test_a_hidden_wire_leaves_client_queue_absent_not_zero(tmp_path: Path) -> None:
    driver = FakeDriver(lambda _: 0.002)
    driver.wire = "hidden"
    harness = _virtual(driver, LoadPlan(requests=50, duration_s=None))
    recorder = harness.recorder
    assert recorder.client_queue.total == 0
    assert recorder.service.summary_ms()["p50"] == pytest.approx(2.0, rel=1e-3)
    run = RunInfo(target="fake", transport="fake", mode="closed", model="m", seed=1)
    result = build_result(
        run, recorder, window_s=1.0, verdict=judge_run(recorder, harness.stats, mode="closed",
                                                       in_process=True), environment={},
    )  # fmt: skip
    assert result["summary"]["client_queue_ms"] is None
    assert result["histograms"]["client_queue"] is None


def test_record_type_derives_the_four_histograms_from_its_instants() -> None:
    record = RequestRecord(100, 150, 1_000, wire_ns=400)
    assert (record.latency_ns, record.service_ns) == (900, 600)
    assert (record.client_queue_ns, record.send_lateness_ns) == (250, 50)
    unseen = RequestRecord(100, 150, 1_000)
    assert (unseen.service_ns, unseen.client_queue_ns) == (850, None)
    with pytest.raises(ValueError, match="wire_ns"):
        RequestRecord(100, 150, 1_000, wire_ns=120)


def test_event_log_carries_the_wire_and_recompute_gives_the_same_histograms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    log = EventLog(path, run={"target": "fake", "transport": "fake", "mode": "closed",
                              "model": "m", "seed": 1})  # fmt: skip
    driver = FakeDriver(lambda _: 0.004, connections=2)
    harness = _virtual(driver, LoadPlan(concurrency=5, requests=300, duration_s=None), sink=log)
    log.finish(harness.recorder.start_ns, harness.stats)
    log.close()
    contents = read_events(path)
    assert contents.lines == 300
    recomputed = dict[str, Any](recompute_result(path))
    assert recomputed["histograms"]["client_queue"] == harness.recorder.client_queue.encode()
    assert recomputed["histograms"]["service_latency"] == harness.recorder.service.encode()
    assert recomputed["summary"]["client_queue_ms"]["p50"] > 0


def test_version_1_event_logs_still_recompute_with_the_wire_unseen(tmp_path: Path) -> None:
    path = tmp_path / "v1.jsonl"
    path.write_text(
        '{"kind": "servelab-events", "schema_version": 1, "start_ns": 0, "run": {"target": "rest", '
        '"transport": "rest", "mode": "closed", "model": "m", "seed": 1}}\n'
        '{"scheduled_ns": 0, "sent_ns": 10, "ended_ns": 5000010, "outcome": "ok", '
        '"error": null, "predictions": 1, "schema_ok": true}\n'
        '{"end": true, "measure_end_ns": 1000000000, "interrupted": false, "abandoned": 0}\n'
    )
    result = recompute_result(path)
    assert result["summary"]["requests"] == 1
    assert result["summary"]["client_queue_ms"] is None
    assert result["summary"]["service_latency_ms"]["p50"] == pytest.approx(5.0, rel=1e-3)


@pytest.mark.parametrize("client", [Http1Driver, RestDriver], ids=["fast", "aiohttp"])
async def test_one_connection_serialises_the_wire_against_a_real_server(
    spawn_target: Any, client: type[Http1Driver] | type[RestDriver]
) -> None:
    """Four workers, one connection, a model that never answers in under 5 ms: every request
    reaches the wire at least 5 ms after the one before it, its service time is at least 5 ms,
    and the rest of its wait is client queue. Bounds that a slow machine only makes looser."""
    target = spawn_target("rest", "--model", "synthetic:fixed:5ms", "--log-level", "off")
    driver = client(target.url, connections=1)
    plan = LoadPlan(mode="closed", concurrency=4, duration_s=None, requests=40)
    harness = Harness(driver, PayloadGenerator(PayloadSpec(), 1), plan)
    harness.recorder.sink = columns = Columns()
    recorder = await harness.run()
    assert recorder.successes == 40
    wire, dispatched, ended = (columns.column(n) for n in ("wire", "dispatched", "ended"))
    assert (wire != WIRE_UNSEEN).all()
    assert ((dispatched <= wire) & (wire <= ended)).all()
    assert (ended - wire >= 5 * MS).all()
    order = np.argsort(wire)
    assert (np.diff(wire[order]) >= 5 * MS).all()
    assert recorder.client_queue.total == 40
    assert recorder.client_queue.percentile_ns(50) > 0
    assert recorder.service.summary_ms()["min"] >= 5.0


def test_every_driver_declares_what_it_can_see_of_the_wire() -> None:
    from loadtests.drivers import batch, edge, grpc, grpc_stream, http1, inprocess, rest, stream

    declared = {
        cls.__name__: cls.wire
        for module in (batch, edge, grpc, grpc_stream, http1, inprocess, rest, stream)
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__module__ == module.__name__ and hasattr(cls, "wire")
    }
    assert declared == {
        "BatchDriver": "stamped", "EdgeDriver": "stamped", "GrpcUnaryDriver": "hidden",
        "GrpcInProcessDriver": "at_dispatch", "GrpcStreamDriver": "stamped",
        "Http1Driver": "stamped", "InProcessDriver": "at_dispatch", "AsgiDriver": "at_dispatch",
        "RestDriver": "stamped", "StreamDriver": "stamped",
    }  # fmt: skip


def test_a_failure_before_the_wire_has_no_wire_instant() -> None:
    async def refused(_: object) -> tuple[int, str | None, int, bool]:
        await asyncio.sleep(0.001)
        return Outcome.FAILURE, "connect", 0, False

    driver = FakeDriver(lambda _: 0.0, connections=1)
    driver.send = refused  # type: ignore[method-assign, assignment]
    recorder = _virtual(driver, LoadPlan(requests=10, duration_s=None)).recorder
    assert recorder.failures == 10
    assert recorder.client_queue.total == 0  # never reached the wire: nothing to say
