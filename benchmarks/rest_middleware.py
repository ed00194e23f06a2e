"""What the REST target's extras cost: servelab's app vs bare FastAPI apps, same route and model.

Each server runs alone under uvicorn (uvloop, httptools) pinned to CPU 0; an aiohttp + uvloop
closed-loop client pinned to CPU 1 (where the machine has two) drives it for a fixed time. Rounds
alternate the apps so drift on a shared machine hits all of them alike. Prints req/s per app and
the ratio servelab / baseline; asserts nothing about time.

    python benchmarks/rest_middleware.py [--seconds 5] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
APPS = {
    "servelab": ["-m", "loadtests.cli", "serve", "rest", "--port", "0", "--log-level", "info"],
    "bare-raw": ["benchmarks/serve_bare.py", "raw"],
    "bare-pydantic": ["benchmarks/serve_bare.py", "pydantic"],
}
BODY = b'{"instances": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]}'


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def _start(
    name: str, workdir: Path, server_cpus: set[int] | None
) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / f"{name}-{time.monotonic_ns()}.json"
    log = (workdir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, *APPS[name], "--ready-file", str(ready)],
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    if server_cpus:
        os.sched_setaffinity(process.pid, server_cpus)
    deadline = time.monotonic() + 30
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{name} did not start; see {workdir / (name + '.log')}")
        time.sleep(0.02)  # polling the ready file
    return process, json.loads(ready.read_text())["url"]


async def _drive(url: str, seconds: float, concurrency: int) -> float:
    """Closed loop: ``concurrency`` connections, one request in flight each; returns req/s."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": "application/json"}
    count = 0
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(stop_at: float) -> None:
            nonlocal count
            while time.perf_counter() < stop_at:
                async with session.post(url + "/v1/predict", data=BODY, headers=headers) as reply:
                    await reply.read()
                    if reply.status != 200:
                        raise SystemExit(f"{url} answered {reply.status}")
                count += 1

        await asyncio.gather(*(worker(time.perf_counter() + 1.0) for _ in range(concurrency)))
        count = 0
        started = time.perf_counter()
        await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    options = parser.parse_args()
    server_cpus, client_cpus = _cpus()
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)
    runner: Callable[[Coroutine[Any, Any, float]], float]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    results: dict[str, list[float]] = {name: [] for name in APPS}
    with tempfile.TemporaryDirectory(prefix="servelab-bench-") as tmp:
        for round_number in range(options.rounds):
            for name in APPS:
                process, url = _start(name, Path(tmp), server_cpus)
                try:
                    rate = runner(_drive(url, options.seconds, options.concurrency))
                finally:
                    process.terminate()
                    process.wait(30)
                results[name].append(rate)
                print(f"round {round_number + 1} {name:14s} {rate:9.0f} req/s", flush=True)
    pinned = f"server CPU {server_cpus}, client CPU {client_cpus}" if server_cpus else "unpinned"
    setup = f"{options.rounds} rounds x {options.seconds:g}s, c={options.concurrency}, {pinned}"
    print(f"\nmedian of {setup}")
    medians = {name: statistics.median(rates) for name, rates in results.items()}
    for name, rate in medians.items():
        print(f"  {name:14s} {rate:9.0f} req/s")
    for baseline in ("bare-raw", "bare-pydantic"):
        ratio = medians["servelab"] / medians[baseline]
        print(
            f"  servelab / {baseline:14s} = {ratio:.3f}  (extras cost {100 * (1 - ratio):+.1f} %)"
        )


if __name__ == "__main__":
    main()
