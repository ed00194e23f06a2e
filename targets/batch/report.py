"""What a batch job did: frozen reports, latency percentiles and the stderr summary. Stdlib only.

Pure numbers and text, no I/O, so the load driver can read a report without a terminal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

MAX_LISTED_OUTPUTS: Final = 5  # a backfill of many partitions names its directory instead


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` 0..1) of ``values``; ``0.0`` when there are none.

    Nearest rank returns a value that was actually observed, which is what a latency report
    should show for the handful of samples a small job produces.
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class PartitionReport:
    """One input file: where its results went and what was in it."""

    input: Path
    output: Path
    errors: Path
    rows: int
    valid: int
    bad: int
    batches: int
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class BatchReport:
    """A whole job (one file, or the partitions of a directory scored in this run).

    Counts cover the partitions scored in this run; ``skipped`` names the inputs left alone
    because an earlier run finished them and they have not changed since.
    """

    rows: int
    valid: int
    bad: int
    batches: int
    elapsed_s: float
    batch_latencies_s: tuple[float, ...]
    partitions: tuple[PartitionReport, ...]

    @property
    def outputs(self) -> tuple[Path, ...]:
        return tuple(part.output for part in self.partitions if not part.skipped)

    @property
    def skipped(self) -> tuple[Path, ...]:
        return tuple(part.input for part in self.partitions if part.skipped)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def batch_latency_ms(self, fraction: float) -> float:
        return percentile(self.batch_latencies_s, fraction) * 1e3


def merge_reports(reports: Sequence[BatchReport], elapsed_s: float) -> BatchReport:
    """One report for a directory job from its partitions' reports, over ``elapsed_s``."""
    return BatchReport(
        rows=sum(report.rows for report in reports),
        valid=sum(report.valid for report in reports),
        bad=sum(report.bad for report in reports),
        batches=sum(report.batches for report in reports),
        elapsed_s=elapsed_s,
        batch_latencies_s=tuple(
            latency for report in reports for latency in report.batch_latencies_s
        ),
        partitions=tuple(part for report in reports for part in report.partitions),
    )


def format_summary(report: BatchReport, *, batch_size: int) -> str:
    """The lines ``servelab batch score`` prints to stderr at the end of a job."""
    lines = [
        f"batch score: {report.rows} rows, {report.valid} valid, {report.bad} bad; "
        f"{report.batches} batches of up to {batch_size} rows in {report.elapsed_s:.3f} s "
        f"({report.rows_per_s:,.0f} rows/s)",
        f"batch latency: p50 {report.batch_latency_ms(0.5):.3f} ms, "
        f"p99 {report.batch_latency_ms(0.99):.3f} ms, max {report.batch_latency_ms(1.0):.3f} ms",
    ]
    if report.skipped:
        names = ", ".join(path.name for path in report.skipped)
        lines.append(f"skipped {len(report.skipped)} finished partition(s): {names}")
    written = [part for part in report.partitions if not part.skipped]
    if len(written) > MAX_LISTED_OUTPUTS:
        lines.append(f"output: {len(written)} files in {written[0].output.parent}")
    else:
        lines.extend(
            f"output: {part.output} ({part.valid} lines); errors: {part.errors}" for part in written
        )
    return "\n".join(lines)
