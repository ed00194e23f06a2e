"""Seeded payloads and arrival schedules: reproducible bit for bit, and the right shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loadtests.engine.schedule import RateProfile, open_loop_offsets_ns, read_trace
from loadtests.engine.workload import PayloadGenerator, PayloadSpec, derive_seeds
from targets.errors import InvalidRequest
from targets.schema import validate_request


def _offsets(profile: RateProfile, arrival: str, seed: int, limit_s: float) -> np.ndarray:
    return np.concatenate(list(open_loop_offsets_ns(profile, arrival, seed, limit_s=limit_s)))  # type: ignore[arg-type]


def test_one_seed_derives_two_independent_stable_seeds() -> None:
    payload_seed, schedule_seed = derive_seeds(42)
    assert derive_seeds(42) == (payload_seed, schedule_seed)
    assert payload_seed != schedule_seed
    assert derive_seeds(43) != (payload_seed, schedule_seed)


def test_same_seed_same_payloads() -> None:
    spec = PayloadSpec(min_instances=1, max_instances=20, invalid_fraction=0.1, v2_share_start=0.5)
    first, second = PayloadGenerator(spec, 9), PayloadGenerator(spec, 9)
    assert [first.payload(i).body for i in range(500)] == [
        second.payload(i).body for i in range(500)
    ]
    other = PayloadGenerator(spec, 10)
    assert [first.payload(i).body for i in range(50)] != [other.payload(i).body for i in range(50)]


def test_valid_payloads_meet_the_schema_and_invalid_ones_do_not() -> None:
    spec = PayloadSpec(invalid_fraction=0.3, v2_share_start=0.5, rows_per_request=3)
    generator = PayloadGenerator(spec, 1)
    payloads = [generator.payload(i) for i in range(2000)]
    for payload in payloads:
        if payload.valid:
            request = validate_request(payload.body, payload.api)
            assert len(request.rows) == payload.expected_predictions
        else:
            with pytest.raises(InvalidRequest):
                validate_request(payload.body, payload.api)
    invalid_share = sum(not payload.valid for payload in payloads) / len(payloads)
    assert invalid_share == pytest.approx(0.3, abs=0.05)
    assert {p.expected_predictions for p in payloads if p.valid and p.api == "v2"} == {3}


def test_rollout_shifts_from_v1_to_v2() -> None:
    generator = PayloadGenerator(PayloadSpec(v2_share_start=0.0, v2_share_end=1.0), 5)
    early = sum(generator.payload(i, progress=0.05).api == "v2" for i in range(2000))
    late = sum(generator.payload(i, progress=0.95).api == "v2" for i in range(2000))
    assert early / 2000 == pytest.approx(0.05, abs=0.03)
    assert late / 2000 == pytest.approx(0.95, abs=0.03)


def test_constant_rate_is_evenly_spaced() -> None:
    offsets = _offsets(RateProfile.constant(250), "constant", 0, 2.0)
    assert offsets.size == 500
    assert np.all(np.diff(offsets) == 4_000_000)
    assert offsets[0] == 0


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    offsets = _offsets(RateProfile.constant(1000), "poisson", 11, 20.0)
    assert offsets.size == pytest.approx(20_000, rel=0.03)
    gaps = np.diff(offsets) / 1e9
    assert gaps.mean() == pytest.approx(0.001, rel=0.03)
    assert gaps.std() == pytest.approx(0.001, rel=0.05)  # exponential: std == mean
    assert np.array_equal(offsets, _offsets(RateProfile.constant(1000), "poisson", 11, 20.0))


def test_steps_and_ramps_deliver_the_expected_counts() -> None:
    steps = _offsets(RateProfile.steps([(1.0, 100), (1.0, 300)]), "constant", 0, 2.0)
    assert np.sum(steps < 1e9) == 100
    assert np.sum(steps >= 1e9) == 300
    ramp = _offsets(RateProfile.steps([(2.0, 200)], ramp=True), "constant", 0, 2.0)
    assert ramp.size == pytest.approx(200, abs=1)  # ∫ 0→200/s over 2 s
    assert np.sum(ramp < 1e9) == pytest.approx(50, abs=1)  # a quarter in the first half


def test_trace_replay(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("# arrivals\n1700000000.5\n1700000000.25\n\n1700000001.0  # late\n")
    assert read_trace(trace).tolist() == [0, 250_000_000, 750_000_000]


@pytest.mark.parametrize(
    ("content", "words"), [("", "has no timestamps"), ("1\nabc\n", "line 2: 'abc' is not a number")]
)
def test_bad_traces_name_the_line(tmp_path: Path, content: str, words: str) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text(content)
    with pytest.raises(ValueError, match=words):
        read_trace(trace)


@pytest.mark.parametrize("rate", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be a positive number"):
        RateProfile.constant(rate)
