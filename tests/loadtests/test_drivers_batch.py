"""The batch driver against the real batch target: one request is one batch of ``batch_size``
rows written to a JSONL file and scored by ``score_file`` in a worker thread. Real files and
threads, so real time: counts are checked exactly, timings only for consistency with the
recorder. Expected counts are computed here from a fresh payload generator."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadtests.drivers.batch import (
    BatchDriver,
    ScoredBatch,
    batch_input,
    check_output,
    judge_batch,
)
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from targets.errors import SpecError
from targets.models import ReferenceModel
from targets.schema import METADATA_KEYS

BATCHES = 20
BATCH_SIZE = 64
CONCURRENCY = 4
SEED = 5
BOUND_S = 120.0  # bounds every run and every wait on a thread should something hang
PLAN = LoadPlan(mode="closed", concurrency=CONCURRENCY, duration_s=None, requests=BATCHES)


async def run(driver: BatchDriver, spec: PayloadSpec) -> Recorder:
    async with asyncio.timeout(BOUND_S):
        recorder = await Harness(driver, PayloadGenerator(spec, seed=SEED), PLAN).run()
    assert recorder.requests == BATCHES
    return recorder


def first_payload(spec: PayloadSpec) -> Payload:
    return PayloadGenerator(spec, seed=SEED).payload(0)


def invalid_among_first(spec: PayloadSpec, count: int) -> int:
    generator = PayloadGenerator(spec, seed=SEED)
    return sum(not generator.payload(index).valid for index in range(count))


def ms(recorder_ns: int) -> float:
    return recorder_ns / 1e6


async def test_every_batch_scores_batch_size_rows_through_the_batch_target(
    tmp_path: Path,
) -> None:
    driver = BatchDriver("reference", batch_size=BATCH_SIZE, workdir=tmp_path)
    recorder = await run(driver, PayloadSpec())

    assert recorder.failures == 0
    assert recorder.errors == {}
    assert recorder.successes == BATCHES
    assert recorder.schema_ok == recorder.schema_checked == BATCHES
    assert recorder.predictions == BATCHES * BATCH_SIZE
    assert driver.bytes_sent > 0
    assert driver.bytes_received > driver.bytes_sent  # responses are longer than requests
    assert list(tmp_path.iterdir()) == []  # the temp directory went with close()

    extra = driver.extra()
    assert extra["batches"] == BATCHES
    assert extra["failed_batches"] == 0
    assert extra["rows"] == extra["valid_rows"] == recorder.predictions
    assert extra["bad_rows"] == 0
    assert extra["model_calls"] == BATCHES  # one model call per batch
    assert extra["rows_per_s"] == pytest.approx(extra["rows"] / extra["busy_s"])
    # The driver's figures are taken inside the sends the harness times, on the same clock.
    assert recorder.first_sent_ns is not None
    assert recorder.last_ended_ns is not None
    harness_span_s = (recorder.last_ended_ns - recorder.first_sent_ns) / 1e9
    assert 0 < extra["busy_s"] <= extra["makespan_s"] <= harness_span_s
    sends, jobs, calls = extra["batch_latency_ms"], extra["score_file_ms"], extra["model_call_ms"]
    # 20 samples: HDR's and inverted_cdf's p50/p99 pick the same rank, and HDR reports the top
    # of the sample's bucket, so a sample timed inside the harness's cannot come out above it.
    assert 0 < sends["p50"] <= ms(recorder.service.percentile_ns(50))
    assert 0 < sends["p99"] <= ms(recorder.service.percentile_ns(99))
    for fraction in ("p50", "p99"):  # each figure times a part of the one before (±1 µs)
        assert 0 < calls[fraction] <= jobs[fraction] + 1e-3
        assert jobs[fraction] <= sends[fraction] + 1e-3


async def test_invalid_payloads_land_in_the_errors_file_as_expected_rejections(
    tmp_path: Path,
) -> None:
    spec = PayloadSpec(invalid_fraction=0.2)
    invalid = invalid_among_first(spec, BATCHES)
    driver = BatchDriver("reference", batch_size=BATCH_SIZE, workdir=tmp_path)
    recorder = await run(driver, spec)

    assert invalid > 0
    assert recorder.expected_rejections == invalid
    assert recorder.failures == 0
    assert recorder.successes == BATCHES - invalid
    assert recorder.schema_ok == recorder.schema_checked == BATCHES - invalid
    assert recorder.predictions == (BATCHES - invalid) * BATCH_SIZE
    extra = driver.extra()
    assert extra["batches"] == BATCHES
    assert extra["rows"] == BATCHES * BATCH_SIZE
    assert extra["valid_rows"] == recorder.predictions
    assert extra["bad_rows"] == invalid * BATCH_SIZE
    assert extra["model_calls"] == BATCHES - invalid  # a batch of bad rows never reaches it
    assert list(tmp_path.iterdir()) == []


def test_a_batch_cycles_the_payload_rows_or_repeats_an_invalid_body() -> None:
    v2 = first_payload(PayloadSpec(rows_per_request=3, v2_share_start=1.0))
    assert len(v2.rows) == 3
    lines = [json.loads(line) for line in batch_input(v2, 7).splitlines()]
    assert lines == [{"instances": v2.rows[index % 3]} for index in range(7)]

    bad = first_payload(PayloadSpec(invalid_fraction=1.0))
    assert not bad.valid
    assert [json.loads(line) for line in batch_input(bad, 5).splitlines()] == [bad.body] * 5


async def test_a_multi_row_payload_makes_one_full_batch(tmp_path: Path) -> None:
    driver = BatchDriver("reference", batch_size=10, workdir=tmp_path)
    await driver.open()
    try:
        payload = first_payload(PayloadSpec(rows_per_request=3, v2_share_start=1.0))
        assert await driver.send(payload) == (Outcome.OK, None, 10, True)
    finally:
        await driver.close()
    assert driver.extra()["valid_rows"] == 10


def scored(output_lines: int, schema_bad: int, error_lines: int) -> ScoredBatch:
    return ScoredBatch(output_lines, schema_bad, error_lines, 0, 0, 0.0, ())


@pytest.mark.parametrize(
    ("valid", "batch", "reply"),
    [
        (True, scored(8, 0, 0), (Outcome.OK, None, 8, True)),
        (True, scored(7, 0, 1), (Outcome.FAILURE, "rejected", 0, False)),
        (True, scored(8, 1, 0), (Outcome.FAILURE, "schema", 0, False)),
        (True, scored(7, 0, 0), (Outcome.FAILURE, "schema", 0, False)),
        (False, scored(0, 0, 8), (Outcome.EXPECTED_REJECTION, None, 0, True)),
        (False, scored(1, 0, 7), (Outcome.FAILURE, "accepted_invalid", 0, False)),
    ],
)
def test_a_batch_is_judged_from_its_output_and_errors_files(
    valid: bool, batch: ScoredBatch, reply: tuple[int, str | None, int, bool]
) -> None:
    payload = first_payload(PayloadSpec(invalid_fraction=0.0 if valid else 1.0))
    assert judge_batch(payload, 8, batch) == reply


def test_output_lines_are_checked_against_the_canonical_contract() -> None:
    good = {"predictions": [0.5], "metadata": dict.fromkeys(METADATA_KEYS, "x")}
    lines = [
        json.dumps(good),
        "",
        "not json",
        json.dumps({"predictions": [0.5]}),  # no metadata
        json.dumps({**good, "predictions": [0.5, 0.6]}),  # two predictions for one row
    ]
    assert check_output("\n".join(lines).encode()) == (4, 3)


class FailingModel(ReferenceModel):
    name = "failing"

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        raise RuntimeError("model down")


async def test_a_model_that_raises_is_a_model_error_failure(tmp_path: Path) -> None:
    driver = BatchDriver(FailingModel(), batch_size=BATCH_SIZE, workdir=tmp_path)
    await driver.open()
    try:
        reply = await driver.send(first_payload(PayloadSpec()))
    finally:
        await driver.close()
    assert reply == (Outcome.FAILURE, "model_error", 0, False)
    extra = driver.extra()
    assert (extra["batches"], extra["failed_batches"], extra["rows"]) == (1, 1, 0)
    assert list(tmp_path.iterdir()) == []


async def test_a_job_that_cannot_write_its_files_is_a_failure_not_a_raise(
    tmp_path: Path,
) -> None:
    driver = BatchDriver("reference", batch_size=4, workdir=tmp_path)
    await driver.open()
    assert driver.directory is not None
    driver.directory.rmdir()  # the temp directory vanished under the job
    try:
        reply = await driver.send(first_payload(PayloadSpec()))
    finally:
        await driver.close()
    assert reply == (Outcome.FAILURE, "batch_FileNotFoundError", 0, False)
    assert driver.extra()["failed_batches"] == 1


def test_figures_before_any_batch_are_zero() -> None:
    extra = BatchDriver("reference", batch_size=4).extra()
    assert (extra["batches"], extra["rows"], extra["busy_s"], extra["makespan_s"]) == (0, 0, 0, 0)
    assert extra["rows_per_s"] == 0.0
    assert extra["batch_latency_ms"] == {"p50": None, "p99": None}


class GatedModel(ReferenceModel):
    """Holds every call until the test opens the gate; says when one is waiting, and whether
    ``watched`` still existed when it went on."""

    name = "gated"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.finished = threading.Event()
        self.watched: Path | None = None
        self.watched_existed: bool | None = None

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.entered.set()
        if not self.gate.wait(BOUND_S):
            raise TimeoutError("the test never opened the gate")
        self.watched_existed = self.watched is not None and self.watched.exists()
        self.finished.set()
        return super().predict(rows)


async def test_close_waits_for_an_abandoned_batch_before_removing_its_directory(
    tmp_path: Path,
) -> None:
    model = GatedModel()
    driver = BatchDriver(model, batch_size=BATCH_SIZE, workdir=tmp_path)
    await driver.open()
    model.watched = driver.directory
    send = asyncio.ensure_future(driver.send(first_payload(PayloadSpec())))
    assert await asyncio.to_thread(model.entered.wait, BOUND_S)
    send.cancel()  # what the harness does to a request still in flight when its drain ends
    with pytest.raises(asyncio.CancelledError):
        await send
    closing = asyncio.ensure_future(driver.close())
    for _ in range(10):  # let close() start; it must not get past the scoring thread
        await asyncio.sleep(0)
    model.gate.set()
    async with asyncio.timeout(BOUND_S):
        await closing
    assert model.finished.is_set()  # close() returned only after the batch's thread was done
    assert model.watched_existed is True  # ...and the directory outlived it
    assert list(tmp_path.iterdir()) == []


async def test_a_batch_in_flight_at_the_measure_start_stays_warm_up(tmp_path: Path) -> None:
    model = GatedModel()
    driver = BatchDriver(model, batch_size=BATCH_SIZE, workdir=tmp_path)
    payload = first_payload(PayloadSpec())
    await driver.open()
    try:
        warm_up = asyncio.ensure_future(driver.send(payload))
        assert await asyncio.to_thread(model.entered.wait, BOUND_S)
        driver.mark_measure_start()  # the harness files requests by their start, as this does
        model.gate.set()
        async with asyncio.timeout(BOUND_S):
            assert await warm_up == (Outcome.OK, None, BATCH_SIZE, True)
            assert await driver.send(payload) == (Outcome.OK, None, BATCH_SIZE, True)
    finally:
        await driver.close()
    extra = driver.extra()
    assert (extra["batches"], extra["rows"], extra["model_calls"]) == (1, BATCH_SIZE, 1)
    assert extra["busy_s"] <= extra["makespan_s"]
    assert driver.bytes_sent > 0  # bytes, as the recorder's, cover warm-up too


async def test_send_outside_open_and_close_is_a_programming_error(tmp_path: Path) -> None:
    driver = BatchDriver("reference", batch_size=4, workdir=tmp_path)
    payload = first_payload(PayloadSpec())
    with pytest.raises(RuntimeError, match="open"):
        await driver.send(payload)
    await driver.open()
    assert await driver.send(payload) == (Outcome.OK, None, 4, True)
    await driver.close()
    with pytest.raises(RuntimeError, match="open"):
        await driver.send(payload)


@pytest.mark.parametrize(
    ("options", "named"), [({"batch_size": 0}, "batch_size"), ({"threads": 0}, "threads")]
)
def test_bad_options_are_refused_by_name(options: dict[str, int], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        BatchDriver("reference", **options)  # type: ignore[arg-type]


def test_a_bad_model_spec_fails_before_any_load() -> None:
    with pytest.raises(SpecError):
        BatchDriver("synthetic:nonsense")
