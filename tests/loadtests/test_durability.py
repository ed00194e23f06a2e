"""Durability: the per-request event log recomputes the result it stands for, a crash's torn line
is dropped, unusable files are refused in one line, and result writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadtests.cli.app import main
from loadtests.engine.harness import LoadPlan
from loadtests.engine.recorder import Recorder
from loadtests.engine.workload import PayloadSpec
from loadtests.jobs.run import execute
from loadtests.jobs.settings import RunSettings
from loadtests.results.events import EventLogError, read_events, recompute_result
from loadtests.results.result import ResultFileError, load_result, write_result
from targets.files import TMP_PREFIX

GOLDEN = Path(__file__).resolve().parents[1] / "reports" / "golden" / "grpc-laptop.json"


async def _logged_run(tmp_path: Path) -> tuple[dict[str, object], Path]:
    settings = RunSettings(
        target="inprocess",
        plan=LoadPlan(concurrency=2, duration_s=None, requests=2000),
        payloads=PayloadSpec(invalid_fraction=0.1),
    )
    events = tmp_path / "events.jsonl"
    output = await execute(settings, out=tmp_path / "run.json", events=events)
    return dict[str, object](output.result), events


async def test_a_recomputed_result_equals_the_measured_one(tmp_path: Path) -> None:
    measured, events = await _logged_run(tmp_path)
    recomputed = recompute_result(events)
    for block in ("summary", "errors", "histograms", "timeseries"):
        assert recomputed[block] == measured[block], block
    assert recomputed["run"] == measured["run"]  # same id, same settings, not partial
    assert recomputed["summary"]["expected_rejections"] > 0
    assert recomputed["extra"]["event_lines"] == 2000


async def test_a_torn_last_line_is_dropped_and_the_run_is_partial(tmp_path: Path) -> None:
    _, events = await _logged_run(tmp_path)
    lines = events.read_bytes().split(b"\n")
    events.write_bytes(b"\n".join(lines[:1001]) + b"\n" + lines[1001][:17])  # as a crash leaves
    contents = read_events(events)
    assert (contents.lines, contents.torn_lines, contents.trailer) == (1000, 1, None)
    result = recompute_result(events)
    assert result["run"]["partial"] is True
    assert result["verdict"]["valid"] is False
    assert result["summary"]["requests"] == 1000


def test_a_recorder_without_a_sink_keeps_its_columns_to_itself() -> None:
    recorder = Recorder()
    recorder.record(0, 1, 2)
    recorder.finish()
    assert recorder.sink is None
    assert recorder.requests == 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "not a servelab event log"),
        (b'{"kind": "servelab-result"}\n', "not a servelab event log"),
        (
            b'{"kind": "servelab-events", "schema_version": 1, "start_ns": 0}\n{oops\n{}\n',
            "line 2: not JSON",
        ),
        (
            b'{"kind": "servelab-events", "schema_version": 1, "start_ns": 0}\n{"outcome": "ok"}\n',
            "line 2: bad event",
        ),
    ],
)
def test_unusable_event_logs_are_refused_in_one_line(
    tmp_path: Path, content: bytes, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    with pytest.raises(EventLogError, match=words) as caught:
        read_events(path)
    assert "\n" not in str(caught.value)
    assert main(["recompute", str(path), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert words.split(":", maxsplit=1)[0] in err
    assert not (tmp_path / "r.json").exists()


def test_a_failed_result_write_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "run.json"
    document = load_result(GOLDEN)
    write_result(path, document)
    before = path.read_bytes()

    def crash(*_: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_result(path, {**document, "extra": {"new": True}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)] == []


def test_a_truncated_result_is_refused_and_the_report_goes_on_without_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "truncated.json"
    raw = GOLDEN.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ResultFileError) as caught:
        load_result(truncated)
    assert str(caught.value) == f"{truncated}: not JSON (truncated or not a result file)"
    out = tmp_path / "report"
    assert main(["report", str(GOLDEN), str(truncated), "--out", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"servelab: skipped {truncated}: not JSON (truncated or not a result file)"]
    assert (out / "index.html").exists()
    assert main(["report", str(truncated), "--out", str(tmp_path / "none")]) == 2
