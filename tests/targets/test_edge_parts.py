"""The edge runtime's parts on their own: quantisation, the LRU cache, the circuit breaker."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from targets.edge.breaker import CircuitBreaker
from targets.edge.cache import LruCache
from targets.edge.quantize import parse_quant


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def int8_expected(value: float, value_range: float) -> float:
    """The issue's formula, written out independently of the module."""
    scale = value_range / 127
    return min(127, max(-127, round(value / scale))) * scale


FEATURES = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize("value_range", [8.0, 1.0, 0.5, 300.0])
def test_int8_quantisation_follows_the_symmetric_formula(value_range: float) -> None:
    quantizer = parse_quant(f"int8:{value_range}")
    values = [0.0, -0.0, 0.1, -0.1, 1.0, 2.5, -3.75, value_range, -value_range, value_range * 0.999]
    for value in values:
        assert quantizer.quantize_value(value) == int8_expected(value, value_range)
    assert quantizer.quantize_row(values) == [int8_expected(v, value_range) for v in values]


def test_int8_saturates_beyond_the_range_even_for_huge_values() -> None:
    quantizer = parse_quant("int8:8")
    top = 127 * (8 / 127)
    assert quantizer.quantize_value(9.0) == top
    assert quantizer.quantize_value(-1e308) == -top
    assert quantizer.quantize_value(1.7976931348623157e308) == top  # x / scale overflows to inf
    assert math.isclose(top, 8.0)


@given(FEATURES)
def test_int8_error_is_at_most_half_a_step_inside_the_range(value: float) -> None:
    quantizer = parse_quant("int8:8")
    if abs(value) <= 8.0:
        assert abs(quantizer.quantize_value(value) - value) <= (8 / 127) / 2 + 1e-12


@pytest.mark.parametrize("bits", [0, 1, 4, 8, 16, 52])
def test_fixed_point_rounds_to_bits_fractional_bits(bits: int) -> None:
    quantizer = parse_quant(f"fixed:{bits}")
    for value in [0.0, 0.3, -0.3, 1.0 / 3.0, 2.5, -1234.56789, 1e-9]:
        assert quantizer.quantize_value(value) == round(value * 2**bits) / 2**bits


@given(FEATURES, st.integers(min_value=0, max_value=30))
def test_fixed_point_error_is_at_most_half_a_step(value: float, bits: int) -> None:
    quantized = parse_quant(f"fixed:{bits}").quantize_value(value)
    assert abs(quantized - value) <= 2.0 ** -(bits + 1)
    assert (quantized * 2**bits).is_integer()


def test_fixed_point_leaves_values_too_large_to_scale_alone() -> None:
    assert parse_quant("fixed:52").quantize_value(1e308) == 1e308


def test_nearby_rows_quantise_to_the_same_row() -> None:
    quantizer = parse_quant("int8:8")
    assert quantizer.quantize_row([1.0, 2.0]) == quantizer.quantize_row([1.01, 1.99])
    assert quantizer.quantize_row([1.0, 2.0]) != quantizer.quantize_row([1.1, 2.0])


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("int8:8", "int8:8"),
        ("int8:8.0", "int8:8"),
        (" int8:0.5 ", "int8:0.5"),
        ("fixed:08", "fixed:8"),
    ],
)
def test_quant_spec_is_reported_in_one_canonical_form(text: str, spec: str) -> None:
    assert parse_quant(text).spec == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "int8",
        "int8:",
        ":8",
        "int8:0",
        "int8:-1",
        "int8:nan",
        "int8:inf",
        "int8:abc",
        "fixed:-1",
        "fixed:53",
        "fixed:1.5",
        "fixed:x",
        "float16:3",
    ],
)
def test_bad_quant_strings_are_rejected_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match="--quant") as raised:
        parse_quant(text)
    assert "\n" not in str(raised.value)


def test_lru_cache_evicts_the_least_recently_used_entry() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now more recent than "b"
    cache.put("c", 3)
    assert "b" not in cache
    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert cache.stats() == {"capacity": 2, "size": 2, "hits": 3, "misses": 1, "evictions": 1}


def test_lru_cache_put_refreshes_an_existing_key() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    cache.put("c", 3)
    assert cache.get("a") == 10
    assert "b" not in cache
    assert len(cache) == 2


def test_lru_cache_of_capacity_zero_stores_nothing() -> None:
    cache: LruCache[str, int] = LruCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None
    assert len(cache) == 0
    assert cache.stats()["misses"] == 1


@pytest.mark.parametrize("capacity", [-1, 1.5, True])
def test_lru_cache_rejects_a_bad_capacity(capacity: object) -> None:
    with pytest.raises(ValueError, match="capacity"):
        LruCache(capacity)  # type: ignore[arg-type]


def test_breaker_opens_after_consecutive_failures_only() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=5.0, clock=clock)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state() == "closed"
    breaker.record_success()  # resets the count: failures must be consecutive
    breaker.record_failure()
    assert breaker.state() == "closed"
    breaker.record_failure()
    assert breaker.state() == "open"
    assert breaker.opens == 1
    assert not breaker.allow()
    assert breaker.rejected == 1


def test_breaker_half_opens_after_the_cooldown_for_one_trial_then_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5.0, clock=clock)
    assert breaker.allow()
    breaker.record_failure()  # default threshold: one failure opens
    assert breaker.state() == "open"
    clock.advance(4.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.state() == "half_open"
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one trial at a time
    breaker.record_success()
    assert breaker.state() == "closed"
    assert all(breaker.allow() for _ in range(5))
    assert breaker.stats()["trials"] == 1


def test_breaker_reopens_when_the_trial_fails_and_restarts_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state() == "open"
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_failure()  # one failed trial reopens, whatever the threshold
    assert breaker.state() == "open"
    assert breaker.opens == 2
    clock.advance(9.0)
    assert not breaker.allow()  # the cool-down counts from the failed trial
    clock.advance(1.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state() == "closed"


def test_breaker_ignores_a_late_failure_while_open() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5.0, clock=clock)
    breaker.record_failure()
    clock.advance(3.0)
    breaker.record_failure()
    clock.advance(2.0)
    assert breaker.state() == "half_open"
    assert breaker.opens == 1


@pytest.mark.parametrize(
    ("threshold", "cooldown_s", "message"),
    [(0, 1.0, "failure_threshold"), (1, -1.0, "cooldown_s"), (1, math.nan, "cooldown_s")],
)
def test_breaker_rejects_bad_settings(threshold: int, cooldown_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown_s)
