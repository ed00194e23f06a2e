"""``--processes``' engine side, on the virtual clock: the parts of one schedule are that
schedule, the coordinated start is every part's origin, and per-second figures merge exactly."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loadtests.drivers.base import FakeDriver
from loadtests.engine.clock import run_virtual
from loadtests.engine.harness import Harness, LoadPlan
from loadtests.engine.histogram import IntArray
from loadtests.engine.parts import WHOLE, SchedulePart, partitioned
from loadtests.engine.recorder import Recorder
from loadtests.engine.schedule import RateProfile, open_loop_offsets_ns
from loadtests.engine.workload import Payload, PayloadGenerator, PayloadSpec
from loadtests.errors import LoadOptionError

START_NS = 3_000_000_000  # the coordinated start: not the virtual clock's zero
SPEC = PayloadSpec(distinct=4096)  # more than any plan here sends: a slot is an index


class Scheduled:
    """The recorder's sink: every measured request's intended start, exactly as recorded."""

    def __init__(self) -> None:
        self.columns: list[IntArray] = []

    def write_columns(self, start_ns: int, names: Any, scheduled: IntArray, *_: Any) -> None:
        self.columns.append(scheduled.copy())

    def all(self) -> list[int]:
        return np.concatenate(self.columns).tolist() if self.columns else []


def _run_part(plan: LoadPlan, part: SchedulePart) -> tuple[list[int], list[int], Harness]:
    """One part on its own virtual loop: (intended starts recorded, payload slots sent)."""
    slots: list[int] = []

    def service_s(payload: Payload) -> float:
        slots.append(payload.slot)
        return 0.002

    harness = Harness(
        FakeDriver(service_s), PayloadGenerator(SPEC, 11), plan, schedule_seed=5, part=part,
        start_gate=_gate,
    )  # fmt: skip
    sink = Scheduled()
    harness.recorder.sink = sink

    async def main() -> None:
        await harness.run()

    run_virtual(main)
    return sink.all(), slots, harness


async def _gate() -> int:
    return START_NS


POISSON = LoadPlan(
    mode="open", profile=RateProfile.steps([(1.0, 400.0), (1.0, 900.0)], ramp=True),
    arrival="poisson", duration_s=None, requests=1_000, warmup_s=0.25,
)  # fmt: skip
TIMED = LoadPlan(
    mode="open", profile=RateProfile.constant(700.0), duration_s=1.5, warmup_s=0.1,
)  # fmt: skip
TRACE = LoadPlan(
    mode="open", trace_offsets_ns=np.cumsum(np.arange(1, 600, dtype=np.int64) * 10_000),
    duration_s=5.0,
)  # fmt: skip


@pytest.mark.parametrize("plan", [POISSON, TIMED, TRACE], ids=["poisson-requests", "rate", "trace"])
@pytest.mark.parametrize("count", [2, 3])
def test_the_parts_of_a_schedule_are_that_schedule_bit_for_bit(plan: LoadPlan, count: int) -> None:
    whole_starts, whole_slots, whole = _run_part(plan, WHOLE)
    starts: list[int] = []
    slots: list[int] = []
    for index in range(count):
        part_starts, part_slots, harness = _run_part(plan, SchedulePart(index, count))
        assert harness.stats.measure_start_ns == whole.stats.measure_start_ns  # one origin
        assert part_slots == whole_slots[index::count]  # round-robin, each at its own index
        starts += part_starts
        slots += part_slots
    assert sorted(starts) == sorted(whole_starts)  # the same intended starts, to the ns
    assert sorted(slots) == sorted(whole_slots)  # the same payloads
    assert len(whole_starts) == whole.recorder.requests > 100
    assert min(whole_starts) >= START_NS + int(plan.warmup_s * 1e9)  # warm-up not recorded
    if plan.requests is not None:  # a count bound ends every part at the same place
        assert len(starts) == plan.requests


def test_a_count_bound_ends_at_the_requests_th_measured_request_of_the_whole_schedule() -> None:
    chunks = list(open_loop_offsets_ns(RateProfile.constant(100.0), "constant", 1, limit_s=9.0))
    offsets = np.concatenate(chunks)
    measure_from_ns = 505_000_000  # the first measured offset is then 0.51 s: index 51
    parts = [
        list(partitioned(chunks, SchedulePart(k, 3), measure_from_ns=measure_from_ns, requests=7))
        for k in range(3)
    ]
    indices = sorted(int(i) for part in parts for chunk, _ in part for i in chunk)
    assert indices == list(range(58))  # warm-up 0..50, then exactly 7 measured: 51..57
    for part in parts:
        for chunk_indices, chunk_offsets in part:
            assert chunk_offsets.tolist() == offsets[chunk_indices].tolist()


def test_shares_of_a_whole_add_up_and_differ_by_at_most_one() -> None:
    for total in (5, 8, 1001):
        shares = [SchedulePart(k, 3).share(total) for k in range(3)]
        assert sum(shares) == total
        assert max(shares) - min(shares) <= 1
    with pytest.raises(LoadOptionError, match="0 <= index < count"):
        SchedulePart(3, 3)


def _recorded(latencies_ns: IntArray, ends_ns: IntArray) -> Recorder:
    recorder = Recorder(keep_seconds=True)
    flags = np.zeros(ends_ns.size, dtype=np.int64)
    recorder.record_arrays(ends_ns - latencies_ns, ends_ns - latencies_ns, ends_ns, flags, flags)
    recorder.finish()
    return recorder


def test_per_second_percentiles_of_merged_processes_are_those_of_all_their_requests() -> None:
    rng = np.random.default_rng(3)
    ends = np.sort(rng.integers(0, 4_000_000_000, 30_000)).astype(np.int64)
    latencies = rng.lognormal(13, 1.0, ends.size).astype(np.int64) + 1
    mine = rng.random(ends.size) < 0.3  # an uneven split: percentiles of parts differ
    everything = _recorded(latencies, ends)
    merged = Recorder(keep_seconds=True)
    for side in (mine, ~mine):
        merged.merge(_recorded(latencies[side], ends[side]))
    assert merged.timeseries == everything.timeseries  # p50/p99 of each second, exactly
    assert merged.latency.encode() == everything.latency.encode()
    plain = Recorder()  # without the buckets (Locust's workers): the worse of the two is kept
    for side in (mine, ~mine):
        plain.merge(_recorded(latencies[side], ends[side]))
    assert [row["requests"] for row in plain.timeseries] == [
        row["requests"] for row in everything.timeseries
    ]
