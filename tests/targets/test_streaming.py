"""The streaming consumer: in-order micro-batched output, bad events, backpressure."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import pytest

import targets.streaming
from targets.batching import BatchingConfig
from targets.models import ReferenceModel, reference_prediction
from targets.schema import response_problem
from targets.streaming import END_OF_STREAM, QueueSource, StreamConsumer

STEP_LIMIT = 10_000  # loop turns a polled condition may take before the test gives up


async def until(condition: Any, what: str) -> None:
    """Yield to the loop until ``condition()`` holds; bounded by loop turns, not wall time."""
    for _ in range(STEP_LIMIT):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail(f"never happened: {what}")


def queue_of(*events: object) -> asyncio.Queue[object]:
    queue: asyncio.Queue[object] = asyncio.Queue()
    for event in (*events, END_OF_STREAM):
        queue.put_nowait(event)
    return queue


class ListSink:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> None:
        self.lines.append(body)


class GateModel(ReferenceModel):
    """Holds every call until the test opens the gate; counts calls and rows."""

    name = "gate"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.calls: list[int] = []

    async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls.append(len(rows))
        await self.gate.wait()
        return self.predict(rows)


async def test_events_come_out_in_order_and_micro_batched() -> None:
    rows = [[float(i), float(i % 7)] for i in range(40)]
    source = QueueSource(queue_of(*(json.dumps({"instances": row}).encode() for row in rows)))
    sink = ListSink()
    consumer = StreamConsumer(
        ReferenceModel(), config=BatchingConfig(max_batch_rows=8, window_s=0.05)
    )

    report = await consumer.run(source, sink)

    assert [line["metadata"]["event"] for line in sink.lines] == list(range(1, 41))
    assert [line["predictions"] for line in sink.lines] == [[reference_prediction(r)] for r in rows]
    for line in sink.lines:
        assert response_problem(line, expected_predictions=1) is None
        assert line["metadata"]["transport"] == "stream"
        assert line["metadata"]["latency_ms"] >= 0
    assert 5 <= report.batches < report.events == 40
    assert report.mean_batch_rows > 1
    assert report.batched_rows == 40
    assert report.bad == 0
    assert report.latency_max_ms >= report.latency_p99_ms >= report.latency_p50_ms >= 0


async def test_latency_runs_from_read_to_emit_on_the_injected_clock() -> None:
    now = [100.0]

    class SlowOnTheVirtualClock(ReferenceModel):
        async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
            now[0] += 0.005  # every call takes 5 ms of virtual time
            return self.predict(rows)

    sink = ListSink()
    consumer = StreamConsumer(
        SlowOnTheVirtualClock(),
        config=BatchingConfig(max_batch_rows=10, window_s=0),
        clock=lambda: now[0],
    )

    report = await consumer.run(
        QueueSource(queue_of(*({"instances": [i]} for i in range(10)))), sink
    )

    # All ten are read at t=100 before the loop turns, then batched into one 5 ms call.
    assert [line["metadata"]["latency_ms"] for line in sink.lines] == [5.0] * 10
    assert report.batches == 1
    assert (report.latency_p50_ms, report.latency_p99_ms) == pytest.approx((5.0, 5.0))


async def test_bad_events_are_flagged_in_place_and_the_stream_goes_on() -> None:
    events: list[object] = [
        b'{"instances": [1, 2]}',
        b"{broken",
        b'{"rows": [[1], [2, 4]], "request_id": "r-2"}',  # v2: two rows, one event
        {"instances": [1, "two"]},
        b"[1, 2]",
        b'{"rows": []}',
        '{"instances": [5]}',  # str is JSON text too
        b'{"instances": [1], "options": {"precision": 99}}',  # v1 ignores v2-only fields
        b"\xff\xfe",
        b"[" * 100_000,  # too deep for the decoder: malformed, not a crash
    ]
    sink = ListSink()
    async with StreamConsumer(ReferenceModel(), config=BatchingConfig(window_s=0.01)) as consumer:
        report = await consumer.run(QueueSource(queue_of(*events)), sink)

    assert [
        line.get("event", line.get("metadata", {}).get("event")) for line in sink.lines
    ] == list(range(1, 11))
    outcome = [
        line["error"]["code"] if "error" in line else line["predictions"] for line in sink.lines
    ]
    assert outcome == [
        [1.3],
        "malformed_request",
        [0.9, 2.5],
        "invalid_request",
        "invalid_request",
        "invalid_request",
        [4.1],
        [0.9],
        "malformed_request",
        "malformed_request",
    ]
    assert sink.lines[2]["metadata"]["api"] == "v2"
    assert sink.lines[2]["metadata"]["request_id"] == "r-2"
    assert sink.lines[3]["error"]["field"] == "instances[1]"
    assert sink.lines[1]["error"]["field"] is None
    assert (report.events, report.bad, report.failed, report.batched_rows) == (10, 6, 0, 5)


async def test_a_failing_batch_is_flagged_and_later_events_still_answered() -> None:
    class FailsOnNegatives(ReferenceModel):
        async def predict_async(self, rows: Sequence[Sequence[float]]) -> list[float]:
            if any(value < 0 for row in rows for value in row):
                raise ArithmeticError("negative feature")
            return self.predict(rows)

    sink = ListSink()
    source = QueueSource(queue_of({"instances": [-1]}, {"instances": [2]}))
    consumer = StreamConsumer(FailsOnNegatives(), config=BatchingConfig(max_batch_rows=1))

    report = await consumer.run(source, sink)

    assert sink.lines[0]["event"] == 1
    assert sink.lines[0]["error"]["code"] == "model_error"
    assert "ArithmeticError" in sink.lines[0]["error"]["message"]
    assert sink.lines[1]["predictions"] == [1.7]
    assert (report.failed, report.bad) == (1, 0)


async def test_a_slow_model_stops_the_reader_while_the_queue_is_full() -> None:
    model = GateModel()
    source_queue = queue_of(*({"instances": [i]} for i in range(30)))
    sink = ListSink()
    consumer = StreamConsumer(
        model, config=BatchingConfig(max_batch_rows=1, window_s=0, queue_size=2)
    )
    queued_seen: list[int] = []

    async def watch() -> None:
        while True:
            queued_seen.append(consumer.batcher.queued)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    running = asyncio.create_task(consumer.run(QueueSource(source_queue), sink))
    await until(lambda: model.calls == [1] and consumer.batcher.queued == 2, "queue full")
    taken = consumer.events
    for _ in range(200):  # plenty of loop turns: a reader that could read would have
        await asyncio.sleep(0)

    # Blocked: one event in the model, two in the full batcher queue, one in the reader's hand
    # waiting in submit(); everything else stays unread at the source.
    assert consumer.events == taken <= 1 + 2 + 1
    assert source_queue.qsize() == 31 - taken
    assert sink.lines == []

    model.gate.set()
    report = await asyncio.wait_for(running, timeout=10)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert [line["metadata"]["event"] for line in sink.lines] == list(range(1, 31))
    assert report.batches == 30
    assert max(queued_seen) == 2


async def test_submit_waits_while_the_batcher_queue_is_full() -> None:
    model = GateModel()
    config = BatchingConfig(max_batch_rows=1, window_s=0, queue_size=2)
    async with StreamConsumer(model, config=config) as consumer:
        tasks = [asyncio.create_task(consumer.submit({"instances": [i]})) for i in range(6)]
        await until(lambda: model.calls == [1] and consumer.batcher.queued == 2, "queue full")
        for _ in range(100):
            await asyncio.sleep(0)
        # One in the model, two queued, three callers still waiting inside submit().
        assert consumer.batcher.queued == 2
        assert not any(task.done() for task in tasks)

        model.gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)

    assert sorted(answer["metadata"]["event"] for answer in answers) == list(range(1, 7))
    assert [answer["predictions"] for answer in answers] == [
        [reference_prediction([i])] for i in range(6)
    ]
    assert all(answer["metadata"]["latency_ms"] >= 0 for answer in answers)
    assert model.calls == [1] * 6


def test_package_exports_a_sorted_public_api() -> None:
    assert targets.streaming.__all__ == sorted(targets.streaming.__all__)
    assert all(hasattr(targets.streaming, name) for name in targets.streaming.__all__)
