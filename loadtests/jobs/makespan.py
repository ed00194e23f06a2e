"""Batch makespans, measured: the batch target (``targets.batch.score_file``, what ``servelab
batch score`` runs) scoring a JSONL file of N rows, from the call to the committed outputs.

A run of up to ``bound_rows`` rows is scored at its real size, while the schedule's budget of
real rows lasts (``budget_rows``: a day of 15-minute runs at 50/s is 4.3 M rows, which would
take minutes). Past either, the makespan is scaled from samples: the target scores
``bound_rows / 4`` and ``bound_rows`` rows (``repeats`` times each, medians kept), and the line
through the two points, ``makespan = fixed_s + rows / rows_per_s`` (CPU the same way), gives
the run's makespan. Both samples, the fit and which runs used it go into the result. CPU is
this process's (``time.process_time``): the job runs here, nothing else does meanwhile.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from loadtests.jobs.backfill import Makespan, RunCost
from targets.batch import score_file
from targets.batch.scoring import encode_line
from targets.models import Model

DEFAULT_BOUND_ROWS = 20_000
DEFAULT_REPEATS = 3


@dataclass(frozen=True, slots=True)
class Scaling:
    """``makespan = fixed_s + rows / rows_per_s`` and ``cpu = fixed_cpu_s + rows *
    cpu_s_per_row``, fitted through two measured sample sizes."""

    sample_rows: tuple[int, int]
    makespan_s: tuple[float, float]
    cpu_s: tuple[float, float]
    rows_per_s: float
    fixed_s: float
    cpu_s_per_row: float
    fixed_cpu_s: float

    @property
    def method(self) -> str:
        """``line`` through both samples, or ``large sample's rate`` when noise made the larger
        sample no slower than the smaller (a busy machine): said in the result."""
        large_rate = self.sample_rows[1] / self.makespan_s[1]
        return (
            "large sample's rate" if self.fixed_s == 0 and self.rows_per_s == large_rate else "line"
        )

    @classmethod
    def fit(
        cls, rows: tuple[int, int], makespan_s: tuple[float, float], cpu_s: tuple[float, float]
    ) -> Scaling:
        (small, large), (t_small, t_large), (c_small, c_large) = rows, makespan_s, cpu_s
        if t_large > t_small and large > small:
            rows_per_s = (large - small) / (t_large - t_small)
            fixed_s = max(t_small - small / rows_per_s, 0.0)
        else:  # noise swamped the difference: no fixed part, the large sample's rate
            rows_per_s, fixed_s = large / t_large, 0.0
        if c_large > c_small and large > small:
            per_row = (c_large - c_small) / (large - small)
            fixed_cpu_s = max(c_small - small * per_row, 0.0)
        else:
            per_row, fixed_cpu_s = c_large / large, 0.0
        return cls(
            sample_rows=rows,
            makespan_s=makespan_s,
            cpu_s=cpu_s,
            rows_per_s=rows_per_s,
            fixed_s=fixed_s,
            cpu_s_per_row=per_row,
            fixed_cpu_s=fixed_cpu_s,
        )

    def cost(self, rows: int) -> RunCost:
        return RunCost(
            self.fixed_s + rows / self.rows_per_s,
            self.fixed_cpu_s + rows * self.cpu_s_per_row,
            measured=False,
        )

    def block(self) -> dict[str, Any]:
        return {
            "sample_rows": list(self.sample_rows),
            "sample_makespan_s": list(self.makespan_s),
            "sample_cpu_s": list(self.cpu_s),
            "rows_per_s": self.rows_per_s,
            "fixed_s": self.fixed_s,
            "cpu_s_per_row": self.cpu_s_per_row,
            "fixed_cpu_s": self.fixed_cpu_s,
            "fit": self.method,
        }


class BatchMakespans:
    """Measures batch makespans (see the module docstring); a context manager owning the temp
    directory the jobs write into. ``rows``: the JSON rows a job scores, cycled to its size."""

    def __init__(
        self,
        model: Model,
        rows: Sequence[Sequence[float]],
        *,
        batch_size: int,
        bound_rows: int = DEFAULT_BOUND_ROWS,
        budget_rows: int | None = None,
        repeats: int = DEFAULT_REPEATS,
    ) -> None:
        if not rows:
            raise ValueError("rows must not be empty")
        if bound_rows < 4:
            raise ValueError(f"bound_rows must be at least 4, got {bound_rows}")
        self.model, self.batch_size, self.bound_rows = model, batch_size, bound_rows
        self.budget_rows = 4 * bound_rows if budget_rows is None else budget_rows
        self.repeats = repeats
        self._lines = [encode_line({"instances": list(row)}) for row in rows]
        self._directory: Path | None = None
        self._scaling: Scaling | None = None
        self.jobs = 0  # real batch jobs run

    def __enter__(self) -> BatchMakespans:
        self._directory = Path(tempfile.mkdtemp(prefix="servelab-freshness-"))
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def measure(self, rows: int) -> RunCost:
        """Score ``rows`` rows for real: wall-clock and CPU of the whole job."""
        directory = self._directory
        if directory is None:
            raise RuntimeError("BatchMakespans.measure() outside its with block")
        source = directory / "rows.jsonl"
        source.write_bytes(b"".join(itertools.islice(itertools.cycle(self._lines), rows)))
        began_s, began_cpu_s = time.perf_counter(), time.process_time()
        report = score_file(
            source, directory / "scores.jsonl", model=self.model, batch_size=self.batch_size
        )
        cost = RunCost(time.perf_counter() - began_s, time.process_time() - began_cpu_s, True)
        self.jobs += 1
        if report.valid != rows:
            raise RuntimeError(f"the batch target scored {report.valid} of {rows} rows")
        return cost

    @property
    def scaling(self) -> Scaling:
        """The fit through the two samples, measured on first use."""
        if self._scaling is None:
            sizes = (max(self.bound_rows // 4, 1), self.bound_rows)
            samples = [[self.measure(size) for _ in range(self.repeats)] for size in sizes]
            makespans = [statistics.median(c.makespan_s for c in runs) for runs in samples]
            cpus = [statistics.median(c.cpu_s for c in runs) for runs in samples]
            self._scaling = Scaling.fit(sizes, (makespans[0], makespans[1]), (cpus[0], cpus[1]))
        return self._scaling

    @property
    def scaled(self) -> Scaling | None:
        """The fit, if any run needed it."""
        return self._scaling

    def for_schedule(self) -> Makespan:
        """A ``Makespan`` with a fresh budget of real rows (one per schedule)."""
        left = self.budget_rows

        def makespan(rows: int) -> RunCost:
            nonlocal left
            if rows <= self.bound_rows and rows <= left:
                left -= rows
                return self.measure(rows)
            return self.scaling.cost(rows)

        return makespan
