"""REST: servelab's REST driver (fast and aiohttp clients) vs Locust FastHttpUser vs wrk, at equal
concurrency, one request in flight per connection, against a fast static server (nginx, else a
Python one) and the FastAPI target. The server counts what it served where it can."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.selfbench.common import (
    Cores,
    Row,
    rest_target_counted,
    row_from_result,
    run_child,
    servelab_run,
)
from benchmarks.static_server import static_server

HERE = Path(__file__).resolve().parent
SECTION = "rest"
Counter = Callable[[], int | None]


def _settled(counted: Counter) -> int | None:
    """The server's count once it stops moving (nginx logs a request just after answering)."""
    last = counted()
    for _ in range(50):  # polled, bounded (~1 s)
        time.sleep(0.02)
        now = counted()
        if now == last:
            return now
        last = now
    return last


def _measured(counted: Counter, measure: Callable[[], Row | None]) -> Row | None:
    before = _settled(counted)
    row = measure()
    after = _settled(counted)
    if row is not None and before is not None and after is not None:
        row.server_counted = after - before
    return row


def _servelab(url: str, server: str, client: str, args: list[str], ctx: Context) -> Row:
    out = ctx.work / f"servelab-{client}-{server.split(maxsplit=1)[0]}.json"
    result, _ = servelab_run(["--target", "rest", "--url", url, *args], out=out, cpus=ctx.cpus)
    name = {"fast": "servelab run (fast client)", "aiohttp": "servelab run --client aiohttp",
            "busy": "servelab run --busy-poll"}[client]  # fmt: skip
    note = "spins: a whole core whatever the load" if client == "busy" else ""
    return row_from_result(SECTION, name, server, result, note)


def _locust(url: str, server: str, ctx: Context) -> Row:
    report = ctx.work / f"locust-{server.split(maxsplit=1)[0]}.json"
    concurrency, seconds = ctx.concurrency, ctx.seconds
    command = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locust_plain.py"), "--headless",
        "--only-summary", "-u", str(concurrency), "-r", "100000", "-t", f"{seconds + 1:g}s",
        "--host", url, "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]  # fmt: skip
    finished = run_child(command, cpus=ctx.cpus, env={"SELFBENCH_OUT": str(report)})
    if finished.returncode != 0 or not report.exists():
        raise RuntimeError(f"locust failed: {finished.stderr.strip()[-300:]}")
    data = json.loads(report.read_text())
    window = data["requests_in_window"]
    return Row(
        SECTION, "Locust FastHttpUser", server,
        rate_per_s=window / data["wall_s"],
        cpu_us_per_request=data["cpu_s"] / window * 1e6 if window else None,
        p50_ms=data["p50_ms"], p99_ms=data["p99_ms"],
        client_counted=data["requests"], failures=data["failures"],
        note="Locust's bucketed percentiles",
    )  # fmt: skip


_WRK_LATENCY = re.compile(r"^\s*(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)")
_WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _wrk(url: str, server: str, ctx: Context) -> Row | None:
    binary = shutil.which("wrk")
    if binary is None:
        return None
    command = [binary, "-t1", f"-c{ctx.concurrency}", f"-d{ctx.seconds:g}s", "--latency",
               "-s", str(HERE / "post.lua"), f"{url}/v1/predict"]  # fmt: skip
    finished = run_child(command, cpus=ctx.cpus)
    total, rate = _WRK_TOTAL.search(finished.stdout), _WRK_RATE.search(finished.stdout)
    if finished.returncode != 0 or total is None or rate is None:
        raise RuntimeError(f"wrk failed: {finished.stdout[-300:]} {finished.stderr[-300:]}")
    latency = {m.group(1): float(m.group(2)) * _UNIT_MS[m.group(3)]
               for m in _WRK_LATENCY.finditer(finished.stdout)}  # fmt: skip
    requests = int(total.group(1))
    return Row(
        SECTION, "wrk (C, 1 thread)", server,
        rate_per_s=float(rate.group(1)),
        cpu_us_per_request=finished.cpu_s / requests * 1e6 if requests else None,
        p50_ms=latency.get("50"), p99_ms=latency.get("99"),
        client_counted=requests,
        note="CPU includes wrk's start-up",
    )  # fmt: skip


@dataclass(frozen=True)
class Context:
    work: Path
    cpus: set[int] | None  # the clients' core
    concurrency: int
    seconds: float


def _clients(url: str, server: str, counted: Counter, ctx: Context) -> list[Row]:
    run_args = ["--concurrency", str(ctx.concurrency), "--duration", f"{ctx.seconds:g}s",
                "--warmup", "0s"]  # fmt: skip
    measures: list[Callable[[], Row | None]] = [
        lambda: _servelab(url, server, "fast", run_args, ctx),
        lambda: _servelab(url, server, "busy", [*run_args, "--busy-poll"], ctx),
        lambda: _servelab(url, server, "aiohttp", [*run_args, "--client", "aiohttp"], ctx),
        lambda: _locust(url, server, ctx),
        lambda: _wrk(url, server, ctx),
    ]
    rows = [_measured(counted, measure) for measure in measures]
    return [row for row in rows if row is not None]


def measure(cores: Cores, work: Path, *, concurrency: int, seconds: float) -> list[Row]:
    """Every client against the static server, then against the FastAPI target."""
    from loadtests.jobs.launch import launch_target

    ctx = Context(work, cores.client, concurrency, seconds)
    rows: list[Row] = []
    with static_server(work / "static", cpus=cores.server) as static:
        server = "nginx" if static.name == "nginx" else "static (Python)"
        rows += _clients(static.url, server, static.served, ctx)
    with launch_target("rest", model_spec="reference") as target:
        if cores.server:
            os.sched_setaffinity(target.pid, cores.server)
        url = target.url
        rows += _clients(url, "FastAPI target", lambda: rest_target_counted(url), ctx)
    return rows


def measure_capacity(cores: Cores, work: Path, *, concurrency: int, seconds: float) -> float:
    """servelab's closed-loop req/s against the static server (for the schedule part alone)."""
    ctx = Context(work, cores.client, concurrency, seconds)
    run_args = ["--concurrency", str(concurrency), "--duration", f"{seconds:g}s", "--warmup", "0s"]
    with static_server(work / "static-capacity", cpus=cores.server) as static:
        row = _servelab(static.url, static.name, "fast", run_args, ctx)
    return row.rate_per_s or 0.0
