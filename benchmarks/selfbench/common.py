"""What every part of the self-benchmark shares: core pinning, child processes with their CPU and
peak RSS, ``servelab run`` as a child, and the rows the table and the JSON are made of."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVELAB = [sys.executable, "-m", "loadtests.cli"]
CHILD_LIMIT_S = 900.0  # no child of the benchmark runs longer than this


@dataclass(frozen=True)
class Cores:
    """Where servers and clients run: different cores when the machine has two."""

    server: set[int] | None
    client: set[int] | None

    @classmethod
    def pick(cls) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None)
        return cls({cpus[0]}, {cpus[-1]})

    def describe(self) -> str:
        if self.server is None:
            return "one core: server and client share it"
        return f"server on CPU {min(self.server)}, client on CPU {min(self.client or {0})}"


@dataclass
class Row:
    """One measured client against one server (or one in-process figure)."""

    section: str
    client: str
    server: str
    rate_per_s: float | None = None  # requests (calls, messages) per second, client-counted
    cpu_us_per_request: float | None = None  # client CPU per request
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_counted: int | None = None  # requests the server itself counted in the window
    client_counted: int | None = None
    failures: int = 0
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_core_rate(self) -> float | None:
        """Requests per second of one fully used client core (1 / CPU per request)."""
        if not self.cpu_us_per_request:
            return None
        return 1e6 / self.cpu_us_per_request


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str
    cpu_s: float  # the child's (and its waited-for children's) user + system CPU
    max_rss_kb: int
    wall_s: float


def run_child(
    command: Sequence[str],
    *,
    cpus: set[int] | None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = CHILD_LIMIT_S,
) -> Finished:
    """Run ``command`` pinned to ``cpus``; its own CPU time and peak RSS come from ``wait4``."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=err,
            text=True,
            cwd=cwd or ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,  # noqa: PLW1509
        )
        killer = threading.Timer(timeout_s, process.kill)  # bounded, whatever the child does
        killer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    return Finished(
        process.returncode,
        stdout,
        stderr,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss,
        time.perf_counter() - started,
    )


def servelab_run(
    args: Sequence[str], *, out: Path, cpus: set[int] | None
) -> tuple[dict[str, Any], Finished]:
    """``servelab run ARGS --out OUT`` pinned to ``cpus``; the result document and the child."""
    finished = run_child([*SERVELAB, "run", *args, "--out", str(out), "--no-progress"], cpus=cpus)
    if finished.returncode != 0 or not out.exists():
        tail = finished.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"servelab run {' '.join(args)} failed: {' | '.join(tail)}")
    return json.loads(out.read_text()), finished


def row_from_result(
    section: str, client: str, server: str, result: dict[str, Any], note: str = ""
) -> Row:
    """A row from a servelab result: rate over the window, generator CPU per request."""
    summary = result["summary"]
    requests = int(summary["requests"])
    cpu_s = float(result["extra"]["generator"]["cpu_s"])
    return Row(
        section=section,
        client=client,
        server=server,
        rate_per_s=requests / float(summary["window_s"]),
        cpu_us_per_request=cpu_s / requests * 1e6 if requests else None,
        p50_ms=summary["latency_ms"]["p50"],
        p99_ms=summary["latency_ms"]["p99"],
        client_counted=requests,
        failures=int(summary["failures"]),
        note=note,
    )


_COUNTER = re.compile(r'^servelab_requests_total\{[^}]*route="/v1/predict"[^}]*\} ([0-9.e+]+)$')


def rest_target_counted(url: str) -> int:
    """Requests the REST target says it answered on ``/v1/predict`` (its Prometheus counter)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return int(sum(float(m.group(1)) for line in text.splitlines() if (m := _COUNTER.match(line))))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _median_row(rows: list[Row], pairs: int) -> Row:
    """One row of several runs of the same client: the median rate, CPU and percentiles; every
    run's rate in ``extra["runs_per_s"]`` and their spread, (max - min) / median, in
    ``extra["spread"]``."""
    first = rows[0]

    def median(values: list[float | None]) -> float | None:
        known = [value for value in values if value is not None]
        return statistics.median(known) if known else None

    rates = [row.rate_per_s for row in rows if row.rate_per_s is not None]
    rate = median(list(rates))
    spread = (max(rates) - min(rates)) / rate if rates and rate else None
    note = f"median of {len(rows)} runs ({pairs} ABBA pair{'s' if pairs > 1 else ''})"
    if spread is not None and len(rates) > 1:
        note += f", rates spread {spread:.0%}"
    return Row(
        first.section, first.client, first.server,
        rate_per_s=rate,
        cpu_us_per_request=median([r.cpu_us_per_request for r in rows]),
        p50_ms=median([r.p50_ms for r in rows]), p99_ms=median([r.p99_ms for r in rows]),
        client_counted=sum(r.client_counted or 0 for r in rows),
        failures=sum(r.failures for r in rows),
        note=f"{first.note + '; ' if first.note else ''}{note}",
        extra={**first.extra, "runs_per_s": rates, "spread": spread},
    )  # fmt: skip


def abba(first: Callable[[], Row], second: Callable[[], Row], pairs: int) -> list[Row]:
    """``pairs`` rounds of A B B A (so drift on a shared machine hits both clients alike); one
    median row per client, ``first``'s then ``second``'s."""
    ones: list[Row] = []
    twos: list[Row] = []
    for _ in range(pairs):
        ones.append(first())
        twos += [second(), second()]
        ones.append(first())
    return [_median_row(ones, pairs), _median_row(twos, pairs)]
