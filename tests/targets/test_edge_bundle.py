"""The edge zipapp on a bare Python (``-I -S``), ``servelab edge run/bundle``, and proof that the
edge runtime needs nothing beyond the standard library."""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from targets.edge.bundle import BUNDLED_MODULES, CONFIG_ENTRY, check_bundleable, write_bundle
from targets.edge.runtime import EdgeConfig
from targets.errors import SpecError
from targets.models import reference_prediction
from targets.schema import response_problem
from tests.conftest import ServelabCli

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 60.0


def int8(value: float, value_range: float = 8.0) -> float:
    scale = value_range / 127
    return min(127, max(-127, round(value / scale))) * scale


class Ran:
    """A finished process: JSON lines out, JSON lines (logs, stats last) and text on stderr."""

    def __init__(self, completed: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = completed.returncode
        self.stderr = completed.stderr.decode()
        self.answers = [json.loads(line) for line in completed.stdout.splitlines()]

    @property
    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = json.loads(self.stderr.splitlines()[-1])
        assert stats["event"] == "edge_stats"
        return stats


def run_command(command: Sequence[str], lines: Sequence[bytes], cwd: Path) -> Ran:
    completed = subprocess.run(
        command,
        input=b"".join(line + b"\n" for line in lines),
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        cwd=cwd,  # nowhere near the repository, so nothing can be imported from it
        check=False,
    )
    return Ran(completed)


@pytest.fixture
def bundle(tmp_path: Path) -> Callable[..., Path]:
    def build(name: str = "edge.pyz", **options: Any) -> Path:
        out = tmp_path / "dist" / name
        write_bundle(out, EdgeConfig(**options))
        return out

    return build


def run_bundle(pyz: Path, lines: Sequence[bytes], *args: str) -> Ran:
    return run_command([sys.executable, "-I", "-S", str(pyz), *args], lines, pyz.parent)


@pytest.fixture
def refused_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_bundle_on_a_bare_python_answers_one_line_per_line(bundle: Callable[..., Path]) -> None:
    pyz = bundle()
    assert os.access(pyz, os.X_OK)
    lines = [
        b'{"instances": [1, 2, 3]}',
        b'{"instances": [1.01, 2, 3.01]}',  # quantises like the first: a cache hit
        b"{broken",
        b'{"instances": [1, "two"]}',
        b'{"rows": [[0.3, -4.2], [7.5]], "request_id": "r-1"}',
        b'{"instances": []}',
        b'{"instances": [1, 2, 3]}',
    ]
    ran = run_bundle(pyz, lines)
    assert ran.returncode == 0, ran.stderr
    assert len(ran.answers) == len(lines)
    ok = [ran.answers[i] for i in (0, 1, 4, 5, 6)]
    for answer in ok:
        assert response_problem(answer) is None
        assert answer["metadata"]["transport"] == "edge"
        assert answer["metadata"]["quantization"] == "int8:8"
    expected_first = [reference_prediction([int8(1), int8(2), int8(3)])]
    assert ran.answers[0]["predictions"] == expected_first
    assert ran.answers[1]["predictions"] == expected_first
    assert ran.answers[4]["predictions"] == [
        reference_prediction([int8(0.3), int8(-4.2)]),
        reference_prediction([int8(7.5)]),
    ]
    assert ran.answers[4]["metadata"]["request_id"] == "r-1"
    assert ran.answers[5]["predictions"] == [0.0]
    assert ran.answers[2]["error"]["code"] == "malformed_request"
    assert ran.answers[3]["error"]["field"] == "instances[1]"
    assert [answer["metadata"]["source"] for answer in ok] == [
        "local",
        "cache",
        "local",
        "local",
        "cache",
    ]
    stats = ran.stats
    assert stats["requests"] == 7
    assert stats["errors"] == 2
    assert stats["cache"]["hits"] == 2
    assert stats["remote"] is None


def test_a_remote_first_bundle_answers_locally_when_the_remote_is_down(
    bundle: Callable[..., Path], refused_url: str
) -> None:
    pyz = bundle(remote=refused_url, cache_size=0)
    ran = run_bundle(pyz, [b'{"instances": [%d]}' % i for i in range(6)])
    assert ran.returncode == 0, ran.stderr
    assert [answer["metadata"]["source"] for answer in ran.answers] == ["local"] * 6
    assert all(response_problem(answer) is None for answer in ran.answers)
    remote = ran.stats["remote"]
    assert remote["failures"] == {"ConnectionRefusedError": 1}
    assert remote["breaker"]["opens"] == 1
    local_only = run_bundle(pyz, [b'{"instances": [1]}'], "--remote", "")
    assert local_only.answers[0]["metadata"]["source"] == "local"
    assert local_only.stats["remote"] is None


def test_bundle_options_override_the_baked_in_config(bundle: Callable[..., Path]) -> None:
    pyz = bundle(model="synthetic:fixed:0ms", quant="fixed:4", cache_size=0)
    baked = run_bundle(pyz, [b'{"instances": [0.3]}'] * 2)
    assert [answer["metadata"]["quantization"] for answer in baked.answers] == ["fixed:4"] * 2
    assert baked.answers[0]["metadata"]["model_name"] == "synthetic:fixed:0ms"
    assert baked.answers[0]["predictions"] == [reference_prediction([round(0.3 * 16) / 16])]
    assert baked.stats["cache"]["capacity"] == 0
    overridden = run_bundle(pyz, [b'{"instances": [0.3]}'] * 2, "--quant", "int8:2")
    assert overridden.answers[0]["metadata"]["quantization"] == "int8:2"
    assert overridden.answers[0]["predictions"] == [reference_prediction([int8(0.3, 2.0)])]


def test_a_bad_option_to_a_bundle_is_one_line_and_exit_2(bundle: Callable[..., Path]) -> None:
    ran = run_bundle(bundle(), [], "--quant", "int4:1")
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1
    assert "--quant" in ran.stderr


def test_bundle_answers_each_line_before_the_next_arrives(bundle: Callable[..., Path]) -> None:
    pyz = bundle()
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", str(pyz)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=pyz.parent,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            for value in (1, 2, 1):
                process.stdin.write(b'{"instances": [%d]}\n' % value)
                process.stdin.flush()
                assert selector.select(RUN_TIMEOUT_S), "no answer while stdin stays open"
                answer = json.loads(process.stdout.readline())
                assert answer["predictions"] == [reference_prediction([int8(value)])]
        _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0
    assert json.loads(stderr.splitlines()[-1])["by_source"]["cache"] == 1


def test_bundle_archive_is_deterministic_and_holds_only_what_it_needs(
    bundle: Callable[..., Path],
) -> None:
    first = bundle("a.pyz", remote="http://127.0.0.1:8000", quant="fixed:6", cache_size=7)
    second = bundle("b.pyz", remote="http://127.0.0.1:8000", quant="fixed:6", cache_size=7)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert set(names) == {
            "__main__.py",
            "targets/__init__.py",
            CONFIG_ENTRY,
            *(f"targets/{module}" for module in BUNDLED_MODULES),
        }
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert b"import" not in archive.read("targets/__init__.py")
        config = json.loads(archive.read(CONFIG_ENTRY))
    assert EdgeConfig.from_mapping(config) == EdgeConfig(
        remote="http://127.0.0.1:8000", quant="fixed:6", cache_size=7
    )


def test_only_stdlib_models_can_be_bundled(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    with pytest.raises(ValueError, match="--model") as raised:
        check_bundleable(EdgeConfig(model="tests.targets.sample_models:SumModel"))
    assert "\n" not in str(raised.value)
    with pytest.raises(SpecError, match="synthetic"):
        check_bundleable(EdgeConfig(model="synthetic:nope:1ms"))
    with pytest.raises(ValueError, match="--remote"):
        check_bundleable(EdgeConfig(remote="ftp://example"))
    out = tmp_path / "user.pyz"
    ran = run_command(
        servelab_cli.argv(
            "edge", "bundle", "--out", str(out), "--model", "tests.targets.sample_models:SumModel"
        ),
        [],
        REPO,
    )
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1
    assert "cannot be bundled" in ran.stderr
    assert not out.exists()


def test_servelab_edge_bundle_then_run_it(tmp_path: Path, servelab_cli: ServelabCli) -> None:
    out = tmp_path / "cli.pyz"
    built = run_command(
        servelab_cli.argv(
            "edge", "bundle", "--out", str(out), "--quant", "fixed:8", "--cache-size", "4"
        ),
        [],
        REPO,
    )
    assert built.returncode == 0, built.stderr
    ran = run_bundle(out, [b'{"instances": [0.1]}'])
    assert ran.answers[0]["metadata"]["quantization"] == "fixed:8"
    assert ran.stats["cache"]["capacity"] == 4


def test_servelab_edge_run_reads_stdin_and_writes_stdout(servelab_cli: ServelabCli) -> None:
    ran = run_command(
        servelab_cli.argv("edge", "run", "--quant", "int8:4"),
        [b'{"instances": [1, 2]}', b'{"instances": [1, 2]}', b"[]"],
        REPO,
    )
    assert ran.returncode == 0, ran.stderr
    assert [answer.get("metadata", {}).get("source") for answer in ran.answers] == [
        "local",
        "cache",
        None,
    ]
    assert ran.answers[0]["predictions"] == [reference_prediction([int8(1, 4.0), int8(2, 4.0)])]
    assert ran.stats["quantization"] == "int8:4"
    bad = run_command(servelab_cli.argv("edge", "run", "--quant", "int8"), [], REPO)
    assert bad.returncode == 2
    assert "--quant" in bad.stderr


STDLIB_ONLY_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import targets.edge.runtime, targets.edge.bundle
foreign = sorted(
    name for name in sys.modules
    if name.partition(".")[0] not in sys.stdlib_module_names
    and name.partition(".")[0] not in ("targets", "__main__")
)
print(" ".join(foreign))
sys.exit(1 if foreign else 0)
"""


def test_the_edge_package_imports_on_a_bare_python_with_only_the_repo_on_the_path() -> None:
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-c", STDLIB_ONLY_CHECK, str(REPO)],
        capture_output=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
