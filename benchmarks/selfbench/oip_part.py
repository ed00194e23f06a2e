"""The Open Inference Protocol drivers' cost, against servelab's own targets serving the digits
model (64 features a row): ``--protocol oip`` over REST vs servelab's own contract with the same
rows (client CPU per request), and over gRPC vs a bare grpc.aio ``ModelInfer`` client
(``bare_grpc.py oip``; calls/s). ABBA pairs, medians, as the gRPC part does."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from benchmarks.selfbench.common import Cores, Row, abba, row_from_result, servelab_run
from benchmarks.selfbench.grpc_part import _bare

SECTION = "oip"
OIP = ["--protocol", "oip", "--model-name", "digits", "--model", "digits"]


def _ours(args: list[str], name: str, label: str, work: Path, cores: Cores) -> Row:
    result, _ = servelab_run(args, out=work / f"oip-{name}.json", cpus=cores.client)
    return row_from_result(SECTION, label, "servelab target, digits", result)


def measure(cores: Cores, work: Path, *, concurrency: int, seconds: float, pairs: int) -> list[Row]:
    from loadtests.jobs.launch import launch_target

    load = ["--concurrency", str(concurrency), "--duration", f"{seconds:g}s", "--warmup", "0s"]
    rows = []
    with launch_target("rest", model_spec="digits") as target:
        if cores.server:
            os.sched_setaffinity(target.pid, cores.server)
        base = ["--target", "rest", "--url", target.url, *load]
        native = [*base, "--model", "digits"]  # 64-wide rows, servelab's contract

        def oip() -> Row:
            return _ours([*base, *OIP], "rest", "servelab run --protocol oip (REST)", work, cores)

        def own() -> Row:
            return _ours(native, "native", "servelab run (REST, own contract)", work, cores)

        rows += abba(oip, own, pairs)
    with launch_target("grpc", model_spec="digits") as target:
        if cores.server:
            os.sched_setaffinity(target.pid, cores.server)
        args = ["--target", "grpc", "--address", target.address, *load, *OIP]

        def ours() -> Row:
            return _ours(args, "grpc", "servelab run --protocol oip (gRPC)", work, cores)

        def bare() -> Row:
            row = _bare(target.address, "oip", cores, concurrency, seconds)
            return dataclasses.replace(row, section=SECTION, server="servelab target, digits")

        rows += abba(ours, bare, pairs)
    return rows
