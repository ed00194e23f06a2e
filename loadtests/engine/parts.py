"""One run's load split across generator processes: the share each process takes.

A closed loop splits its concurrency and its request count (``SchedulePart.share``: part k of
N takes ``total // N``, plus one for each of the first ``total % N`` parts). An open loop splits
its one seeded schedule round-robin: part k sends the requests whose index in the whole
schedule is ≡ k (mod N), each at its intended start. Every part draws the same schedule and
starts from the same instant (the coordinated start), so the union of the parts' schedules is
the single-process schedule bit for bit, and each part offers 1/N of the rate at every moment
(slices contiguous in time would leave all but one process idle at any moment). A run bounded
by ``requests`` ends at the same global index in every part: the ``requests``-th measured
request of the whole schedule, so together the parts measure exactly ``requests``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from loadtests.engine.histogram import IntArray
from loadtests.errors import LoadOptionError


@dataclass(frozen=True, slots=True)
class SchedulePart:
    """Part ``index`` (0-based) of ``count`` generator processes."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise LoadOptionError(
                f"a schedule part is 0 <= index < count, got {self.index} of {self.count}"
            )

    def share(self, total: int) -> int:
        """This part's share of ``total`` whole things (workers, requests)."""
        return total // self.count + (1 if self.index < total % self.count else 0)


WHOLE = SchedulePart()  # one process: the whole load


def partitioned(
    chunks: Iterable[IntArray],
    part: SchedulePart,
    *,
    measure_from_ns: int,
    requests: int | None = None,
) -> Iterator[tuple[IntArray, IntArray]]:
    """``part``'s share of a schedule given as ``chunks`` of intended-start offsets (ns, in
    order), as (each request's index in the whole schedule, its offset). With ``requests``,
    the schedule ends after the ``requests``-th offset at or after ``measure_from_ns`` (the end
    of the warm-up): the same place for every part."""
    first = 0  # the whole schedule's index of this chunk's first offset
    end: int | None = None  # the whole schedule's index past its last request, once known
    for chunk in chunks:
        size = int(chunk.size)
        if requests is not None and end is None:
            measured = np.flatnonzero(chunk >= measure_from_ns)
            if measured.size:
                end = first + int(measured[0]) + requests
        stop = size if end is None else min(size, end - first)
        skip = (part.index - first) % part.count
        if skip < stop:
            indices = np.arange(first + skip, first + stop, part.count, dtype=np.int64)
            yield indices, chunk[skip : stop : part.count]
        first += size
        if end is not None and first >= end:
            return
