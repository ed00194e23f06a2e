"""``--data FILE``: real rows (CSV, JSONL, .npy) in seeded order, refused in one line when bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtests.cli.app import main
from loadtests.engine.data import read_rows
from loadtests.engine.workload import PayloadGenerator, PayloadSpec
from loadtests.errors import ConfigError

ROWS = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.5, 9.0], [0.0, -1.0, 2.5]]


def _files(tmp_path: Path) -> list[Path]:
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text("a,b,c\n" + "".join(",".join(map(str, r)) + "\n" for r in ROWS))
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps({"instances": r}) + "\n" for r in ROWS))
    npy = tmp_path / "rows.npy"
    np.save(npy, np.asarray(ROWS))
    return [csv_path, jsonl, npy]


def test_every_format_reads_the_same_rows(tmp_path: Path) -> None:
    for path in _files(tmp_path):
        assert read_rows(path).tolist() == ROWS, path


def test_payloads_carry_the_files_rows_in_an_order_the_seed_fixes(tmp_path: Path) -> None:
    path = _files(tmp_path)[0]
    spec = PayloadSpec(data=str(path), distinct=8)
    first = [PayloadGenerator(spec, 5).payload(i).rows[0] for i in range(8)]
    again = [PayloadGenerator(spec, 5).payload(i).rows[0] for i in range(8)]
    other = [PayloadGenerator(spec, 6).payload(i).rows[0] for i in range(8)]
    assert first == again
    assert first != other
    assert all(row in ROWS for row in first)
    assert sorted(map(tuple, first[:4])) == sorted(map(tuple, ROWS))  # each row once a lap


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("ragged.csv", "1,2\n3\n", "different widths"),
        ("word.csv", "1,2\n3,x\n", "'x' is not a number"),
        ("bad.jsonl", "[1, 2]\nnope\n", "line 2: not JSON"),
        ("obj.jsonl", '{"other": [1]}\n', "expected a list of numbers"),
        ("nan.jsonl", "[1, NaN]\n", "finite"),
        ("empty.csv", "", "no rows"),
        ("fake.npy", "not numpy", "--data"),
    ],
)
def test_bad_files_are_one_line(tmp_path: Path, name: str, text: str, words: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        read_rows(path)


def test_a_run_on_real_rows_and_a_missing_file_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    code = main(["run", "--target", "inprocess", "--data", str(_files(tmp_path)[2]),
                 "--requests", "200", "--no-progress", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert json.loads(out.read_text())["summary"]["schema_success_rate"] == 1.0
    capsys.readouterr()
    code = main(["run", "--target", "inprocess", "--data", str(tmp_path / "missing.csv"),
                 "--requests", "5", "--out", str(tmp_path / "x.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "cannot read --data" in err
