"""What Locust runs measured, without gevent: every request into servelab's ``Recorder``, each
worker's figures to the master, the merge, the transport figures and the verdict (the result
file itself is ``locust_session``'s).

Data path (``loadtests/locustfile.py`` wires it to Locust's events)::

    events.request ──► ProcessRecording.record ── Recorder (exact ns, HDR) + SideStats
                                                        │ snapshot(): cumulative, msgpack-safe
    events.report_to_master (every 3 s, and once after stop) ─► events.worker_report
                                                        ▼
    Collection.absorb: the latest snapshot per process (+ its closed seconds)
    quitting ─► Collection.merged ─► judge_locust, transport_extra ─► (locust_session)

Snapshots are cumulative, so the master keeps only each process's latest one and a lost report
costs nothing but freshness. Timestamps are wall-clock ns (``time.time_ns``): per-second rows of
different machines then line up on the same seconds (up to clock skew), and the master rebases them
to its own test start. Rows of one second that several workers saw merge by summing counts and
keeping the worse p50/p99 (as ``Recorder.merge`` does; percentiles of parts cannot be summed).
"""

from __future__ import annotations

import os
import socket
import time
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from loadtests.drivers.base import Reply
from loadtests.engine.harness import RunStats
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.wire import recorder_from_wire, recorder_to_wire
from loadtests.locust_integration.support import LATENCY_NS_KEY, REPLY_KEY
from loadtests.results.result import Verdict
from loadtests.results.verdict import GeneratorLoad, judge_run  # one verdict for every run

WIRE_VERSION: Final = 1
WIRE_KEY: Final = "servelab"  # our key in Locust's report dicts


