"""How each run was run — load, duration, warmup, start — for the top of every report.

A figure means little without its conditions: 90 k req/s over 2 s after a 0.5 s warmup is not
90 k req/s over ten minutes. Rows are plain strings, shared by ``index.html`` and ``summary.md``;
``run_records`` gives ``comparison.json`` the same facts unformatted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from reports.analysis import Analysis
from reports.load import Run, load_level

RUN_HEADERS: Final = ("run", "target", "load", "duration", "warmup", "started", "verdict")
MAX_LISTED: Final = 4  # distinct values named in the one-line summary before it elides
_WINDOW_TOLERANCE: Final = 0.02  # a measured window this close to the set duration is not told


def started(run: Run) -> dt.datetime | None:
    """``run.started_at`` as an aware instant (no offset: UTC); None if absent or unparsable."""
    try:
        moment = dt.datetime.fromisoformat(str(run.run.get("started_at")))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def ordered_runs(analysis: Analysis) -> list[Run]:
    """Every run, valid or not, in the order they started (runs of unknown start last)."""
    runs = [run for cell in analysis.cells for run in (*cell.runs, *cell.invalid)]

    def order(run: Run) -> tuple[bool, float, str]:
        moment = started(run)
        return moment is None, moment.timestamp() if moment else 0.0, run.path

    return sorted(runs, key=order)


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def seconds_text(seconds: float) -> str:
    """``2 s``, ``0.5 s``, ``1.69 s``, ``1,200 s``."""
    return f"{seconds:,.0f} s" if seconds >= 100 else f"{seconds:.3g} s"


def duration_text(run: Run) -> str:
    """``2 s``; ``300 requests in 1.69 s`` for a run bounded by a request count; the measured
    window too where it differs from the duration asked for; ``stopped early`` if partial."""
    info = run.run
    asked = _seconds(info.get("duration_s"))
    window = _seconds(run.summary.get("window_s"))
    limit = info.get("requests_limit")
    if asked:
        text = seconds_text(asked)
        if window is not None and abs(window - asked) > _WINDOW_TOLERANCE * asked:
            text += f" ({seconds_text(window)} measured)"
    elif isinstance(limit, int) and limit > 0:
        text = f"{limit:,} requests" + (f" in {seconds_text(window)}" if window else "")
    else:
        text = f"{seconds_text(window)} measured" if window else "n/a"
    return text + (", stopped early" if info.get("partial") else "")


def warmup_text(run: Run) -> str:
    warmup = _seconds(run.run.get("warmup_s"))
    if warmup is None:
        return "n/a"
    return "none" if warmup == 0 else seconds_text(warmup)


def started_text(run: Run) -> str:
    """``2026-12-02 01:19:53 UTC`` (other offsets kept as written); the raw text if unparsable."""
    raw = run.run.get("started_at")
    moment = started(run)
    if moment is None:
        return str(raw) if raw else "n/a"
    if moment.utcoffset() == dt.timedelta(0):
        return moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.isoformat(sep=" ")


def run_rows(analysis: Analysis) -> list[list[str]]:
    return [
        [
            Path(run.path).name,
            run.key.target,
            load_level(run.run),
            duration_text(run),
            warmup_text(run),
            started_text(run),
            "valid" if run.valid else "INVALID",
        ]
        for run in ordered_runs(analysis)
    ]


def _listed(values: Sequence[str]) -> str:
    """Distinct values in order of first appearance (of start), the tail elided."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) <= MAX_LISTED:
        return ", ".join(distinct)
    return f"{', '.join(distinct[: MAX_LISTED - 1])}, … ({len(distinct)} in all)"


def conditions_line(analysis: Analysis) -> str:
    """One line for the header: durations, warmups, loads and when the runs started."""
    runs = ordered_runs(analysis)
    if not runs:
        return "No runs."
    starts = [started_text(run) for run in runs if started(run) is not None]
    when = "start unknown"
    if starts:
        first, last = starts[0], starts[-1]
        when = f"started {first}" if first == last else f"started {first} to {last}"
    return (
        f"Runs: duration {_listed([duration_text(r) for r in runs])} · "
        f"warmup {_listed([warmup_text(r) for r in runs])} · "
        f"load {_listed([load_level(r.run) for r in runs])} · {when}"
    )


def run_records(analysis: Analysis) -> list[dict[str, Any]]:
    fields = (
        "target", "mode", "concurrency", "rate_per_s", "arrival", "duration_s",
        "requests_limit", "warmup_s", "partial", "started_at",
    )  # fmt: skip
    return [
        {
            "file": run.path,
            **{name: run.run.get(name) for name in fields},
            "window_s": run.summary.get("window_s"),
            "valid": run.valid,
        }
        for run in ordered_runs(analysis)
    ]
