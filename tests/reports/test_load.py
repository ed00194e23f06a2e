"""Reading result files for reports: inputs expanded, bad files skipped, runs grouped into cells."""

from __future__ import annotations

from pathlib import Path

import orjson

from reports.load import expand_inputs, group_cells, load_level, load_runs
from tests.reports.factory import GOLDEN, golden, write_document, write_variant


def test_files_directories_and_globs_expand_once_each(tmp_path: Path) -> None:
    rest = str(GOLDEN / "rest-laptop.json")
    paths, warnings = expand_inputs(
        [rest, str(GOLDEN), str(GOLDEN / "grpc-*.json"), str(tmp_path / "nope.json")]
    )
    names = [p.name for p in paths]
    assert names.count("rest-laptop.json") == 1
    assert {"grpc-laptop.json", "grpc-server.json", "batch-server.json"} <= set(names)
    assert len(names) == len(set(names))
    assert warnings == [f"{tmp_path / 'nope.json'}: no such file or directory"]
    _, empty = expand_inputs([str(tmp_path), str(tmp_path / "*.json")])
    assert empty == [
        f"{tmp_path}: directory holds no *.json result files",
        f"{tmp_path / '*.json'}: no file matches",
    ]


def test_unreadable_foreign_truncated_and_mangled_inputs_are_skipped_with_one_line(
    tmp_path: Path,
) -> None:
    good = write_variant("rest-laptop.json", tmp_path / "good.json")
    (tmp_path / "foreign.json").write_text('{"hello": "world"}')
    raw = (GOLDEN / "grpc-laptop.json").read_bytes()
    (tmp_path / "truncated.json").write_bytes(raw[: len(raw) // 2])
    newer = golden("rest-server.json") | {"schema_version": 99}
    write_document(newer, tmp_path / "newer.json")
    mangled = golden("rest-server.json")
    del mangled["summary"]["latency_ms"]["p99"]
    write_document(mangled, tmp_path / "mangled.json")
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    loaded = load_runs([str(tmp_path)])
    assert [run.path for run in loaded.runs] == [str(good)]
    assert len(loaded.warnings) == 5
    assert all("\n" not in w for w in loaded.warnings)
    joined = "\n".join(loaded.warnings)
    assert "foreign.json: not a servelab result file" in joined
    assert "truncated.json: not JSON" in joined
    assert "newer.json: schema_version 99 is newer" in joined
    assert "mangled.json: malformed result, summary.latency_ms is incomplete" in joined


def test_a_mangled_histogram_keeps_the_run_without_an_interval(tmp_path: Path) -> None:
    document = golden("rest-laptop.json")
    document["histograms"]["latency"] = "HISTFAAAnot-base64!!"
    loaded = load_runs([str(write_document(document, tmp_path / "run.json"))])
    assert loaded.runs[0].latency is None
    assert loaded.runs[0].service is not None


def test_repeats_of_one_configuration_pool_into_one_cell(tmp_path: Path) -> None:
    for repeat in range(3):
        write_variant("rest-laptop.json", tmp_path / f"r{repeat}.json", repeat=repeat, seed=repeat)
    write_variant("rest-laptop.json", tmp_path / "other-label.json", label="other")
    write_variant("rest-laptop.json", tmp_path / "other-profile.json", profile="server")
    invalid = golden("rest-laptop.json")
    invalid["verdict"] = {"valid": False, "reasons": ["interrupted"], "warnings": []}
    invalid["run"]["repeat"] = 3
    write_document(invalid, tmp_path / "r3-invalid.json")
    cells = group_cells(load_runs([str(tmp_path)]).runs)
    assert [(c.key.label, c.key.hardware, len(c.runs), len(c.invalid)) for c in cells] == [
        ("mix", "laptop", 3, 1),
        ("other", "laptop", 1, 0),
        ("mix", "server", 1, 0),
    ]
    assert [run.repeat for run in cells[0].runs] == [0, 1, 2]


def test_runs_without_a_profile_are_told_apart_by_host(tmp_path: Path) -> None:
    write_variant("rest-laptop.json", tmp_path / "a.json", profile=None)
    document = orjson.loads((tmp_path / "a.json").read_bytes())
    document["environment"]["hostname"] = "other-box"
    write_document(document, tmp_path / "b.json")
    cells = group_cells(load_runs([str(tmp_path)]).runs)
    assert sorted(c.key.hardware for c in cells) == sorted(
        [f"host {golden('rest-laptop.json')['environment']['hostname']}", "host other-box"]
    )


def test_load_level_reads_like_the_command_line() -> None:
    assert load_level({"mode": "closed", "concurrency": 8}) == "closed c=8"
    assert load_level({"mode": "closed", "concurrency": None}) == "closed"
    assert (
        load_level({"mode": "open", "rate_per_s": 500.0, "arrival": "poisson"})
        == "open 500/s poisson"
    )
    assert (
        load_level({"mode": "open", "rate_per_s": 1000, "batch_size": 8, "window_ms": 2.0})
        == "open 1000/s batch 8 window 2ms"
    )