class SideStats:
    """Transport figures beside the recorder, mergeable across processes: ``counters`` (summed),
    latency ``histograms`` (merged; fed through ns columns, folded vectorised) and small
    ``samples`` lists (concatenated — one value per stream, not per request)."""

    def __init__(self) -> None:
        self.counters: dict[str, float] = {}
        self.histograms: dict[str, LatencyHistogram] = {}
        self.samples: dict[str, list[int]] = {}
        self._pending: dict[str, array[int]] = {}

    def count(self, name: str, amount: float = 1.0) -> None:
        self.counters[name] = self.counters.get(name, 0.0) + amount

    def observe_ns(self, name: str, value_ns: int) -> None:
        column = self._pending.get(name)
        if column is None:
            column = self._pending[name] = array("q")
        column.append(value_ns)

    def sample(self, name: str, value: int) -> None:
        self.samples.setdefault(name, []).append(value)

    def fold(self) -> None:
        pending, self._pending = self._pending, {}
        for name, column in pending.items():
            histogram = self.histograms.setdefault(name, LatencyHistogram())
            histogram.record_many(np.frombuffer(column, dtype=np.int64))

    def merge(self, other: SideStats) -> None:
        other.fold()
        for name, amount in other.counters.items():
            self.count(name, amount)
        for name, histogram in other.histograms.items():
            self.histograms.setdefault(name, LatencyHistogram()).merge(histogram)
        for name, values in other.samples.items():
            self.samples.setdefault(name, []).extend(values)

    def to_wire(self) -> dict[str, Any]:
        self.fold()
        return {
            "counters": dict(self.counters),
            "histograms": {name: h.encode() for name, h in self.histograms.items()},
            "samples": {name: list(values) for name, values in self.samples.items()},
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SideStats:
        side = cls()
        side.counters = {str(k): float(v) for k, v in data.get("counters", {}).items()}
        side.histograms = {
            str(k): LatencyHistogram.decode(v) for k, v in data.get("histograms", {}).items()
        }
        side.samples = {str(k): [int(x) for x in v] for k, v in data.get("samples", {}).items()}
        return side


class ProcessRecording:
    """What one load-generating Locust process (local runner or worker) measured in a test.

    ``clock_ns`` stamps requests (wall clock, see the module docstring); ``cpu_s`` reads this
    process's CPU seconds (``process_tree_cpu_s`` of its own pid by default) for the generator
    check. Both injectable, so tests never wait.
    """

    def __init__(
        self,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        cpu_s: Callable[[], float] | None = None,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        if cpu_s is None:
            from loadtests.results.environment import process_tree_cpu_s

            pid = os.getpid()  # read at construction: after Locust's fork, each worker's own

            def cpu_s() -> float:
                return process_tree_cpu_s(pid)

        self._clock_ns = clock_ns
        self._cpu_s = cpu_s
        self._monotonic_s = monotonic_s
        self.start()

    def start(self) -> None:
        """A new test: forget the last one's figures."""
        self.recorder = Recorder(start_ns=0)
        self.side = SideStats()
        self.stopped = False
        self._rows_sent = 0
        self._cpu_start_s = self._cpu_s()
        self._wall_start_s = self._monotonic_s()
        self._cpu_used_s: float | None = None
        self._wall_used_s: float | None = None

    def stop(self) -> None:
        """The test stopped (users are gone): freeze the CPU window."""
        self.stopped = True
        self._cpu_used_s = self._cpu_s() - self._cpu_start_s
        self._wall_used_s = self._monotonic_s() - self._wall_start_s

    def record(
        self,
        response_time_ms: float | None,
        start_time_s: float | None,
        context: Mapping[str, Any] | None,
        exception: BaseException | None,
    ) -> None:
        """One ``events.request``. Our users put their reply and exact ns in ``context``; any
        other request (a user's own task) is judged by Locust's verdict alone."""
        reply = context.get(REPLY_KEY) if context else None
        latency_ns = context.get(LATENCY_NS_KEY) if context else None
        if latency_ns is None:
            latency_ns = round(response_time_ms * 1e6) if response_time_ms is not None else 0
        if reply is None:
            reply = (
                Reply.ok(0)
                if exception is None
                else Reply.failure(f"locust_{type(exception).__name__}")
            )
        outcome, error_class, predictions, schema_ok = reply
        recorder = self.recorder
        code = recorder.error_code(error_class) if error_class else 0
        started_ns = (
            round(start_time_s * 1e9) if start_time_s is not None else self._clock_ns() - latency_ns
        )
        # Locust times a request as one span: its HTTP clients wait for a pooled connection
        # inside it and do not say how long, so the on-wire instant is unseen (client queue
        # absent) and service time is the whole span.
        recorder.record(
            started_ns, started_ns, started_ns + latency_ns, outcome, code, predictions, schema_ok
        )

    def snapshot(self) -> dict[str, Any]:
        """This process's figures so far (cumulative), for the master; ``final`` once stopped."""
        if self.stopped:
            self.recorder.finish()
        else:
            self.recorder.fold(now_ns=self._clock_ns())
        rows = self.recorder.timeseries[self._rows_sent :]
        self._rows_sent += len(rows)
        if self._cpu_used_s is None:
            cpu_used, wall_used = (
                self._cpu_s() - self._cpu_start_s,
                self._monotonic_s() - self._wall_start_s,
            )
        else:
            cpu_used, wall_used = self._cpu_used_s, self._wall_used_s or 0.0
        return {
            "version": WIRE_VERSION,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "final": self.stopped,
            "recorder": recorder_to_wire(self.recorder),
            "rows": rows,
            "side": self.side.to_wire(),
            "cpu_s": cpu_used,
            "wall_s": wall_used,
        }


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """One load-generating process as the master saw it last."""

    client_id: str
    pid: int
    hostname: str
    requests: int
    final: bool
    cpu_s: float
    wall_s: float

    @property
    def cpu_share(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Collection:
    """The master's (or local runner's) view: each process's latest snapshot."""

    def __init__(self) -> None:
        self._latest: dict[str, Mapping[str, Any]] = {}
        self._rows: dict[str, list[dict[str, float]]] = {}

    def reset(self) -> None:
        self._latest.clear()
        self._rows.clear()

    def absorb(self, client_id: str, snapshot: Mapping[str, Any]) -> None:
        if snapshot.get("version") != WIRE_VERSION:
            raise ValueError(
                f"worker {client_id} sent servelab data version {snapshot.get('version')!r}, "
                f"this master reads {WIRE_VERSION}: run the same servelab everywhere"
            )
        self._latest[client_id] = snapshot
        self._rows.setdefault(client_id, []).extend(snapshot["rows"])

    def all_final(self) -> bool:
        """Every process seen so far has sent its last (final) snapshot."""
        return bool(self._latest) and all(bool(s["final"]) for s in self._latest.values())

    def merged(self) -> tuple[Recorder, SideStats, list[ProcessSummary]]:
        recorder, side, processes = Recorder(start_ns=0), SideStats(), []
        for client_id, snapshot in sorted(self._latest.items()):
            part = recorder_from_wire(snapshot["recorder"], self._rows[client_id])
            recorder.merge(part)
            side.merge(SideStats.from_wire(snapshot["side"]))
            processes.append(
                ProcessSummary(
                    client_id=client_id,
                    pid=int(snapshot["pid"]),
                    hostname=str(snapshot["hostname"]),
                    requests=part.requests,
                    final=bool(snapshot["final"]),
                    cpu_s=float(snapshot["cpu_s"]),
                    wall_s=float(snapshot["wall_s"]),
                )
            )
        recorder.finish()
        return recorder, side, processes


def transport_extra(side: SideStats, window_s: float) -> dict[str, Any]:
    """Per-transport figures (stream first response, batch rows/s, edge sources)."""
    side.fold()
    extra: dict[str, Any] = {}
    first = side.samples.get("first_response_ns")
    if first:
        extra["first_response_ms"] = float(np.median(np.asarray(first))) / 1e6
        extra["streams"] = len(first)
        extra["stream_reopens"] = int(side.counters.get("stream_reopens", 0))
    if "batch_rows" in side.counters:
        rows = side.counters["batch_rows"]
        extra["rows"] = int(rows)
        extra["batches"] = int(side.counters.get("batch_jobs", 0))
        extra["rows_per_s"] = rows / window_s if window_s > 0 else 0.0
    sources = {
        name.removeprefix("edge_source:"): histogram
        for name, histogram in side.histograms.items()
        if name.startswith("edge_source:")
    }
    if sources:
        answers = sum(h.total for h in sources.values())
        extra["sources"] = {
            source: {
                "count": h.total,
                "share": h.total / answers if answers else 0.0,
                "p50_ms": h.percentile_ns(50) / 1e6,
                "p99_ms": h.percentile_ns(99) / 1e6,
            }
            for source, h in sorted(sources.items())
        }
        cache = sources.get("cache")
        extra["cache_hit_rate"] = (cache.total if cache else 0) / answers if answers else 0.0
    return extra


def judge_locust(
    recorder: Recorder, processes: list[ProcessSummary], *, interrupted: bool, distributed: bool
) -> Verdict:
    """The harness's verdict (``judge_run``) on a Locust test: its users are a closed loop over
    the network, so a CPU-saturated load-generating process is the same *warning*, with the same
    limit, for each process; a distributed worker whose last report never came makes the run
    INVALID, as interruption and an empty run do."""
    generators = [
        GeneratorLoad(
            p.cpu_s,
            p.wall_s,
            name=f"Locust process {p.pid} on {p.hostname}",
            advice="; add processes (--processes N) or workers",
        )
        for p in processes
    ]
    missing = [p.client_id for p in processes if distributed and not p.final]
    return judge_run(
        recorder,
        RunStats(interrupted=interrupted),
        mode="closed",  # Locust users send the next request when the last one ended
        in_process=False,
        generators=generators,
        missing_reports=missing,
    )
