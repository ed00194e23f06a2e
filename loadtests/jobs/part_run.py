"""One generator process of ``servelab run --processes N`` (its parent is ``jobs.fleet``):
``python -m loadtests.jobs.part_run FD``, pinned to its CPU, runs its share of the load through
``jobs.run.execute`` and hands back what it measured, on the socket ``FD`` it inherited.

Parent → child first: ``("path", sys.path)`` (the parent's imports resolve here too), then
``("run", settings, cpu)``; later ``("start", T)``, the load starts at ``T`` on
``perf_counter_ns`` (``CLOCK_MONOTONIC`` on Linux: one clock for every process of the
machine), or ``("stop",)``. Child → parent: ``("ready", pid)`` once its driver is open
(connected, model loaded), ``("tick", requests)`` every second of the load (it is alive), then
``("result", PartResult)``, or ``("error", exc)``: a ``ServelabError`` met before any load (a
target that refused the probe, a contract the server did not describe). The child runs in a
process group of its own, so a Ctrl-C reaches the parent alone, which forwards it: "stop"
before the start, SIGINT after it (the harness's own handler stops the load). A parent that
vanishes reads as "stop".
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import signal
import sys
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loadtests.engine.loop import run as run_on_loop
from loadtests.engine.recorder import Recorder
from loadtests.engine.wire import recorder_to_wire
from loadtests.errors import ConfigError, ServelabError
from loadtests.jobs.run import RunOutput, execute
from loadtests.jobs.settings import RunSettings
from loadtests.results.document import ResultDocument


@dataclass(frozen=True, slots=True)
class PartResult:
    """What one generator process measured: its result document (its own verdict, cost and
    transport figures), its recorder on the wire (``engine.wire``: exact histograms and
    counts, and each second's buckets), its per-second rows and its harness's ``RunStats``."""

    document: ResultDocument
    recorder: dict[str, Any]
    rows: list[dict[str, float]]
    stats: dict[str, Any]


def main(argv: list[str]) -> int:
    """``python -m loadtests.jobs.part_run FD``: the socket's first messages say what to run."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    _, path = conn.recv()
    sys.path[:] = path
    _, settings, cpu = conn.recv()
    run_part(conn, settings, cpu)
    return 0


def run_part(conn: Connection, settings: RunSettings, cpu: int | None) -> None:
    """Run ``settings.part``, this process's share, pinned to ``cpu``; report on ``conn``."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        output = run_on_loop(_measured(conn, settings))
    except ServelabError as exc:
        conn.send(("error", _portable(exc)))
        return
    conn.send(("result", _part_result(output)))
    conn.close()


def _portable(exc: ServelabError) -> ServelabError:
    """``exc``, or the same line as a ``ConfigError`` where it would not survive pickling."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own object, round-tripped)
    except Exception:  # an error class whose constructor takes more than its message
        return ConfigError(str(exc))
    return exc


def _part_result(output: RunOutput) -> PartResult:
    recorder, stats = output.recorder, output.stats
    if recorder is None or stats is None:
        raise RuntimeError("jobs.run.execute returned no recorder")  # a bug: keep its traceback
    wire = recorder_to_wire(recorder)
    return PartResult(output.result, wire, recorder.timeseries, dataclasses.asdict(stats))


async def _measured(conn: Connection, settings: RunSettings) -> RunOutput:
    gate = _Gate(conn)
    return await execute(
        settings, out=None, on_tick=gate.tick, install_signal_handlers=True,
        start_gate=gate.wait,
    )  # fmt: skip


class _Gate:
    """The coordinated start, on the child's side, and its ticks."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def tick(self, recorder: Recorder, *_: object) -> None:
        self.conn.send(("tick", recorder.requests + recorder.pending))

    async def wait(self) -> int | None:
        """Say "ready", then wait (on the loop, no thread) for the parent's instant."""
        self.conn.send(("ready", os.getpid()))
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()
        fd = self.conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)
            os.set_blocking(fd, True)  # the loop made it non-blocking: the result is sent whole
        try:
            message = self.conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing to start for
            return None
        return int(message[1]) if message[0] == "start" else None


if __name__ == "__main__":
    # by its module's own name, so what it sends unpickles in the parent (not as __main__.*)
    from loadtests.jobs.part_run import main as part_main

    sys.exit(part_main(sys.argv))
