"""``[[servers]]`` in a bench config: a third-party server servelab starts on free ports, waits
for, loads through a protocol, charges the CPU of, and stops — and refuses in one line when it
cannot start."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from loadtests.cli.app import main
from loadtests.errors import ConfigError
from loadtests.jobs.bench_config import load_config

UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "--host", "127.0.0.1", "--port", "{port}"]
SERVER = f"""
[[servers]]
name = "kserve-like"
argv = {json.dumps([*UVICORN, "tests.loadtests.foreign_apps:kserve_v1_app"])}
cwd = "REPO"
ready_url = "http://127.0.0.1:{{port}}/v1/models/digits"
url = "http://127.0.0.1:{{port}}"
start_timeout = "30s"
"""
# Closed loop only: an open loop's send-lateness rule could call a run INVALID on a busy machine.
CELL = """
[bench]
duration = "1s"
warmup = "0s"

[[cells]]
target = "rest"
server = "kserve-like"
protocol = "kserve-v1"
model_name = "digits"
label = "kserve-like"
concurrency = [1, 2]
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.toml"  # the server imports the test app from the repository
    path.write_text(text.replace("REPO", str(Path(__file__).resolve().parents[2])))
    return path


def test_a_declared_server_is_started_loaded_charged_and_stopped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "--config", str(_config(tmp_path, SERVER + CELL)), "--out", str(out)])
    assert code == 0
    results = sorted(out.glob("*kserve-like*.json"))
    assert len(results) == 2  # one run per load level
    for path in results:
        result = json.loads(path.read_text())
        assert result["verdict"]["valid"], result["verdict"]
        assert result["summary"]["schema_success_rate"] == 1.0
        assert result["run"]["url"].startswith("http://127.0.0.1:")
        assert result["cost"]["target_cpu_s"] is not None  # the server's process tree
        assert result["cost"]["source"] == "target-pid"
    assert (out / "report" / "index.html").exists()


def test_a_server_that_exits_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = SERVER.replace("tests.loadtests.foreign_apps:kserve_v1_app", "no_such_module:app")
    code = main(["bench", "--config", str(_config(tmp_path, broken + CELL)),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "kserve-like target exited with" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (('server = "kserve-like"', 'server = "nope"'), "unknown server 'nope'"),
        (("ready_url", "readiness"), "unknown key"),
        (('protocol = "kserve-v1"', 'protocol = "kserve-v9"'), "expected one of"),
        (('target = "rest"', 'target = "grpc"'), "goes with --target rest"),
        (("argv = ", "argv = [] #"), "expected a list of strings"),
    ],
)
def test_bad_server_tables_name_the_key(tmp_path: Path, edit: tuple[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(_config(tmp_path, (SERVER + CELL).replace(*edit, 1)))
