"""The batch target on a directory of partitions: per-partition outputs, resume, backfill."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from loadtests.cli import app as cli
from targets.batch import score_path
from targets.batch.partitions import DONE_DIR, exclusive_lock
from targets.errors import ModelFailure
from targets.models import ReferenceModel
from tests.conftest import ServelabCli

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_TIMEOUT_S = 30.0


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: content and mtime (to see that nothing was rewritten)."""
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def contents(directory: Path) -> dict[str, bytes]:
    return {name: data for name, (data, _) in snapshot(directory).items()}


def temp_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.name.startswith(".tmp-")]


def make_partitions(directory: Path, count: int, rows: int) -> None:
    """``count`` partitions, alternating JSONL and CSV, each with one bad row."""
    directory.mkdir()
    for index in range(count):
        if index % 2:
            lines = ["id,a,b", *(f"p{index}-{r},{r},{index}" for r in range(rows)), "x,y,z"]
            (directory / f"part-{index:02d}.csv").write_text("\n".join(lines) + "\n")
        else:
            lines = [json.dumps({"instances": [r, index], "id": r}) for r in range(rows)]
            (directory / f"part-{index:02d}.jsonl").write_text("\n".join([*lines, "{"]) + "\n")


def test_directory_mode_writes_one_output_per_partition(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 3, rows=4)
    (tmp_path / "in" / "_SUCCESS").write_text("")
    (tmp_path / "in" / ".hidden.jsonl").write_text("ignored\n")
    (tmp_path / "in" / "nested").mkdir()
    out = tmp_path / "out"
    messages: list[str] = []

    report = score_path(
        tmp_path / "in", out, model=ReferenceModel(), batch_size=3, notify=messages.append
    )

    names = sorted(path.name for path in out.iterdir())
    assert names == [
        ".done",
        "part-00.errors.jsonl",
        "part-00.jsonl",
        "part-01.errors.jsonl",
        "part-01.jsonl",
        "part-02.errors.jsonl",
        "part-02.jsonl",
    ]
    for index in range(3):
        answers = (out / f"part-{index:02d}.jsonl").read_text().splitlines()
        assert len(answers) == 4
        assert json.loads(answers[0])["metadata"]["request_id"].startswith(f"part-{index:02d}.")
        assert len((out / f"part-{index:02d}.errors.jsonl").read_text().splitlines()) == 1
        marker = json.loads(
            (out / DONE_DIR / f"{report.partitions[index].input.name}.json").read_text()
        )
        assert (marker["rows"], marker["valid"], marker["bad"]) == (5, 4, 1)
    assert (report.rows, report.valid, report.bad, report.batches) == (15, 12, 3, 6)
    assert [part.input.name for part in report.partitions] == [
        "part-00.jsonl",
        "part-01.csv",
        "part-02.jsonl",
    ]
    assert [m.split(":")[0] for m in messages] == [
        "scored part-00.jsonl",
        "scored part-01.csv",
        "scored part-02.jsonl",
    ]


def test_rerunning_a_finished_job_changes_nothing(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 3, rows=5)
    out = tmp_path / "out"
    score_path(tmp_path / "in", out, model=ReferenceModel(), batch_size=2)
    before = snapshot(out)
    messages: list[str] = []

    report = score_path(tmp_path / "in", out, model=ReferenceModel(), notify=messages.append)

    assert snapshot(out) == before
    assert [path.name for path in report.skipped] == [
        "part-00.jsonl",
        "part-01.csv",
        "part-02.jsonl",
    ]
    assert (report.rows, report.batches, report.outputs) == (0, 0, ())
    assert all(message.startswith("skipped part-") for message in messages)


def test_a_changed_or_damaged_partition_is_rescored_alone(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 3, rows=5)
    out = tmp_path / "out"
    score_path(tmp_path / "in", out, model=ReferenceModel())
    (tmp_path / "in" / "part-00.jsonl").write_text('{"instances": [9]}\n')  # new content
    (out / "part-02.jsonl").write_text("truncated by someone\n")  # damaged output
    os.utime(tmp_path / "in" / "part-01.csv", (1, 1))  # touched only: still finished

    report = score_path(tmp_path / "in", out, model=ReferenceModel())

    assert [path.name for path in report.skipped] == ["part-01.csv"]
    assert [path.name for path in report.outputs] == ["part-00.jsonl", "part-02.jsonl"]
    assert json.loads((out / "part-00.jsonl").read_text())["predictions"] == [7.3]
    assert len((out / "part-02.jsonl").read_text().splitlines()) == 5


def test_temp_files_of_an_interrupted_run_are_removed(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 1, rows=2)
    out = tmp_path / "out"
    (out / DONE_DIR).mkdir(parents=True)
    stale = [out / ".tmp-part-00.jsonl.1a2b3c4d.part", out / DONE_DIR / ".tmp-x1y2.part"]
    for path in stale:
        path.write_text("half of something")
    keep = out / "notes.tmp"
    keep.write_text("not ours")
    messages: list[str] = []

    score_path(tmp_path / "in", out, model=ReferenceModel(), notify=messages.append)

    assert temp_files(out) == []
    assert keep.exists()
    assert messages[0] == "removed 2 temp file(s) an interrupted run left behind"


