"""The batch target on single files: JSONL and CSV in, canonical responses and bad rows out."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import targets.batch
from loadtests.cli import app as cli
from targets.batch import BatchReport, percentile, score_file, score_path
from targets.batch.report import format_summary
from targets.errors import ModelFailure
from targets.models import ReferenceModel
from targets.schema import response_problem
from tests.targets.sample_models import ExplodingModel


def expected(row: Sequence[float]) -> float:
    """The lesson's contract, computed independently of the model under test."""
    return round(statistics.mean(row) * 0.8 + 0.1, 4) if row else 0.0


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class CountingModel(ReferenceModel):
    """The reference model, recording the size of every call."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls.append(len(rows))
        return super().predict(rows)


def no_temp_files(directory: Path) -> bool:
    return not [path for path in directory.rglob("*") if path.name.startswith(".tmp-")]


def test_jsonl_answers_every_valid_line_in_order(tmp_path: Path) -> None:
    rows: list[list[float]] = [[1, 2], [], [0.5], [10, 20, 30], [-1, 1], [3.5, 2.5, 1.5, 0.5]]
    ids: list[object] = ["a", 7, None, "d", None, "f"]
    lines = []
    for row, row_id in zip(rows, ids, strict=True):
        body: dict[str, object] = {"instances": row}
        if row_id is not None:
            body["id"] = row_id
        lines.append(json.dumps(body))
    source = tmp_path / "requests.jsonl"
    source.write_text("\n".join(lines) + "\n")

    report = score_file(source, tmp_path / "scores.jsonl", model=ReferenceModel(), batch_size=4)

    answers = read_jsonl(tmp_path / "scores.jsonl")
    assert [answer["predictions"] for answer in answers] == [[expected(row)] for row in rows]
    for line, (answer, row_id) in enumerate(zip(answers, ids, strict=True), start=1):
        assert response_problem(answer, expected_predictions=1) is None
        metadata = answer["metadata"]
        assert metadata["transport"] == "batch"
        assert metadata["line"] == line
        assert metadata["request_id"] == f"requests.jsonl:{line}"
        assert metadata.get("id") == row_id
    assert (report.rows, report.valid, report.bad, report.batches) == (6, 6, 0, 2)
    assert (tmp_path / "scores.errors.jsonl").read_text() == ""
    assert report.outputs == (tmp_path / "scores.jsonl",)


def test_every_kind_of_bad_jsonl_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    lines = [
        b'{"instances": [1, 2], "id": "ok-1"}',  # 1
        b"{not json",  # 2
        b"",  # 3: blank, not a row
        b"[1, 2]",  # 4: not an object
        b'{"rows": [[1]]}',  # 5: v2 shape, no instances
        b'{"instances": [1, "x"], "id": "bad-6"}',  # 6
        b'{"instances": [[1, 2]]}',  # 7: nested
        b'{"instances": [NaN]}',  # 8
        b'{"instances": [1], "id": [1]}',  # 9: id of the wrong type
        b'{"instances": [1], "id": "\xff\xfe"}',  # 10: not UTF-8
        b"[" * 100_000,  # 11: nested too deep for the decoder
        b'{"instances": [4, 6], "id": 12}',  # 12: last line, no newline
    ]
    source.write_bytes(b"\n".join(lines))
    errors_path = tmp_path / "bad.jsonl"

    report = score_file(
        source, tmp_path / "out.jsonl", model=ReferenceModel(), errors_path=errors_path
    )

    answers = read_jsonl(tmp_path / "out.jsonl")
    assert [(a["metadata"]["line"], a["metadata"]["id"]) for a in answers] == [
        (1, "ok-1"),
        (12, 12),
    ]
    errors = read_jsonl(errors_path)
    assert [(e["line"], e["id"], e["error"]["code"], e["error"]["field"]) for e in errors] == [
        (2, None, "malformed_request", None),
        (4, None, "invalid_request", None),
        (5, None, "invalid_request", "instances"),
        (6, "bad-6", "invalid_request", "instances[1]"),
        (7, None, "invalid_request", "instances[0]"),
        (8, None, "invalid_request", "instances[0]"),
        (9, None, "invalid_request", "id"),
        (10, None, "malformed_request", None),
        (11, None, "malformed_request", None),
    ]
    assert all(error["error"]["message"] for error in errors)
    assert (report.rows, report.valid, report.bad) == (11, 2, 9)


def test_csv_with_header_and_id_column(tmp_path: Path) -> None:
    source = tmp_path / "features.csv"
    source.write_text("f1,ID,f2\n1,a,2\n 4 ,b,6\n1.5,,2.5\n")

    report = score_file(source, tmp_path / "out.jsonl", model=ReferenceModel())

    answers = read_jsonl(tmp_path / "out.jsonl")
    assert [a["predictions"] for a in answers] == [
        [expected([1, 2])],
        [4.1],
        [expected([1.5, 2.5])],
    ]
    assert [a["metadata"]["line"] for a in answers] == [2, 3, 4]
    assert [a["metadata"].get("id") for a in answers] == ["a", "b", None]
    assert (report.rows, report.valid, report.bad) == (3, 3, 0)


def test_csv_without_header_uses_every_column_as_a_feature(tmp_path: Path) -> None:
    source = tmp_path / "plain.csv"
    source.write_text("1,2,3\r\n\r\n10,20,30\r\n")

    score_file(source, tmp_path / "out.jsonl", model=ReferenceModel())

    answers = read_jsonl(tmp_path / "out.jsonl")
    assert [a["predictions"] for a in answers] == [[expected([1, 2, 3])], [expected([10, 20, 30])]]
    assert [a["metadata"]["line"] for a in answers] == [1, 3]
    assert all("id" not in a["metadata"] for a in answers)


def test_bad_csv_rows_are_reported_and_the_job_goes_on(tmp_path: Path) -> None:
    source = tmp_path / "bad.csv"
    source.write_bytes(
        b"id,x,y\n"  # 1
        b"r2,1,2\n"  # 2
        b"r3,1,oops\n"  # 3: not a number
        b"r4,1\n"  # 4: too few columns
        b"r5,1,2,3\n"  # 5: too many
        b"r6,inf,1\n"  # 6: not finite
        b"r7,,1\n"  # 7: empty cell
        b"r8,\xff,1\n"  # 8: not UTF-8
        b"r9,3,5\n"  # 9
    )

    report = score_file(source, tmp_path / "out.jsonl", model=ReferenceModel())

    assert [a["metadata"]["id"] for a in read_jsonl(tmp_path / "out.jsonl")] == ["r2", "r9"]
    errors = read_jsonl(tmp_path / "out.errors.jsonl")
    assert [(e["line"], e["id"], e["error"]["field"]) for e in errors] == [
        (3, "r3", "instances[1]"),
        (4, "r4", "instances"),
        (5, "r5", "instances"),
        (6, "r6", "instances[0]"),
        (7, "r7", "instances[0]"),
        (8, "r8", "instances[0]"),
    ]
    assert "column 'y'" in errors[0]["error"]["message"]
    assert "expected 3 columns, got 2" in errors[1]["error"]["message"]
    assert (report.rows, report.valid, report.bad) == (8, 2, 6)


@pytest.mark.parametrize("batch_size", [1, 3, 4, 100])
def test_each_batch_is_one_model_call(tmp_path: Path, batch_size: int) -> None:
    lines = [json.dumps({"instances": [i, i + 1]}) if i % 4 else "garbage" for i in range(1, 15)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join(lines) + "\n")
    model = CountingModel()

    report = score_file(source, tmp_path / "out.jsonl", model=model, batch_size=batch_size)

    assert report.valid == 11
    assert len(model.calls) == math.ceil(11 / batch_size) == report.batches
    assert all(size == batch_size for size in model.calls[:-1])
    assert sum(model.calls) == 11
    assert len(report.batch_latencies_s) == report.batches


def test_batch_latencies_are_timed_per_batch_on_the_injected_clock(tmp_path: Path) -> None:
    now = [0.0]

    class TimedModel(ReferenceModel):
        def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
            now[0] += 0.001 * len(rows)  # 1 ms a row, on the virtual clock
            return super().predict(rows)

    source = tmp_path / "in.csv"
    source.write_text("".join(f"{i},{i}\n" for i in range(10)))

    report = score_file(
        source, tmp_path / "out.jsonl", model=TimedModel(), batch_size=4, clock=lambda: now[0]
    )

    assert report.batch_latencies_s == pytest.approx((0.004, 0.004, 0.002))
    assert report.elapsed_s == pytest.approx(0.010)
    assert report.rows_per_s == pytest.approx(1000)
    summary = format_summary(report, batch_size=4)
    assert "p50 4.000 ms, p99 4.000 ms, max 4.000 ms" in summary
    assert "10 rows, 10 valid, 0 bad; 3 batches" in summary


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile(list(range(1, 101)), 0.99) == 99
    assert percentile([5.0], 0.0) == 5.0
    with pytest.raises(ValueError, match="fraction"):
        percentile([1.0], 1.5)


def test_reruns_are_byte_identical(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [json.dumps({"instances": [i, i / 3], "id": i}) for i in range(50)]
    source.write_text("\n".join([*lines, "oops"]) + "\n")

    score_file(source, tmp_path / "a.jsonl", model=ReferenceModel(), batch_size=7)
    score_file(source, tmp_path / "b.jsonl", model=ReferenceModel(), batch_size=7)

    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.errors.jsonl").read_bytes() == (tmp_path / "b.errors.jsonl").read_bytes()


def test_a_failing_model_fails_the_job_and_leaves_no_output(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"instances": [1]}\n{"instances": [2]}\n')
    output = tmp_path / "out.jsonl"
    output.write_text("from an earlier run\n")

    with pytest.raises(ModelFailure, match=r"in\.jsonl lines 1-2: RuntimeError: model weights"):
        score_file(source, output, model=ExplodingModel())

    assert output.read_text() == "from an earlier run\n"  # the old file, untouched
    assert not (tmp_path / "out.errors.jsonl").exists()
    assert no_temp_files(tmp_path)


def test_cli_scores_a_file_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"instances": [1, 2]}\nnope\n{"instances": [3]}\n')
    output = tmp_path / "out" / "scores.jsonl"

    code = cli.main(["batch", "score", str(source), "--out", str(output), "--batch-size", "1"])

    assert code == 0
    assert [a["predictions"] for a in read_jsonl(output)] == [[1.3], [2.5]]
    stderr = capsys.readouterr().err
    assert "3 rows, 2 valid, 1 bad; 2 batches" in stderr
    assert "rows/s" in stderr
    assert "p50" in stderr
    assert "p99" in stderr
    assert "max" in stderr
    assert str(output) in stderr
    assert "scores.errors.jsonl" in stderr


def test_cli_model_failure_exits_nonzero_without_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("1,2\n")
    output = tmp_path / "out.jsonl"
    model = "tests.targets.sample_models:ExplodingModel"

    code = cli.main(["batch", "score", str(source), "--out", str(output), "--model", model])

    assert code == 1
    assert not output.exists()
    assert no_temp_files(tmp_path)
    stderr = capsys.readouterr().err.strip()
    assert "model weights are corrupt" in stderr
    assert len(stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.jsonl", "does not exist"), ("table.parquet", "unsupported input file type")],
)
def test_cli_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    source = tmp_path / name
    if name.endswith(".parquet"):
        source.write_bytes(b"PAR1")

    code = cli.main(["batch", "score", str(source), "--out", str(tmp_path / "out.jsonl")])

    assert code == 2
    stderr = capsys.readouterr().err.strip()
    assert len(stderr.splitlines()) == 1
    assert message in stderr
    assert name in stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_score_path_on_a_file_matches_score_file(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    source.write_text("1,2\n3,4\n")

    report = score_path(source, tmp_path / "out.jsonl", model=ReferenceModel(), batch_size=1)

    assert isinstance(report, BatchReport)
    assert (report.rows, report.batches, report.skipped) == (2, 2, ())
    with pytest.raises(ValueError, match="batch_size"):
        score_path(source, tmp_path / "x.jsonl", model=ReferenceModel(), batch_size=0)


def test_package_exports_a_sorted_public_api() -> None:
    assert targets.batch.__all__ == sorted(targets.batch.__all__)
    assert all(hasattr(targets.batch, name) for name in targets.batch.__all__)
