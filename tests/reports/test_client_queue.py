"""The client queue (dispatch to wire) in reports: beside intended-start and service latency where
the driver saw the wire, "—" where it did not (never 0), one line when its p99 is over 1 ms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from loadtests.cli.app import main
from loadtests.results.result import write_result
from reports import charts
from reports.analysis import Analysis, analyse
from reports.buckets import merge_buckets
from reports.load import group_cells, load_runs
from reports.tables import ABSENT, CELL_HEADERS, INVALID_HEADERS, cell_rows, invalid_rows, number
from tests.reports.factory import GOLDEN, drawn, golden, recorded_result, write_document

SERVICE = CELL_HEADERS.index("service p50 / p99 ms")
QUEUE = CELL_HEADERS.index("client queue p50 / p99 ms")


def _analysed(tmp_path: Path, *results: dict[str, Any]) -> Analysis:
    """``results`` written as result files, then every result file in ``tmp_path`` analysed."""
    for index, result in enumerate(results):
        write_result(tmp_path / f"run-{index}.json", result)
    return analyse(group_cells(load_runs([str(tmp_path)]).runs), resamples=200)


def _p50_p99(block: dict[str, float]) -> str:
    return f"{number(block['p50'])} / {number(block['p99'])}"


def _queue_lines(analysis: Analysis) -> list[str]:
    return [note for note in analysis.notes if "client queue" in note]


def test_cell_table_shows_client_queue_beside_intended_and_service_latency(
    tmp_path: Path,
) -> None:
    result = recorded_result(queue_ms=3.0, label="queued")
    analysis = _analysed(tmp_path, result)
    summary = result["summary"]
    (row,) = cell_rows(analysis)
    assert CELL_HEADERS[SERVICE - 2 : QUEUE + 1] == (
        "p50 ms [95% CI]", "p99 ms [95% CI]", "service p50 / p99 ms", "client queue p50 / p99 ms",
    )  # fmt: skip
    assert row[SERVICE] == _p50_p99(summary["service_latency_ms"]) == "2.30 / 2.60"
    assert row[QUEUE] == _p50_p99(summary["client_queue_ms"]) == "1.49 / 2.97"
    (stats,) = analysis.stats.values()
    # pooled from the histogram by HdrHistogram's rule: the result file's own figures
    assert stats.client_queue_p50_ms == summary["client_queue_ms"]["p50"]
    assert stats.client_queue_p99_ms == summary["client_queue_ms"]["p99"]
    assert stats.service_p50_ms == summary["service_latency_ms"]["p50"]


def test_client_queue_the_driver_could_not_see_is_a_dash_never_zero(tmp_path: Path) -> None:
    hidden = recorded_result(queue_ms=3.0, wire_seen=False, target="grpc")
    assert hidden["summary"]["client_queue_ms"] is None
    assert hidden["histograms"]["client_queue"] is None
    write_document(golden("invalid-overload.json"), tmp_path / "v1-invalid.json")
    write_document(golden("rest-laptop.json"), tmp_path / "v1-rest.json")
    analysis = _analysed(tmp_path, hidden)  # the v1 files load through the upgrade: null
    rows = {row[0]: row for row in cell_rows(analysis)}
    assert len(rows) == 3
    for name, row in rows.items():
        assert row[QUEUE] == ABSENT, name
        assert row[SERVICE] != ABSENT, name  # service latency is always measured
    assert all(s.client_queue_p99_ms is None for s in analysis.stats.values())
    (invalid,) = invalid_rows(analysis.invalid_runs)
    assert invalid[INVALID_HEADERS.index("client queue p50 / p99 ms")] == ABSENT
    assert _queue_lines(analysis) == []  # 3 ms of hidden waiting, but nothing seen to report


def test_a_cell_pools_client_queue_only_when_every_repeat_saw_the_wire(tmp_path: Path) -> None:
    seen = recorded_result(queue_ms=3.0, label="pooled")
    also = recorded_result(queue_ms=0.5, label="pooled", requests=200)
    also["run"]["repeat"] = 1
    analysis = _analysed(tmp_path, seen, also)
    (cell,) = analysis.cells
    pooled = merge_buckets([run.client_queue for run in cell.runs if run.client_queue])
    (stats,) = analysis.stats.values()
    assert stats.client_queue_p50_ms == pooled.percentile_ms(50.0)
    assert stats.client_queue_p99_ms == pooled.percentile_ms(99.0)
    assert stats.client_queue_p50_ms < seen["summary"]["client_queue_ms"]["p50"]  # pooled
    v1 = golden("rest-laptop.json")
    v1["run"].update(seen["run"], repeat=2)  # the same configuration, measured by v1
    write_document(v1, tmp_path / "run-9.json")
    mixed = _analysed(tmp_path)
    (row,) = cell_rows(mixed)
    assert row[QUEUE] == ABSENT  # a figure one repeat lacks is not the pool's figure


@pytest.mark.parametrize(
    ("target", "mode", "advice"),
    [
        ("rest", "closed", "raise --connections"),
        ("grpc-stream", "closed", "raise --connections"),
        ("batch", "open", "raise --connections"),
        ("edge", "closed", "lower --concurrency"),
        ("stream", "open", "lower --rate"),
    ],
)
def test_client_queue_over_1_ms_at_p99_gets_one_line_naming_the_knob(
    tmp_path: Path, target: str, mode: str, advice: str
) -> None:
    result = recorded_result(queue_ms=3.0, target=target, mode=mode)
    # the engine's verdict said it too; the report says it once, with the table's figure
    assert any("client queue p99" in note for note in result["verdict"]["notes"])
    analysis = _analysed(tmp_path, result)
    (cell,) = analysis.cells
    p99 = result["summary"]["client_queue_ms"]["p99"]
    assert _queue_lines(analysis) == [
        f"{cell.key.name}: requests waited in the client before reaching the wire "
        f"(client queue p99 {p99:,.2f} ms): {advice}"
    ]


def test_client_queue_at_or_under_1_ms_gets_no_line(tmp_path: Path) -> None:
    result = recorded_result(queue_ms=1.0)
    queue = result["summary"]["client_queue_ms"]
    assert 0.9 < queue["p99"] <= 1.0 < queue["max"]  # a few waited longer, 1 % did not
    analysis = _analysed(tmp_path, result)
    assert _queue_lines(analysis) == []
    (row,) = cell_rows(analysis)
    assert row[QUEUE] == _p50_p99(queue)  # shown in the table all the same


def test_verdict_notes_are_shown_where_warnings_are(tmp_path: Path) -> None:
    result = recorded_result(queue_ms=0.2, mode="open", label="noted")
    note = "target saturated: served 150.0 of 200.0 req/s offered; latency grows with the run"
    result["verdict"]["notes"] = [note]
    result["verdict"]["warnings"] = ["generator-bound: throughput is the client's limit"]
    repeat = orjson.loads(orjson.dumps(result))
    repeat["run"]["repeat"] = 1
    analysis = _analysed(tmp_path, result, repeat)
    (cell,) = analysis.cells
    assert analysis.notes == [
        f"{cell.key.name}: generator-bound: throughput is the client's limit",
        f"{cell.key.name}: {note}",  # once for the cell, not once per repeat
    ]


def test_report_outputs_carry_client_queue_and_the_queue_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queued = recorded_result(queue_ms=12.5, label="queued")
    write_result(tmp_path / "queued.json", queued)
    write_result(
        tmp_path / "hidden.json", recorded_result(queue_ms=12.5, wire_seen=False, label="hidden")
    )
    out = tmp_path / "results-report"
    assert main(["report", str(tmp_path), "--out", str(out)]) == 0
    capsys.readouterr()
    queue = queued["summary"]["client_queue_ms"]
    shown = _p50_p99(queue)
    assert shown == "6.19 / 12.4"
    line = (
        "rest · closed c=8 · laptop · queued: requests waited in the client before reaching "
        f"the wire (client queue p99 {queue['p99']:,.2f} ms): raise --connections"
    )
    summary = (out / "summary.md").read_text()
    rows = {row.split(" | ")[0]: row.split(" | ") for row in summary.splitlines()}
    assert rows["| rest · closed c=8 · laptop · queued"][QUEUE] == shown
    assert rows["| rest · closed c=8 · laptop · hidden"][QUEUE] == ABSENT
    notes = summary[summary.index("## Notes") :]
    assert notes.count("client queue p99") == 1
    assert f"- {line}" in notes
    html = (out / "index.html").read_text()
    assert "<th>client queue p50 / p99 ms</th>" in html
    assert f'<td class="num">{shown}</td>' in html
    assert f'<td class="num">{ABSENT}</td>' in html
    assert f"<li>{line}</li>" in html
    report = orjson.loads((out / "comparison.json").read_bytes())
    cells = {cell["label"]: cell for cell in report["cells"]}
    assert cells["queued"]["client_queue_p99_ms"] == queue["p99"]
    assert cells["hidden"]["client_queue_p99_ms"] is None
    assert cells["hidden"]["client_queue_p50_ms"] is None
    assert line in report["notes"]
    assert "charts/intended-vs-service.png" in report["charts"]


def test_intended_vs_service_draws_the_client_queue_where_the_wire_was_seen(
    tmp_path: Path,
) -> None:
    result = recorded_result(queue_ms=3.0, label="queued")
    write_document(golden("invalid-overload.json"), tmp_path / "v1-overload.json")
    analysis = _analysed(tmp_path, result)
    figure = charts.intended_vs_service(analysis.cells)
    assert figure is not None
    panels = {axes.get_title(): axes for axes in figure.axes}
    grid = charts.spectrum_percentiles()
    queued_cell = next(cell for cell in analysis.cells if cell.key.label == "queued")
    run = queued_cell.runs[0]
    assert run.latency is not None
    assert run.service is not None
    assert run.client_queue is not None
    intended, served, waited = panels[queued_cell.key.name].lines
    np.testing.assert_array_equal(intended.get_ydata(), run.latency.percentiles_ms(grid))
    np.testing.assert_array_equal(served.get_ydata(), run.service.percentiles_ms(grid))
    np.testing.assert_array_equal(waited.get_ydata(), run.client_queue.percentiles_ms(grid))
    assert [line.get_label() for line in (served, waited)] == [
        "service (from the wire)", "client queue (to the wire)",
    ]  # fmt: skip
    # closed loop: the gap between intended start and service is exactly the client queue
    gap = np.asarray(intended.get_ydata()) - np.asarray(served.get_ydata())
    assert gap[0] == pytest.approx(drawn(waited.get_ydata())[0], abs=0.1)
    overloaded = next(title for title in panels if title.endswith("[INVALID]"))
    lines = panels[overloaded].lines  # a v1 file: no client queue, service from dispatch
    assert [line.get_label() for line in lines] == [
        "from intended start", "service (from dispatch)",
    ]  # fmt: skip
    (tmp_path / "intended-vs-service.png").write_bytes(charts.png_bytes(figure))


def test_a_mangled_client_queue_block_is_skipped_with_a_warning(tmp_path: Path) -> None:
    result = recorded_result(queue_ms=3.0)
    result["summary"]["client_queue_ms"] = {"p50": 1.0}
    write_document(result, tmp_path / "mangled.json")
    loaded = load_runs([str(tmp_path / "mangled.json"), str(GOLDEN / "rest-laptop.json")])
    assert len(loaded.runs) == 1
    assert loaded.warnings == [
        f"{tmp_path / 'mangled.json'}: malformed result, summary.client_queue_ms is incomplete"
    ]
