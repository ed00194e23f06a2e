"""pytest-benchmark microbenchmarks (opt-in, not part of the default test run).

    .venv/bin/pytest benchmarks/micro --benchmark-autosave
    .venv/bin/pytest benchmarks/micro --benchmark-compare --benchmark-compare-fail=mean:10%

The canonical schema validation, each in-process adapter's per-call cost, the recorder's
per-sample cost and the histogram merge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
import pytest

from loadtests.drivers.inprocess import AsgiDriver, InProcessDriver
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from targets.rest.app import create_app
from targets.schema import validate_request
from targets.service import PredictionService
from targets.spec import load_model

BODY = {"instances": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]}
PAYLOAD = PayloadGenerator(PayloadSpec(), 1).payload(0)


def test_schema_validation_v1(benchmark: Any) -> None:
    benchmark(validate_request, BODY, "v1")


def test_schema_validation_v2_rows(benchmark: Any) -> None:
    body = {"rows": [BODY["instances"]] * 16, "request_id": "r", "options": {"precision": 3}}
    benchmark(validate_request, body, "v2")


CALLS = 100  # async adapters: one benchmark round = 100 sends (divide the mean by 100)


def _async_bench(benchmark: Any, call: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    async def hundred() -> None:
        for _ in range(CALLS):
            await call()

    loop = asyncio.new_event_loop()
    try:
        benchmark(lambda: loop.run_until_complete(hundred()))
    finally:
        loop.close()


def test_inprocess_driver_send(benchmark: Any) -> None:
    driver = InProcessDriver(load_model("reference"))
    _async_bench(benchmark, lambda: driver.send(PAYLOAD))


def test_asgi_driver_send(benchmark: Any) -> None:
    service = PredictionService(load_model("reference"), transport="rest")
    driver = AsgiDriver(create_app(service))
    _async_bench(benchmark, lambda: driver.send(PAYLOAD))


def test_grpc_inprocess_driver_send(benchmark: Any) -> None:
    from loadtests.drivers.grpc import GrpcInProcessDriver
    from targets.batching import MicroBatcher
    from targets.logs import JsonLogger
    from targets.rpc.server import PredictorServicer

    service = PredictionService(load_model("reference"), transport="grpc")
    servicer = PredictorServicer(
        service, MicroBatcher(service), JsonLogger(level="off"), pending_limit=16
    )
    driver = GrpcInProcessDriver(servicer)
    _async_bench(benchmark, lambda: driver.send(PAYLOAD))


@pytest.mark.parametrize("samples", [1_000])
def test_recorder_record_per_sample(benchmark: Any, samples: int) -> None:
    """Per call: ``samples`` records (divide the mean by it for the per-sample cost)."""

    def record_many() -> None:
        recorder = Recorder(fold_every=1 << 20)
        record = recorder.record
        for index in range(samples):
            record(index, index, index + 1000)

    benchmark(record_many)


def test_fold_of_65536_samples(benchmark: Any) -> None:
    ended = np.cumsum(np.full(65_536, 250, dtype=np.int64))
    zeros = np.zeros_like(ended)

    def fold() -> None:
        Recorder(start_ns=0).record_arrays(ended - 200, ended - 200, ended, zeros, zeros + 1)

    benchmark(fold)


def test_histogram_merge(benchmark: Any) -> None:
    values = np.random.default_rng(1).lognormal(15, 1, 100_000).astype(np.int64)
    source = LatencyHistogram()
    source.record_many(values)
    encoded = source.encode()

    def merge() -> None:
        LatencyHistogram.decode(encoded).merge(source)

    benchmark(merge)
