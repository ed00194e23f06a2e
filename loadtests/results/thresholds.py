"""Thresholds: one grammar, used by ``locust --threshold``, ``servelab compare`` and ``bench``.

Absolute   ``METRIC OP VALUE``: ``p99<50ms`` · ``service_p99<=20ms`` · ``fail_ratio<0.01``
           · ``schema_success_rate>=0.999`` · ``throughput_rps>=500`` · ``success_rate>=99.9%``
Relative   ``METRIC:+N%`` / ``METRIC:-N%`` (compare only): the change against the baseline that is
           still allowed — ``p99:+10%`` fails when p99 grew by more than 10 %,
           ``throughput_rps:-5%`` when throughput fell by more than 5 %.

``p50 … p999`` (and ``latency_min|mean|max``) are the intended-start latency
(``summary.latency_ms``), ``service_p50 …`` the service latency; latency values take a unit
(``ns us ms s``; a bare number is ms); ``fail_ratio = 1 - success_rate``; any other numeric summary
field by name. A malformed expression is a ``ThresholdError`` naming it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from loadtests.engine.histogram import PERCENTILES
from loadtests.errors import LoadOptionError
from targets.units import parse_duration_s

STATS: Final = ("min", "mean", "max")
SUMMARY_FIELDS: Final = (
    "requests", "successes", "failures", "expected_rejections", "success_rate",
    "schema_success_rate", "throughput_rps", "predictions_per_s", "window_s",
)  # fmt: skip
_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq,
}  # fmt: skip
_ABSOLUTE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
_RELATIVE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*:\s*([+-])\s*(\d+(?:\.\d+)?)\s*%\s*$")


class ThresholdError(LoadOptionError):
    """A malformed threshold or unknown metric; the message quotes the expression."""


# metric prefix -> summary block: latency of successes (no prefix), service time, the client's
# queue, failures' elapsed time, and every judged request (successes and failures together)
LATENCY_BLOCKS: Final = {
    "service_": "service_latency_ms",
    "client_queue_": "client_queue_ms",
    "failure_": "failure_latency_ms",
    "all_": "all_latency_ms",
    "latency_": "latency_ms",
}


SUCCESS_BLOCKS: Final = ("latency_ms", "service_latency_ms", "client_queue_ms")


def _latency_metric(metric: str) -> tuple[str, str] | None:
    """(summary block, key) for a latency metric name, else None."""
    block, name = "latency_ms", metric
    for prefix, prefixed_block in LATENCY_BLOCKS.items():
        if metric.startswith(prefix):
            block, name = prefixed_block, metric.removeprefix(prefix)
            break
    if name in PERCENTILES or (name in STATS and metric != name):
        return block, name
    return None


def known_metric(metric: str) -> bool:
    return metric == "fail_ratio" or metric in SUMMARY_FIELDS or _latency_metric(metric) is not None


def metric_value(summary: Mapping[str, Any], metric: str) -> float:
    """The metric's value in a result's ``summary`` (latencies in ms)."""
    latency = _latency_metric(metric)
    if latency is not None:
        block = summary.get(latency[0])
        if not isinstance(block, Mapping):
            raise ThresholdError(f"{metric}: not measured in this run ({latency[0]} is absent)")
        return float(block[latency[1]])
    if metric == "fail_ratio":
        return 1.0 - float(summary["success_rate"])
    value = summary.get(metric)
    if not isinstance(value, int | float):
        raise ThresholdError(f"unknown metric {metric!r}")
    return float(value)


def lower_is_better(metric: str) -> bool:
    return _latency_metric(metric) is not None or metric in ("fail_ratio", "failures")


@dataclass(frozen=True, slots=True)
class Check:
    """One threshold's outcome, with what a person needs to see why."""

    expression: str
    passed: bool
    actual: float
    limit: float
    detail: str


