"""The tight in-process loop records every call, exactly, in constant memory."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from loadtests.recorder import Recorder
from loadtests.tight import run_tight


def test_every_call_is_recorded_with_its_own_duration() -> None:
    ticks = itertools.count(0, 1_000)  # each clock read advances 1 µs: every call "takes" 1 µs
    calls: list[Sequence[float]] = []
    recorder = Recorder()
    rows = [[1.0], [2.0], [3.0]]
    run_tight(calls.append, rows, 10_000, recorder, chunk=4096, clock=lambda: next(ticks))  # type: ignore[arg-type]
    assert recorder.requests == recorder.successes == recorder.predictions == 10_000
    assert calls[:4] == [[1.0], [2.0], [3.0], [1.0]]
    assert recorder.service.percentile_ns(0.1) == recorder.service.percentile_ns(100) == 1_000
    assert recorder.lateness.total == 10_000
    assert recorder.lateness.percentile_ns(100) == 0
    assert sum(row["requests"] for row in recorder.timeseries) == 10_000


def test_per_second_series_closes_as_time_passes() -> None:
    ticks = itertools.count(0, 1_000_000)  # 1 ms per call: 1,000 calls per second
    recorder = Recorder()
    run_tight(lambda row: 0.0, [[1.0]], 5_000, recorder, chunk=700, clock=lambda: next(ticks))
    assert [row["requests"] for row in recorder.timeseries] == [999, 1000, 1000, 1000, 1000, 1]
    assert all(row["p50_ms"] == pytest.approx(1.0, rel=1e-3) for row in recorder.timeseries)


@pytest.mark.parametrize(("requests", "rows"), [(0, [[1.0]]), (5, [])])
def test_bad_arguments_are_refused(requests: int, rows: list[list[float]]) -> None:
    with pytest.raises(ValueError, match="must"):
        run_tight(lambda row: 0.0, rows, requests, Recorder())
