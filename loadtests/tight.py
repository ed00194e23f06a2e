"""The tight in-process loop: how fast servelab can time calls, for models cheap enough that
``await`` and per-request bookkeeping would dominate (a ``sum(row)/len(row)`` model).

One timestamp per call: in a back-to-back closed loop call ``i`` starts when call ``i-1`` ended,
so ``service_i = t_i - t_{i-1}`` and the loop's own few tens of ns are charged to the next call
(stated, not hidden). Timestamps go to an ``array('q')``; every ``chunk`` calls they are folded
vectorised into the recorder, so memory stays flat however long the run.
"""

from __future__ import annotations

import itertools
import time
from array import array
from collections.abc import Callable, Sequence

import numpy as np

from loadtests.recorder import Recorder

CHUNK = 1 << 18


def run_tight(
    predict_row: Callable[[Sequence[float]], float],
    rows: Sequence[Sequence[float]],
    requests: int,
    recorder: Recorder,
    *,
    chunk: int = CHUNK,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> None:
    """Call ``predict_row`` on ``rows`` (cycled) ``requests`` times, recording each call."""
    if requests < 1:
        raise ValueError("requests must be a positive int")
    if not rows:
        raise ValueError("rows must not be empty")
    cycle = itertools.cycle(rows)
    previous = clock()
    recorder.start_ns = previous
    remaining = requests
    while remaining:
        count = min(chunk, remaining)
        ends = array("q")
        append = ends.append
        for row in itertools.islice(cycle, count):
            predict_row(row)
            append(clock())
        ended = np.frombuffer(ends, dtype=np.int64)
        started = np.empty_like(ended)
        started[0] = previous
        started[1:] = ended[:-1]
        previous = int(ended[-1])
        zeros = np.zeros(count, dtype=np.int64)
        recorder.record_arrays(started, started, ended, zeros, zeros + 1)
        recorder.fold(now_ns=previous)  # close finished seconds of the per-second series
        remaining -= count
    recorder.finish()