@dataclass(frozen=True, slots=True)
class AbsoluteThreshold:
    expression: str
    metric: str
    op: str
    value: float

    def check(self, summary: Mapping[str, Any]) -> Check:
        latency = _latency_metric(self.metric)
        if latency is not None and latency[0] in SUCCESS_BLOCKS and summary.get("successes") == 0:
            # an empty histogram reads 0 ms: a run where nothing succeeded is never "fast"
            detail = f"{self.metric}: no successful request was measured"
            return Check(self.expression, False, math.nan, self.value, detail)
        try:
            actual = metric_value(summary, self.metric)
        except ThresholdError as exc:  # a gate on what this run could not measure: breached
            return Check(self.expression, False, math.nan, self.value, str(exc))
        passed = _OPS[self.op](actual, self.value)
        unit = " ms" if _latency_metric(self.metric) else ""
        if passed:
            detail = f"{self.metric} = {actual:g}{unit} (limit {self.op} {self.value:g}{unit})"
        else:
            by = actual - self.value
            relative = f", {by / self.value:+.1%}" if self.value else ""
            detail = (
                f"{self.metric} = {actual:g}{unit}, limit {self.op} {self.value:g}{unit}: "
                f"off by {by:+g}{unit}{relative}"
            )
        return Check(self.expression, passed, actual, self.value, detail)


@dataclass(frozen=True, slots=True)
class RelativeThreshold:
    """``allowed_change``: signed fraction — +0.10 allows 10 % growth, -0.05 a 5 % drop."""

    expression: str
    metric: str
    allowed_change: float

    def limit(self, baseline: float) -> float:
        return baseline * (1.0 + self.allowed_change)

    def check_pair(self, baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> Check:
        before, after = metric_value(baseline, self.metric), metric_value(candidate, self.metric)
        limit = self.limit(before)
        passed = after <= limit if self.allowed_change >= 0 else after >= limit
        change = (after - before) / before if before else math.inf if after else 0.0
        detail = (
            f"{self.metric} {before:g} → {after:g} ({change:+.1%}; allowed "
            f"{self.allowed_change:+.0%})"
        )
        return Check(self.expression, passed, after, limit, detail)


Threshold = AbsoluteThreshold | RelativeThreshold


def _value(metric: str, text: str, expression: str) -> float:
    if _latency_metric(metric) is not None:
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        try:
            return parse_duration_s(text, what="latency") * 1e3
        except ValueError:
            raise ThresholdError(
                f"threshold {expression!r}: {text!r} is not a latency (e.g. 50ms, 0.2s)"
            ) from None
    percent = text.endswith("%")
    try:
        number = float(text.removesuffix("%"))
    except ValueError:
        raise ThresholdError(f"threshold {expression!r}: {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ThresholdError(f"threshold {expression!r}: {text!r} is not a finite number")
    return number / 100 if percent else number


def parse_threshold(expression: str, *, allow_relative: bool = True) -> Threshold:
    """Parse one expression; ``ThresholdError`` says what is wrong with it."""
    relative = _RELATIVE.match(expression)
    if relative is not None:
        metric, sign, amount = relative.groups()
        if not allow_relative:
            raise ThresholdError(
                f"threshold {expression!r}: relative thresholds need a baseline (servelab compare)"
            )
        if not known_metric(metric):
            raise ThresholdError(f"threshold {expression!r}: unknown metric {metric!r}")
        change = float(amount) / 100 * (1 if sign == "+" else -1)
        return RelativeThreshold(expression, metric, change)
    absolute = _ABSOLUTE.match(expression)
    if absolute is None:
        raise ThresholdError(
            f"threshold {expression!r} is malformed: expected METRIC OP VALUE (p99<50ms) "
            "or METRIC:+N% / METRIC:-N%"
        )
    metric, op, text = absolute.groups()
    if not known_metric(metric):
        raise ThresholdError(f"threshold {expression!r}: unknown metric {metric!r}")
    return AbsoluteThreshold(expression, metric, op, _value(metric, text, expression))


def parse_thresholds(expressions: list[str], *, allow_relative: bool = True) -> list[Threshold]:
    return [parse_threshold(text, allow_relative=allow_relative) for text in expressions]


def check_absolute(thresholds: list[Threshold], summary: Mapping[str, Any]) -> list[Check]:
    """Every absolute threshold against one summary (relative ones are skipped)."""
    return [t.check(summary) for t in thresholds if isinstance(t, AbsoluteThreshold)]
