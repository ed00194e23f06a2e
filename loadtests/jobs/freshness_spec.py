"""What a freshness comparison is asked for — schedules, windows, horizon, the makespan bound —
read from ``servelab freshness``'s options or a bench cell's keys, each refusal one line naming
the option or key. Stdlib and ``targets`` only: the bench config imports it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from loadtests.errors import LoadOptionError
from targets.units import parse_duration_s

DEFAULT_SCHEDULES: Final = "15m,1h,24h"
DEFAULT_WINDOWS: Final = "2ms,20ms"
MIN_INTERVAL_S: Final = 1.0
MAX_HORIZON_S: Final = 7 * 24 * 3600.0
MAX_EVENTS: Final = 10_000_000  # virtual arrivals held in memory (80 MB of float64 each array)
MAX_WINDOW_MS: Final = 60_000.0


def interval_name(seconds: float) -> str:
    """``15m``, ``1h``, ``24h``, ``90s``: a schedule as people write it."""
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def durations_s(items: str | Sequence[object], what: str) -> tuple[float, ...]:
    """``"15m,1h"`` or ``["15m", "1h"]`` in seconds, distinct and sorted; ``LoadOptionError``
    naming ``what`` otherwise."""
    texts = items.split(",") if isinstance(items, str) else list(items)
    if not texts or any(not isinstance(text, str) or not text.strip() for text in texts):
        raise LoadOptionError(
            f"{what}: expected a comma-separated list of durations, got {items!r}"
        )
    try:
        values = [parse_duration_s(str(text), what=what) for text in texts]
    except ValueError as exc:
        raise LoadOptionError(str(exc)) from None
    return tuple(sorted(set(values)))


@dataclass(frozen=True, slots=True)
class FreshnessSpec:
    """Backfill intervals (s), streaming windows (ms), the virtual horizon (default: the longest
    interval), the makespan bound (rows scored for real per run), and per window the real
    streaming run's duration and warm-up."""

    schedules_s: tuple[float, ...]
    windows_ms: tuple[float, ...]
    horizon_s: float | None = None
    bound_rows: int = 20_000
    stream_duration_s: float = 5.0
    stream_warmup_s: float = 0.5

    @property
    def horizon(self) -> float:
        return self.horizon_s if self.horizon_s is not None else max(self.schedules_s)

    def check(self, rate_per_s: float, *, names: dict[str, str]) -> None:
        """Refuse what cannot run, naming the option (``names``: field -> option or key)."""
        if any(s < MIN_INTERVAL_S for s in self.schedules_s):
            raise LoadOptionError(f"{names['schedules']}: intervals must be at least 1s")
        if any(not 0 <= w <= MAX_WINDOW_MS for w in self.windows_ms):
            raise LoadOptionError(f"{names['windows']}: windows must be between 0 and 60000 ms")
        horizon = self.horizon
        if not (math.isfinite(horizon) and max(self.schedules_s) <= horizon <= MAX_HORIZON_S):
            raise LoadOptionError(
                f"{names['horizon']}: the horizon must lie between the longest interval "
                f"({interval_name(max(self.schedules_s))}) and 7 days, got {horizon:g}s"
            )
        if rate_per_s * horizon > MAX_EVENTS:
            raise LoadOptionError(
                f"{names['rate']}: {rate_per_s:g}/s over {interval_name(horizon)} is "
                f"{rate_per_s * horizon:,.0f} virtual events; at most {MAX_EVENTS:,}"
            )
        if self.bound_rows < 4:
            raise LoadOptionError(f"{names['bound_rows']}: expected at least 4 rows")


# A bench cell of ``kind = "freshness"`` (``jobs.bench_config``): these keys and no others.
FRESHNESS_KEYS: Final = frozenset({
    "kind", "model", "rates", "duration", "warmup", "batch_size", "label", "profiles",
    "schedules", "windows", "horizon", "sample_rows",
})  # fmt: skip


def read_freshness(
    data: Mapping[str, object], where: str, *, duration_s: float, warmup_s: float
) -> FreshnessSpec:
    """A freshness cell's ``schedules``, ``windows`` (lists of durations, or one comma-separated
    string), ``horizon`` and ``sample_rows``; ``LoadOptionError`` naming ``where.key``."""
    horizon = data.get("horizon")
    if horizon is not None and not isinstance(horizon, str):
        raise LoadOptionError(f'{where}.horizon: expected a duration like "24h", got {horizon!r}')
    bound = data.get("sample_rows", 20_000)
    if type(bound) is not int or bound < 4:
        raise LoadOptionError(f"{where}.sample_rows: expected an integer >= 4, got {bound!r}")
    windows = durations_s(_listed(data.get("windows", DEFAULT_WINDOWS)), f"{where}.windows")
    return FreshnessSpec(
        schedules_s=durations_s(
            _listed(data.get("schedules", DEFAULT_SCHEDULES)), f"{where}.schedules"
        ),
        windows_ms=tuple(s * 1e3 for s in windows),
        horizon_s=None if horizon is None else _one(horizon, f"{where}.horizon"),
        bound_rows=bound,
        stream_duration_s=duration_s,
        stream_warmup_s=warmup_s,
    )


def _listed(value: object) -> str | Sequence[object]:
    return value if isinstance(value, str | list) else [value]


def _one(text: str, what: str) -> float:
    try:
        return parse_duration_s(text, what=what)
    except ValueError as exc:
        raise LoadOptionError(str(exc)) from None
