"""Every report opens with how each run was run: duration, warmup, load and start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from reports.analysis import analyse
from reports.build import build_report
from reports.conditions import (
    RUN_HEADERS,
    conditions_line,
    duration_text,
    started_text,
    warmup_text,
)
from reports.load import Run, group_cells, load_runs
from tests.reports.factory import BENCH, GOLDEN, golden, write_variant

OPEN_LOOP = {"warmup_s": 1.5, "started_at": "2026-11-25T06:16:15+02:00"}


def _inputs(tmp_path: Path) -> list[str]:
    """The quick bench (2 s after a 0.5 s warmup), an open-loop run started in another time
    zone, and an invalid run that overran its 1 s."""
    opened = write_variant("stream-open-laptop.json", tmp_path / "open.json", **OPEN_LOOP)
    return [str(BENCH), str(opened), str(GOLDEN / "invalid-overload.json")]


EXPECTED_RUNS = [  # in the order they started
    ["invalid-overload.json", "inprocess", "open 2000/s constant", "1 s (4.06 s measured)",
     "none", "2026-11-25 04:13:01 UTC", "INVALID"],
    ["open.json", "stream", "open 1000/s constant batch 8 window 2ms", "2 s", "1.5 s",
     "2026-11-25 06:16:15+02:00", "valid"],
    ["001-inprocess-c8-default-rep0.json", "inprocess", "closed c=8", "2 s", "0.5 s",
     "2026-12-02 01:19:53 UTC", "valid"],
    ["002-rest-c8-default-rep0.json", "rest", "closed c=8", "2 s", "0.5 s",
     "2026-12-02 01:19:56 UTC", "valid"],
    ["006-batch-c2-default-rep0.json", "batch", "closed c=2 batch 256", "2 s", "0.5 s",
     "2026-12-02 01:20:08 UTC", "valid"],
]  # fmt: skip


def _cells(row: str) -> list[str]:
    return re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row)


def test_page_header_states_each_runs_duration_warmup_load_and_date(tmp_path: Path) -> None:
    out = tmp_path / "report"
    build_report(_inputs(tmp_path), out)
    html = (out / "index.html").read_text()
    header = html[: html.index('<h2 id="cells">')]  # above the first figure of the report
    meta = re.findall(r'<p class="meta">(.*?)</p>', header)[1]
    assert meta == (
        "Runs: duration 1 s (4.06 s measured), 2 s · warmup none, 1.5 s, 0.5 s · load open "
        "2000/s constant, open 1000/s constant batch 8 window 2ms, closed c=8, closed c=2 batch "
        "256 · started 2026-11-25 04:13:01 UTC to 2026-12-02 01:20:08 UTC"
    )
    table = header[header.index('<h2 id="runs">') :]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table)
    assert _cells(rows[0]) == list(RUN_HEADERS)
    assert [_cells(row) for row in rows[1:]] == EXPECTED_RUNS
    assert '<a href="#runs">Runs</a>' in header

    summary = (out / "summary.md").read_text()
    assert summary.index("## Runs") < summary.index("## Cells")
    for expected in EXPECTED_RUNS:
        assert "| " + " | ".join(expected) + " |" in summary
    records = orjson.loads((out / "comparison.json").read_bytes())["runs"]
    assert [Path(r["file"]).name for r in records] == [row[0] for row in EXPECTED_RUNS]
    opened = next(r for r in records if r["file"].endswith("open.json"))
    assert opened | OPEN_LOOP == opened
    assert (opened["mode"], opened["rate_per_s"], opened["duration_s"]) == ("open", 1000.0, 2.0)
    batch = records[-1]
    assert (batch["mode"], batch["concurrency"], batch["warmup_s"]) == ("closed", 2, 0.5)


def _run(**fields: object) -> Run:
    document: Any = golden("batch-laptop.json")  # raw JSON, its run block edited
    document["run"].update(fields)
    return Run("x.json", document)


def test_each_bound_on_a_run_is_said_as_it_was_set() -> None:
    assert duration_text(_run()) == "300 requests in 1.69 s"  # a request count, not a time
    assert duration_text(_run(duration_s=600.0, requests_limit=None)) == "600 s (1.69 s measured)"
    assert duration_text(_run(partial=True)) == "300 requests in 1.69 s, stopped early"
    assert warmup_text(_run()) == "none"
    assert warmup_text(_run(warmup_s=1200)) == "1,200 s"
    assert warmup_text(_run(warmup_s=None)) == "n/a"
    assert started_text(_run(started_at=None)) == "n/a"
    assert started_text(_run(started_at="last tuesday")) == "last tuesday"


def test_the_header_line_names_a_few_kinds_and_counts_the_rest(tmp_path: Path) -> None:
    concurrency = (16, 1, 8, 2, 4)  # written in this order, started in order of concurrency
    paths = [
        str(
            write_variant(
                "rest-laptop.json",
                tmp_path / f"{n}.json",
                concurrency=c,
                started_at=f"2026-11-25T04:{10 + c:02d}:00+00:00",
            )
        )
        for n, c in enumerate(concurrency)
    ]
    line = conditions_line(analyse(group_cells(load_runs(paths).runs)))
    assert line == (
        "Runs: duration 300 requests in 0.232 s · warmup none · load closed c=1, closed c=2, "
        "closed c=4, … (5 in all) · started 2026-11-25 04:11:00 UTC to 2026-11-25 04:26:00 UTC"
    )
