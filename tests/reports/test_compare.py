"""``servelab compare``: exit 0 when thresholds hold, 1 on a significant breach, 2 on bad input.

The runs come from the real measurement engine on a virtual clock (exact, reproducible): an A/A
pair is two runs of one lognormal model with different service-time seeds; the regression is
``synthetic:fixed:5ms`` against ``synthetic:fixed:10ms``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests import InProcessDriver, LoadPlan, run_load_test
from loadtests.cli.app import main
from loadtests.engine.histogram import PERCENTILES
from loadtests.results.thresholds import SUMMARY_FIELDS, known_metric, metric_value
from reports.compare import pseudo_summary
from targets import load_model
from tests.reports.factory import golden, write_document

SPECS = {
    "a1": "synthetic:lognormal:5ms:0.5:seed=1",
    "a2": "synthetic:lognormal:5ms:0.5:seed=2",
    "fast": "synthetic:fixed:5ms",
    "slow": "synthetic:fixed:10ms",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("compare")
    paths = {}
    for name, spec in SPECS.items():
        path = directory / f"{name}.json"
        run_load_test(
            InProcessDriver(load_model(spec)),
            plan=LoadPlan(mode="closed", concurrency=4, duration_s=None, requests=3000),
            virtual_time=True,
            model=spec,
            out=path,
        )
        paths[name] = str(path)
    return paths


def _compare(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["compare", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_an_aa_pair_passes(runs: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _compare(capsys, runs["a1"], runs["a2"], "--threshold", "p99:+10%")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "pass"
    for metric in ("p50", "p99", "throughput_rps"):
        row = next(line for line in out.splitlines() if line.startswith(metric + " "))
        assert row.endswith("no significant difference")
    code, out, _ = _compare(capsys, runs["a1"], runs["a2"])  # the default gate
    assert code == 0
    assert "thresholds (defaults; set with --threshold)" in out


def test_a_real_regression_fails_the_gate(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _compare(capsys, runs["fast"], runs["slow"], "--threshold", "p99:+10%")
    assert code == 1
    gates = {line.split()[0]: line.split()[1] for line in out.splitlines()
             if line.startswith(("p99:+10%", "success_rate:-1%"))}  # fmt: skip
    assert gates == {"p99:+10%": "FAIL", "success_rate:-1%": "pass"}  # the success gate stays
    assert out.splitlines()[-1] == "regression: p99:+10%"
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "baseline", "candidate", "change", "95%", "CI", "of",
                              "change", "verdict"]  # fmt: skip
    p99 = next(line for line in out.splitlines() if line.startswith("p99 "))
    assert "+100.0 %" in p99
    assert p99.endswith("slower")
    code, out, _ = _compare(
        capsys, runs["fast"], runs["slow"], "--threshold", "throughput_rps:-5%",
        "--threshold", "p99<8ms", "--threshold", "p50<20ms",
    )  # fmt: skip
    assert code == 1
    assert out.splitlines()[-1] == "regression: throughput_rps:-5%, p99<8ms"
    assert _compare(capsys, runs["slow"], runs["fast"], "--threshold", "p99:+10%")[0] == 0


def test_a_breach_within_the_noise_passes_and_says_so(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """a2's p99 is 1.2 % above a1's: past a 1 % limit, but well inside the interval."""
    code, out, _ = _compare(capsys, runs["a1"], runs["a2"], "--threshold", "p99:+1%")
    assert code == 0
    assert "breached, not significant (pass)" in out


def test_markdown_output_for_ci_summaries(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _compare(
        capsys, runs["fast"], runs["slow"], "--threshold", "p99:+10%", "--markdown"
    )
    assert code == 1
    assert "| metric | baseline | candidate | change | 95% CI of change | verdict |" in out
    assert "| p99:+10% | FAIL |" in out
    assert out.strip().endswith("**regression: p99:+10%**")


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ("p99 +10", "threshold 'p99 +10' is malformed"),
        ("latency_p42:+5%", "unknown metric 'latency_p42'"),
        ("p99<fast", "'fast' is not a latency"),
    ],
)
def test_bad_thresholds_are_one_line_and_exit_2(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str], threshold: str, message: str
) -> None:
    code, out, err = _compare(capsys, runs["a1"], runs["a2"], "--threshold", threshold)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert message in err


def test_unreadable_inputs_are_exit_2_and_invalid_runs_exit_3_in_one_line(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.json")
    code, _, err = _compare(capsys, missing, runs["a1"])
    assert code == 2
    assert err.strip() == f"servelab: baseline {missing}: no such file or directory"
    (tmp_path / "cut.json").write_text('{"kind": "servelab-result", "schema')
    code, _, err = _compare(capsys, runs["a1"], str(tmp_path / "cut.json"))
    assert code == 2
    assert "cut.json: not JSON" in err
    assert len(err.strip().splitlines()) == 1
    invalid = golden("rest-laptop.json")
    invalid["verdict"] = {"valid": False, "reasons": ["interrupted"], "warnings": []}
    path = str(write_document(invalid, tmp_path / "invalid.json"))
    code, _, err = _compare(capsys, str(path), runs["a1"])
    assert code == 3  # an INVALID measurement, not bad input (README "Exit codes")
    assert "baseline run is invalid (interrupted)" in err
    assert len(err.strip().splitlines()) == 1
    assert _compare(capsys, path, path, "--allow-invalid")[0] == 0
    assert _compare(capsys, path, path, "--include-invalid")[0] == 0  # the old name, kept


def test_groups_of_repeats_compare_as_groups(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for name in ("a1", "a2"):
        (tmp_path / f"{name}.json").write_bytes(Path(runs[name]).read_bytes())
    code, out, _ = _compare(capsys, str(tmp_path), runs["slow"], "--threshold", "p50:+10%")
    assert code == 1
    assert out.startswith("baseline: 2 run(s)")


def test_a_pooled_figure_reads_back_through_the_threshold_grammar() -> None:
    """``pseudo_summary`` puts a value where the grammar looks for it, for every metric the
    grammar knows (its blocks, not a second list: ``client_queue_p99`` once it is a metric)."""
    blocks = ("", "latency_", "service_", "client_queue_")
    latency = [f"{b}{p}" for b in blocks for p in PERCENTILES]
    latency += [f"{b}{s}" for b in blocks[1:] for s in ("min", "mean", "max")]
    metrics = [m for m in (*latency, *SUMMARY_FIELDS, "fail_ratio") if known_metric(m)]
    assert {"p99", "service_p99", "latency_mean", "fail_ratio"} <= set(metrics)
    for metric in metrics:
        assert metric_value(pseudo_summary(metric, 0.25), metric) == pytest.approx(0.25), metric


def test_a_candidate_that_measured_a_dead_server_is_never_faster(
    runs: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Every request refused in a millisecond: its latency of successes is empty, and the
    success-rate gate — kept beside the user's own threshold — fails it."""
    from loadtests.drivers.base import FakeDriver
    from loadtests.engine.records import Outcome

    refused = FakeDriver(lambda _: 0.001, answer=lambda _: (Outcome.FAILURE, "connect", 0, False))
    dead = tmp_path / "dead.json"
    plan = LoadPlan(mode="closed", concurrency=4, duration_s=None, requests=3000)
    run_load_test(refused, plan=plan, virtual_time=True, out=dead)
    code, out, _ = _compare(capsys, runs["fast"], str(dead), "--threshold", "p99<50ms")
    assert code == 1
    assert out.splitlines()[-1] == "regression: success_rate:-1%, p99<50ms"
    # naming success_rate yourself replaces the gate; --no-default-gate drops it
    code, out, _ = _compare(capsys, runs["fast"], str(dead), "--threshold", "success_rate:-50%")
    assert code == 1
    assert "success_rate:-1%" not in out
    _, out, _ = _compare(capsys, runs["a1"], runs["a2"], "--no-default-gate")
    assert "success_rate:-1%" not in out
    # and without any success gate, a latency gate on no successes still fails: 0 ms is not fast
    code, out, _ = _compare(capsys, runs["fast"], str(dead), "--threshold", "p99<50ms",
                            "--no-default-gate")  # fmt: skip
    assert code == 1
    assert "the candidate has no successful request" in out
