"""Arrival schedules: when each request is *intended* to start.

Open-loop schedules are intended-start offsets (ns from the start of the run), drawn from a
rate profile — constant, stepped, ramped — with constant or Poisson spacing, or replayed from a
trace. Time-varying rates use time rescaling: event ``k`` happens at ``Λ⁻¹(u_k)``, where ``Λ`` is
the cumulative rate and ``u_k`` is ``k`` (constant spacing) or a sum of unit exponentials
(Poisson). Same seed ⇒ same offsets, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from loadtests.engine.histogram import IntArray
from loadtests.errors import ConfigError, LoadOptionError

Arrival = Literal["constant", "poisson"]
CHUNK = 256  # offsets made per step: small, so making them never stalls the dispatcher long


@dataclass(frozen=True, slots=True)
class Segment:
    """``duration_s`` during which the rate goes linearly from ``start_rate`` to ``end_rate``."""

    duration_s: float
    start_rate: float
    end_rate: float

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise LoadOptionError("stage duration must be positive")
        if min(self.start_rate, self.end_rate) < 0 or not math.isfinite(
            self.start_rate + self.end_rate
        ):
            raise LoadOptionError("rates must be finite and >= 0")

    @property
    def events(self) -> float:
        """Expected events in the segment (Λ over it)."""
        return (self.start_rate + self.end_rate) / 2 * self.duration_s

    def time_at(self, events: float) -> float:
        """Seconds into the segment at which ``events`` (≤ ``self.events``) have accumulated."""
        slope = (self.end_rate - self.start_rate) / self.duration_s
        if abs(slope) < 1e-12:
            return events / self.start_rate
        # Λ(t) = r0 t + slope t² / 2  ⇒  t = (-r0 + sqrt(r0² + 2 slope Λ)) / slope
        root = math.sqrt(max(self.start_rate**2 + 2 * slope * events, 0.0))
        return (root - self.start_rate) / slope


@dataclass(frozen=True, slots=True)
class RateProfile:
    """Open-loop rate over time; after the last segment the last rate holds."""

    segments: tuple[Segment, ...]

    @classmethod
    def constant(cls, rate_per_s: float) -> RateProfile:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise LoadOptionError(f"rate must be a positive number, got {rate_per_s}")
        return cls((Segment(3600.0 * 24, rate_per_s, rate_per_s),))

    @classmethod
    def steps(cls, stages: Sequence[tuple[float, float]], *, ramp: bool = False) -> RateProfile:
        """``[(duration_s, rate), ...]``: held steps, or linear ramps between them (``ramp``)."""
        if not stages:
            raise LoadOptionError("stages must not be empty")
        segments, previous = [], 0.0
        for duration_s, rate in stages:
            start = previous if ramp else rate
            segments.append(Segment(duration_s, start, rate))
            previous = rate
        last = stages[-1][1]
        if last > 0:
            segments.append(Segment(3600.0 * 24, last, last))
        return cls(tuple(segments))

    def offsets_s(self, units: Sequence[float]) -> list[float]:
        """Map cumulative-event values (sorted) to seconds from the start."""
        result: list[float] = []
        base_events, base_time, index = 0.0, 0.0, 0
        segments = self.segments
        for unit in units:
            while index < len(segments) and unit > base_events + segments[index].events:
                base_events += segments[index].events
                base_time += segments[index].duration_s
                index += 1
            if index == len(segments):
                break  # the profile ended (rate 0 at the end): no more events
            result.append(base_time + segments[index].time_at(unit - base_events))
        return result


def open_loop_offsets_ns(
    profile: RateProfile, arrival: Arrival, seed: int, *, limit_s: float | None = None
) -> Iterator[IntArray]:
    """Intended-start offsets in ns, in chunks, until ``limit_s`` (or forever)."""
    if arrival not in ("constant", "poisson"):
        raise LoadOptionError(f"arrival must be constant or poisson, got {arrival!r}")
    rng = np.random.default_rng(seed)
    done = 0.0
    while True:
        if arrival == "constant":
            units = done + np.arange(CHUNK, dtype=np.float64)
        else:
            units = done + np.cumsum(rng.exponential(1.0, CHUNK))
        done = float(units[-1]) + (1.0 if arrival == "constant" else 0.0)
        offsets = profile.offsets_s(units.tolist())
        chunk = np.round(np.asarray(offsets, dtype=np.float64) * 1e9).astype(np.int64)
        if limit_s is not None:
            chunk = chunk[chunk < int(limit_s * 1e9)]
        if chunk.size:
            yield chunk
        if len(offsets) < CHUNK or (limit_s is not None and chunk.size < len(offsets)):
            return


def read_trace(path: str | Path) -> IntArray:
    """Offsets from a trace file: one timestamp in seconds per line (absolute or relative;
    ``#`` comments and blank lines ignored), sorted, shifted so the first is 0."""
    values: list[float] = []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read trace {path}: {exc.strerror or exc}") from exc
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"trace {path} line {number}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"trace {path} line {number}: {text!r} is not finite")
        values.append(value)
    if not values:
        raise ConfigError(f"trace {path} has no timestamps")
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    offsets: IntArray = np.round((ordered - ordered[0]) * 1e9).astype(np.int64)
    return offsets
