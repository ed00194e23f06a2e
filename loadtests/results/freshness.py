"""Freshness points: how old a prediction is when it comes out, per backfill schedule and per
streaming window — the ``extra.freshness`` block of a ``servelab freshness`` result.

An event's *freshness* is the time from its arrival to its prediction's output. For a batch
backfill that is the wait for the next scheduled run plus that run's makespan; for the streaming
consumer it is measured per event (the micro-batch window's wait inside it). One ``Point`` per
schedule or window; ``points_of`` reads them back from a result document, skipping nothing
silently: a mangled block is a ``ResultFileError`` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from loadtests.errors import ResultFileError

TARGET: Final = "freshness"  # run.target of a freshness result
BACKFILL: Final = "backfill"
STREAM: Final = "stream"
PointKind = Literal["backfill", "stream"]


@dataclass(frozen=True, slots=True)
class Point:
    """One schedule (``backfill``) or one micro-batch window (``stream``).

    ``name``: ``15m`` / ``1h`` / ``24h`` (the interval) or ``2ms`` (the window); freshness
    percentiles in seconds over ``events`` events; ``cpu_s_per_1k``: target CPU-seconds per
    1,000 predictions (``None``: not measured); ``detail``: how it was measured (runs, rows,
    makespans, which were scaled) — free-form, for the reader.
    """

    kind: PointKind
    name: str
    events: int
    p50_s: float
    p99_s: float
    mean_s: float
    max_s: float
    cpu_s_per_1k: float | None
    detail: Mapping[str, Any]

    @property
    def label(self) -> str:
        return f"{self.name} backfill" if self.kind == BACKFILL else f"stream {self.name}"

    def block(self) -> dict[str, Any]:
        block = asdict(self)
        block["detail"] = dict(self.detail)
        return block


def _number(raw: Mapping[str, Any], key: str, where: str) -> float:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ResultFileError(f"{where}.{key}: expected a finite number, got {value!r}")
    return float(value)


def point_of(raw: object, where: str) -> Point:
    """One point block back as a ``Point``; ``ResultFileError`` naming the bad field."""
    if not isinstance(raw, Mapping):
        raise ResultFileError(f"{where}: expected an object, got {type(raw).__name__}")
    kind = raw.get("kind")
    if kind not in (BACKFILL, STREAM):
        raise ResultFileError(f"{where}.kind: expected backfill or stream, got {kind!r}")
    cost = raw.get("cpu_s_per_1k")
    detail = raw.get("detail")
    return Point(
        kind=BACKFILL if kind == BACKFILL else STREAM,
        name=str(raw.get("name") or "?"),
        events=int(_number(raw, "events", where)),
        p50_s=_number(raw, "p50_s", where),
        p99_s=_number(raw, "p99_s", where),
        mean_s=_number(raw, "mean_s", where),
        max_s=_number(raw, "max_s", where),
        cpu_s_per_1k=None if cost is None else _number(raw, "cpu_s_per_1k", where),
        detail=detail if isinstance(detail, Mapping) else {},
    )


def points_of(document: Mapping[str, Any], path: str = "result") -> list[Point]:
    """The freshness points of a result document (``[]`` for any other result)."""
    run = document.get("run")
    if not isinstance(run, Mapping) or run.get("target") != TARGET:
        return []
    block = (document.get("extra") or {}).get("freshness")
    points = block.get("points") if isinstance(block, Mapping) else None
    if not isinstance(points, list):
        raise ResultFileError(f"{path}: extra.freshness.points: expected a list")
    return [point_of(raw, f"{path}: extra.freshness.points[{i}]") for i, raw in enumerate(points)]


def duration_text(seconds: float) -> str:
    """``3.2 ms``, ``1.5 s``, ``14.8 min``, ``11.9 h``: freshness spans ms to hours."""
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
