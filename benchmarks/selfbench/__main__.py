"""python -m benchmarks.selfbench [--seconds 5] [--concurrency 64] [--pairs 3] [--quick]
                                 [--out FILE] [--parts rest,grpc,oip,servers,inprocess,...]

Runs every part once, servers and clients pinned to different cores where the machine has two,
prints one table and the goal ratios, and writes everything to a JSON file (default
``results/selfbench-<timestamp>.json``). Asserts nothing about time: a ratio short of its goal
is printed as such. Side-by-side comparisons run ``--pairs`` rounds of A B B A and keep each
client's median, with the spread of its rates. ``--quick`` (CI-sized): 2 s runs, one pair, 1 M-
and 10 M-request memory runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.selfbench import (
    grpc_part,
    inprocess_part,
    oip_part,
    processes_part,
    rest,
    schedule_part,
    servers_part,
)
from benchmarks.selfbench.common import Cores, Row
from benchmarks.selfbench.report import goals, print_table

PARTS = ("rest", "grpc", "oip", "servers", "inprocess", "memory", "schedule", "processes")


def _parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"--parts takes {','.join(PARTS)}; got {text!r}")
    return parts


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.selfbench", description=__doc__)
    parser.add_argument("--seconds", type=_positive(float), default=5.0, help="per measurement")
    parser.add_argument("--concurrency", type=_positive(int), default=64)
    parser.add_argument("--quick", action="store_true",
                        help="2 s runs, 1 ABBA pair, 1 M/10 M memory runs")  # fmt: skip
    parser.add_argument("--pairs", type=_positive(int), default=3,
                        help="ABBA pairs per side-by-side comparison (medians kept)")  # fmt: skip
    parser.add_argument("--parts", type=_parts, default=list(PARTS))
    parser.add_argument("--out", type=Path)
    options = parser.parse_args(argv)
    seconds = 2.0 if options.quick else options.seconds
    pairs = 1 if options.quick else options.pairs
    sizes = [1_000_000, 10_000_000] if options.quick else [10_000_000, 100_000_000]
    cores = Cores.pick()
    print(f"selfbench: {cores.describe()}; {seconds:g} s per run, concurrency "
          f"{options.concurrency}", flush=True)  # fmt: skip
    rows: list[Row] = []
    work = Path(tempfile.mkdtemp(prefix="servelab-selfbench-"))
    try:
        for part in options.parts:
            print(f"selfbench: {part} ...", flush=True)
            try:
                rows += _measure(part, cores, work, rows, options.concurrency, seconds, sizes,
                                 pairs)  # fmt: skip
            except RuntimeError as exc:  # one part failing keeps what the others measured
                print(f"selfbench: {part} failed: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("selfbench: interrupted; what was measured is kept", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    checks = goals(rows)
    print_table(rows, checks)
    out = options.out or Path("results") / f"selfbench-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"schema_version": 1, "kind": "selfbench", "cores": cores.describe(),
                "seconds": seconds, "pairs": pairs, "concurrency": options.concurrency,
                "rows": [asdict(row) for row in rows], "goals": checks}  # fmt: skip
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2))
    temporary.replace(out)  # atomic: a reader never sees half a file
    print(f"selfbench: wrote {out}")
    return 0


def _measure(part: str, cores: Cores, work: Path, rows: list[Row], concurrency: int,
             seconds: float, sizes: list[int], pairs: int) -> list[Row]:  # fmt: skip
    if part == "rest":
        return rest.measure(cores, work, concurrency=concurrency, seconds=seconds)
    if part == "grpc":
        return grpc_part.measure(cores, work, concurrency=concurrency, seconds=seconds, pairs=pairs)
    if part == "servers":
        return servers_part.measure(
            cores, work, concurrency=concurrency, seconds=seconds, pairs=pairs
        )
    if part == "oip":
        return oip_part.measure(cores, work, concurrency=concurrency, seconds=seconds, pairs=pairs)
    if part == "inprocess":
        return [inprocess_part.overhead(cores, 5_000_000),
                *inprocess_part.reference(cores, work, tight_requests=5_000_000,
                                          harness_requests=300_000)]  # fmt: skip
    if part == "memory":
        return inprocess_part.memory(cores, work, sizes)
    if part == "processes":
        return processes_part.measure(cores, work, seconds=seconds, pairs=pairs)
    capacity = next((row.rate_per_s for row in rows if row.client.startswith("servelab run (fast")
                     and row.server != "FastAPI target"), None)  # fmt: skip
    if capacity is None:  # the schedule part needs the REST part's capacity figure
        capacity = rest.measure_capacity(cores, work, concurrency=concurrency, seconds=seconds)
    return schedule_part.measure(
        cores, work, closed_per_s=capacity, connections=concurrency, seconds=seconds
    )


if __name__ == "__main__":
    sys.exit(main())