def test_another_model_rescores_everything(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 2, rows=2)
    out = tmp_path / "out"
    score_path(tmp_path / "in", out, model=ReferenceModel())

    report = score_path(tmp_path / "in", out, model=ReferenceModel2())

    assert report.skipped == ()
    assert report.rows == 6


class ReferenceModel2(ReferenceModel):
    version = "2.0"


def test_a_failing_model_keeps_finished_partitions_and_leaves_no_partial_output(
    tmp_path: Path,
) -> None:
    class FailsOnPartitionTwo(ReferenceModel):
        def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
            if any(row[-1] == 2 for row in rows):
                raise OSError("disk of weights gone")
            return super().predict(rows)

    make_partitions(tmp_path / "in", 4, rows=3)
    out = tmp_path / "out"

    with pytest.raises(ModelFailure, match=r"part-02\.jsonl"):
        score_path(tmp_path / "in", out, model=FailsOnPartitionTwo(), batch_size=2)

    assert sorted(path.name for path in (out / DONE_DIR).glob("*.json")) == [
        "part-00.jsonl.json",
        "part-01.csv.json",
    ]
    assert not (out / "part-02.jsonl").exists()
    assert not (out / "part-03.jsonl").exists()
    assert temp_files(out) == []


def test_directory_input_errors_name_the_culprit(tmp_path: Path) -> None:
    make_partitions(tmp_path / "in", 2, rows=1)
    model = ReferenceModel()
    (tmp_path / "in" / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"unsupported input file type .*notes\.txt"):
        score_path(tmp_path / "in", tmp_path / "out", model=model)
    (tmp_path / "in" / "notes.txt").unlink()
    (tmp_path / "in" / "part-00.csv").write_text("1\n")
    with pytest.raises(ValueError, match=r"part-00\.csv, part-00\.jsonl would all write"):
        score_path(tmp_path / "in", tmp_path / "out", model=model)
    with pytest.raises(ValueError, match="must not be the input directory"):
        score_path(tmp_path / "in", tmp_path / "in", model=model)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no \.jsonl or \.csv partitions"):
        score_path(tmp_path / "empty", tmp_path / "out", model=model)


def test_a_second_job_on_the_same_output_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("fcntl")
    make_partitions(tmp_path / "in", 1, rows=1)
    out = tmp_path / "out"
    (out / DONE_DIR).mkdir(parents=True)
    with (
        exclusive_lock(out / DONE_DIR / "lock", out),
        pytest.raises(ValueError, match="another batch job"),
    ):
        score_path(tmp_path / "in", out, model=ReferenceModel())


def run_cli(servelab_cli: ServelabCli, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        servelab_cli.argv("batch", "score", *args),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_a_job_killed_mid_way_resumes_to_the_same_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], servelab_cli: ServelabCli
) -> None:
    make_partitions(tmp_path / "in", 5, rows=10)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # 30 ms a call, 2 rows a call: ~150 ms a partition, so the kill lands mid-job.
    options = ["--model", "synthetic:fixed:30ms", "--batch-size", "2"]
    process = run_cli(servelab_cli, str(tmp_path / "in"), "--out", str(killed), *options)

    # Kill once a partition is finished *and* the next one is half-written.
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while not (list((killed / DONE_DIR).glob("*.json")) and temp_files(killed)):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"job ended before it could be killed mid-way:\n{stderr.decode()}")
        time.sleep(0.005)
    process.kill()  # SIGKILL: no cleanup handler runs
    process.communicate(timeout=POLL_TIMEOUT_S)
    finished = sorted(path.name for path in (killed / DONE_DIR).glob("*.json"))
    assert 1 <= len(finished) < 5
    left_behind = temp_files(killed)  # almost always the half-written partition

    assert cli.main(["batch", "score", str(tmp_path / "in"), "--out", str(killed), *options]) == 0
    log = capsys.readouterr().err
    for name in finished:
        assert f"skipped {name.removesuffix('.json')}" in log
    assert ("temp file(s) an interrupted run left behind" in log) == bool(left_behind)

    assert cli.main(["batch", "score", str(tmp_path / "in"), "--out", str(clean), *options]) == 0
    assert contents(killed) == contents(clean)
    assert temp_files(killed) == []
    for index in range(5):
        lines = (killed / f"part-{index:02d}.jsonl").read_text().splitlines()
        request_ids = [json.loads(line)["metadata"]["request_id"] for line in lines]
        assert len(request_ids) == len(set(request_ids)) == 10

    before = snapshot(killed)
    assert cli.main(["batch", "score", str(tmp_path / "in"), "--out", str(killed), *options]) == 0
    assert snapshot(killed) == before
    assert "skipped 5 finished partition(s)" in capsys.readouterr().err
