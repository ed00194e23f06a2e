"""``servelab demo``: start the REST and gRPC targets on free loopback ports and answer through
all five serving patterns, with the canonical schema checked on every answer.

The main job until ``servelab bench`` lands: a minute-long look at what servelab serves.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtests.engine.loop import run as run_on_loop
from loadtests.jobs.launch import LaunchedTarget, launch_target
from targets.batch import score_file
from targets.edge.runtime import EdgeConfig, EdgeRuntime
from targets.rest.client import RestClient
from targets.rpc.client import PredictClient
from targets.schema import response_problem
from targets.spec import load_model
from targets.streaming import StreamConsumer

ROW = [1.0, 2.0, 3.0, 4.0]
ROWS = [[1.0, 2.0, 3.0], [], [10.0]]
Row = tuple[str, str, str, str, str]


def _check(answer: dict[str, Any], rows: int) -> str:
    problem = response_problem(answer, rows)
    return "ok" if problem is None else f"SCHEMA: {problem}"


def _row(pattern: str, how: str, answer: dict[str, Any], rows: int, seconds: float) -> Row:
    predictions = ", ".join(f"{value:g}" for value in answer.get("predictions", []))
    return (pattern, how, f"[{predictions}]", f"{seconds * 1e3:.2f}", _check(answer, rows))


async def _timed(call: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    answer = await call()
    return answer, time.perf_counter() - started


def _rest_rows(rest: LaunchedTarget) -> list[Row]:
    rows = []
    with RestClient(rest.url) as client:
        for label, call in (
            ("POST /v1/predict", lambda: client.predict(ROW)),
            ("POST /v2/predict (3 rows)", lambda: client.post("/v2/predict", {"rows": ROWS}).body),
        ):
            started = time.perf_counter()
            answer = call()
            elapsed = time.perf_counter() - started
            rows.append(_row("REST", label, answer, 1 if "v1" in label else 3, elapsed))
    return rows


async def _grpc_rows(grpc_target: LaunchedTarget, model_spec: str) -> list[Row]:
    async with PredictClient.open(grpc_target.address) as client:
        unary, unary_s = await _timed(lambda: client.predict([ROW]))
        several, several_s = await _timed(lambda: client.predict(ROWS))
    rows = [
        _row("gRPC", "unary Predict", unary, 1, unary_s),
        _row("gRPC", "unary Predict (3 rows)", several, 3, several_s),
    ]
    consumer = StreamConsumer(load_model(model_spec))
    async with consumer:
        answers = await asyncio.gather(*(consumer.submit({"instances": row}) for row in ROWS))
    latency = max(answer["metadata"]["latency_ms"] for answer in answers) / 1e3
    merged = {
        "predictions": [value for answer in answers for value in answer["predictions"]],
        "metadata": answers[0]["metadata"],
    }
    rows.append(_row("streaming", "3 events, micro-batched", merged, 3, latency))
    return rows


def _batch_row(model_spec: str) -> Row:
    with tempfile.TemporaryDirectory(prefix="servelab-demo-") as workdir:
        source = Path(workdir) / "input.jsonl"
        lines = [json.dumps({"instances": [index % 7, index % 5, 1.0]}) for index in range(10_000)]
        source.write_text("\n".join(lines) + "\n")
        report = score_file(source, Path(workdir) / "out.jsonl", model=load_model(model_spec))
        first = json.loads((Path(workdir) / "out.jsonl").read_text().splitlines()[0])
    how = f"10,000 rows in {report.batches} batches ({report.rows / report.elapsed_s:,.0f} rows/s)"
    return _row("batch", how, first, 1, report.elapsed_s)


def _edge_rows(rest: LaunchedTarget, model_spec: str) -> list[Row]:
    config = EdgeConfig(model=model_spec, remote=rest.url, quant="int8:8")
    runtime = EdgeRuntime.from_config(config)
    rows = []
    try:
        for label in ("first call", "same row again"):
            started = time.perf_counter()
            answer = runtime.handle({"instances": ROW})
            source = answer.get("metadata", {}).get("source", "?")
            rows.append(
                _row("edge", f"{label} → {source}", answer, 1, time.perf_counter() - started)
            )
    finally:
        runtime.close()
    return rows


def run_demo(model_spec: str) -> int:
    """Answer once through every pattern; 0 when every answer met the contract."""
    load_model(model_spec)  # a bad SPEC is one line, before anything starts
    console = Console()
    with (
        console.status("starting the REST and gRPC targets on 127.0.0.1…"),
        launch_target("rest", model_spec=model_spec) as rest,
        launch_target("grpc", model_spec=model_spec) as grpc_target,
    ):
        rows = _rest_rows(rest)
        rows += run_on_loop(_grpc_rows(grpc_target, model_spec))
        rows += _edge_rows(rest, model_spec)
    rows.append(_batch_row(model_spec))
    table = Table(title=f"servelab demo — model {model_spec}")
    for column in ("pattern", "call", "predictions", "ms", "schema"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        "Next: `servelab run --target rest --rate 500 --duration 10s` measures one pattern "
        "under load (see README)."
    )
    return 0 if all(row[4] == "ok" for row in rows) else 1
