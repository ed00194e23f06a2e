"""``servelab report``: every output written, self-contained and escaped; bad inputs skipped."""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path

import orjson
import pytest

from loadtests.cli.app import main
from reports.tables import CELL_HEADERS
from tests.conftest import ServelabCli
from tests.reports.factory import GOLDEN, MIX, golden, write_document, write_variant

OUTPUTS = ("index.html", "summary.md", "comparison.csv", "comparison.json")


def test_report_of_rest_grpc_and_batch_under_two_profiles_writes_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", *MIX, "--out", str(out)]) == 0
    assert "6 run(s) in 6 cell(s), 0 skipped" in capsys.readouterr().out
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    html = (out / "index.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    pngs = sorted((out / "charts").glob("*.png"))
    assert {p.stem for p in pngs} == {
        "percentile-spectrum", "latency-over-time", "cdf-histogram", "summary-bars",
        "cost-vs-freshness",
    }  # fmt: skip
    assert sorted(base64.b64decode(i) for i in images) == sorted(p.read_bytes() for p in pngs)
    references = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert all(ref.startswith(("data:image/png;base64,", "#")) for ref in references)
    assert "://" not in html  # nothing to fetch: the page works offline
    assert "<script" not in html.lower()
    assert "Intended start vs service time" in html  # absent chart explained, not dropped
    report = orjson.loads((out / "comparison.json").read_bytes())
    assert report["kind"] == "servelab-report"
    assert report["schema_version"] == 1
    assert {(c["target"], c["hardware"]) for c in report["cells"]} == {
        (t, h) for t in ("rest", "grpc", "batch") for h in ("laptop", "server")
    }
    pairs = {(c["dimension"], c["baseline"], c["candidate"]) for c in report["comparisons"]}
    assert pairs == {("target", "rest", "grpc"), ("hardware", "laptop", "server")}
    assert len(report["comparisons"]) == 3 * (2 + 3)  # p50, p99, throughput per pair
    rows = list(csv.DictReader((out / "comparison.csv").read_text().splitlines()))
    assert len(rows) == len(report["comparisons"])
    assert {row["metric"] for row in rows} == {"p50", "p99", "throughput_rps"}
    first = report["comparisons"][0]
    assert float(rows[0]["ci_low"]) == first["ci_low"] <= first["ratio"] <= first["ci_high"]
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# servelab report")
    assert "| cell | model | runs |" in summary
    assert "## The measured serving landscape" in summary


def test_user_supplied_strings_are_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    hostile = write_variant(
        "xss-label.json", tmp_path / "hostile.json", model='"><img src=x onerror=alert(2)>'
    )
    out = tmp_path / "report"
    assert main(["report", str(GOLDEN / "xss-label.json"), str(hostile), "--out", str(out)]) == 0
    html = (out / "index.html").read_text()
    assert golden("xss-label.json")["run"]["label"] == "<script>alert(1)</script>"
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "Content-Security-Policy" in html
    assert "default-src 'none'" in html
    summary = (out / "summary.md").read_text()
    assert "<script>" not in summary
    assert "&lt;script&gt;" in summary


def test_invalid_runs_are_shown_marked_and_never_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_variant("rest-laptop.json", tmp_path / "a.json", repeat=0)
    broken = golden("rest-laptop.json")
    broken["run"]["repeat"] = 1
    broken["verdict"] = {"valid": False, "reasons": ["interrupted"], "warnings": []}
    write_document(broken, tmp_path / "a-repeat1-invalid.json")
    other = golden("rest-server.json")  # a cell whose only run is invalid
    other["run"]["profile"] = "laptop"
    other["run"]["label"] = "candidate"
    other["verdict"] = {"valid": False, "reasons": ["load generator could not keep up"]}
    write_document(other, tmp_path / "b-invalid.json")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path), "--out", str(out)]) == 0
    report = orjson.loads((out / "comparison.json").read_bytes())
    assert report["comparisons"] == []  # the label pair has no valid candidate
    assert {r["file"] for r in report["invalid_runs"]} == {
        str(tmp_path / "a-repeat1-invalid.json"),
        str(tmp_path / "b-invalid.json"),
    }
    pooled = next(c for c in report["cells"] if c["label"] == "mix")
    assert pooled["files"] == [str(tmp_path / "a.json")]  # the invalid repeat is not pooled
    assert pooled["p50_ms"]["value"] == golden("rest-laptop.json")["summary"]["latency_ms"]["p50"]
    html = (out / "index.html").read_text()
    assert html.count('<tr class="invalid">') == 1 + 2  # the all-invalid cell, both runs
    assert "INVALID — not compared" in html
    assert "load generator could not keep up" in html
    assert "every run is invalid; shown, but not compared" in (out / "summary.md").read_text()
    capsys.readouterr()


def test_unusable_inputs_are_skipped_with_a_warning_and_none_left_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "foreign.json").write_text("[1, 2, 3]")
    out = tmp_path / "report"
    good = str(GOLDEN / "grpc-laptop.json")
    assert main(["report", good, str(tmp_path / "*.json"), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert all(line.startswith("servelab: skipped ") for line in err)
    assert "garbage.json: not JSON" in err[1] or "garbage.json: not JSON" in err[0]
    assert (out / "index.html").exists()
    assert main(["report", str(tmp_path / "*.json"), "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "servelab: no readable result file among 1 input(s)"
    assert not (tmp_path / "none").exists()


def test_the_installed_command_reports_a_glob(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "report"
    result = servelab_cli("report", str(GOLDEN / "*.json"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "10 run(s) in 10 cell(s)" in result.stdout
    report = orjson.loads((out / "comparison.json").read_bytes())
    assert "intended-vs-service" in " ".join(report["charts"])  # the overloaded run shows it
    assert len(report["landscape"]) > 0


def test_unknown_fields_of_an_imported_run_show_as_unknown_not_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An imported Locust CSV does not know schema success; 0 % would be a lie."""
    imported = golden("rest-laptop.json")
    imported["run"].update(tool="locust", label="imported")
    imported["extra"] = {"bucketed_percentiles": True, "unknown": ["schema_success_rate"]}
    imported["verdict"]["warnings"] = ["percentiles rebuilt from Locust's CSV: approximate"]
    write_document(imported, tmp_path / "imported.json")
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "imported.json"), MIX[0], "--out", str(out)]) == 0
    rows = (out / "summary.md").read_text().splitlines()
    imported_row = next(
        line for line in rows if line.startswith("| rest · closed c=4 · laptop · imported |")
    )
    measured_row = next(
        line for line in rows if line.startswith("| rest · closed c=4 · laptop · mix |")
    )
    schema = CELL_HEADERS.index("schema success")
    assert imported_row.split(" | ")[schema] == "n/a"
    assert measured_row.split(" | ")[schema] == "100 %"
    notes = "\n".join(rows[rows.index("## Notes") :])
    assert "imported: percentiles rebuilt from Locust's CSV: approximate" in notes
    report = orjson.loads((out / "comparison.json").read_bytes())
    cell = next(c for c in report["cells"] if c["label"] == "imported")
    assert cell["schema_success_rate"] is None
    capsys.readouterr()
