"""Targets are checked before the clock starts: options that cannot describe the target, and a
probe that finds nothing there or another protocol, are one line and exit 2 — never a run."""

from __future__ import annotations

import dataclasses
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtests.cli.app import main
from loadtests.engine.harness import LoadPlan
from loadtests.engine.loop import run as run_on_loop
from loadtests.jobs import target_checks
from loadtests.jobs.run import execute
from loadtests.jobs.settings import RunSettings
from loadtests.jobs.target_checks import TargetUnusable, check_target_options


@pytest.mark.parametrize(
    ("target", "url", "address", "words"),
    [
        ("rest", "127.0.0.1:8000", None, "needs http:// or https://"),
        ("rest", "ftp://127.0.0.1:8000", None, "needs http:// or https://"),
        ("grpc", "http://127.0.0.1:5", None, "speaks gRPC; give --address"),
        ("grpc-stream", "http://127.0.0.1:5", None, "speaks gRPC"),
        ("rest", None, "127.0.0.1:5", "speaks HTTP; give --url"),
        ("edge", None, "127.0.0.1:5", "speaks HTTP"),
        ("inprocess", "http://127.0.0.1:5", None, "runs in this process"),
        ("batch", None, "127.0.0.1:5", "runs in this process"),
        ("rest", "http://127.0.0.1:8000/v1/predict", None, "already ends in /v1/predict"),
        ("rest", "http://127.0.0.1:8000/api/v2/predict/", None, "(http://127.0.0.1:8000/api)"),
        ("rest", "http://127.0.0.1:8000/v2/models/m/infer", None, "already ends in /infer"),
        ("rest", "http://127.0.0.1:8000/v1/models/m:predict", None, "ends in :predict"),
        ("grpc", None, "http://127.0.0.1:5", "without a scheme"),
    ],
)
def test_options_that_cannot_describe_the_target_are_refused(
    target: str, url: str | None, address: str | None, words: str
) -> None:
    with pytest.raises(TargetUnusable, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_target_options(target, url=url, address=address, target_pid=None)


def test_a_dead_target_pid_is_refused() -> None:
    with pytest.raises(TargetUnusable, match="no such process"):
        check_target_options("rest", url=None, address=None, target_pid=2**22 + 12345)


@pytest.fixture
def answering_404() -> Iterator[str]:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def never_answering() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never reads or answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def _run_cli(*args: str, out: Path) -> int:
    return main(["run", *args, "--duration", "1s", "--out", str(out)])


def test_a_server_answering_404_is_refused_before_any_load(
    answering_404: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    assert _run_cli("--target", "rest", "--url", answering_404, out=out) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "HTTP 404 on the predict route" in error[0]
    assert not out.exists()  # nothing was measured, nothing is passed off as a result


def test_a_server_that_never_answers_is_refused_after_the_probe_timeout(
    never_answering: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(target_checks, "PROBE_TIMEOUT_S", 0.3)
    assert _run_cli("--target", "rest", "--url", never_answering, out=tmp_path / "r.json") == 2
    assert "probe request failed: no answer within" in capsys.readouterr().err


def test_https_against_a_plain_http_server_is_refused(
    answering_404: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = answering_404.replace("http://", "https://")
    assert _run_cli("--target", "rest", "--url", url, out=tmp_path / "r.json") == 2
    assert "probe request failed" in capsys.readouterr().err


def test_a_foreign_target_records_its_url_an_unknown_model_and_no_cost(
    spawn_target: Any,
) -> None:
    target = spawn_target("rest", "--log-level", "off")
    settings = RunSettings(
        target="rest", url=target.url, model_given=False,
        plan=LoadPlan(mode="closed", concurrency=2, duration_s=None, requests=50),
    )  # fmt: skip
    result = run_on_loop(execute(settings, out=None)).result
    assert result["run"]["url"] == target.url
    assert result["run"]["model"] is None  # servelab did not start it, nobody named it
    assert result["cost"]["source"] == "unknown"
    assert result["cost"]["target_cpu_s"] is None  # never the generator's own CPU
    told = dataclasses.replace(settings, model_given=True, target_pid=target.process.pid)
    named = run_on_loop(execute(told, out=None)).result
    assert named["run"]["model"] == "reference"
    assert named["cost"]["source"] == "target-pid"
    assert named["cost"]["target_cpu_s"] is not None
