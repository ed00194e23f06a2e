"""The gevent-free half of servelab's Locust integration, in process: options, answer verdicts,
recording and merging, the session's end (result, verdict, thresholds, exit code), shapes, the
``servelab locust`` argument plan and the CSV import. No Locust and no gevent are imported here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import numpy as np
import pytest

from loadtests.drivers.base import judge_http
from loadtests.drivers.edge import judge_edge
from loadtests.drivers.http_errors import http_error_class
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload
from loadtests.locust_integration.csv_stats import import_locust_csv, rebuild_histogram
from loadtests.locust_integration.results import (
    Collection,
    ProcessRecording,
    ProcessSummary,
    judge_locust,
)
from loadtests.locust_integration.runner import option_value, plan_arguments
from loadtests.locust_integration.session import Session
from loadtests.locust_integration.shape_plans import parse_shape
from loadtests.locust_integration.support import (
    LATENCY_NS_KEY,
    REPLY_KEY,
    add_arguments,
    grpc_address,
    judge_rpc_error,
    pacing_period_s,
    pacing_wait_s,
)
from loadtests.results.result import load_result

VALID = Payload("v1", [[1.0, 2.0]], {"instances": [1.0, 2.0]})
INVALID = Payload("v1", [], {"instances": ["x"]}, valid=False)
ANSWER = b'{"predictions":[1.3],"metadata":{"transport":"rest","model_name":"m",' \
         b'"model_version":"1","request_id":"r","api":"v1"}}'  # fmt: skip


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="locust")
    add_arguments(parser)
    return parser.parse_args(argv)


def test_options_default_and_refuse_bad_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    options = _parse("--threshold", "p99<50ms", "--threshold", "fail_ratio<0.01")
    assert options.threshold == ["p99<50ms", "fail_ratio<0.01"]
    assert (options.seed, options.api, options.instances, options.result) == (42, "v1", "8", None)
    for bad in ("p99<<5ms", "p99:+10%", "nonsense<1"):
        with pytest.raises(SystemExit) as exit_info:
            _parse("--threshold", bad)
        assert exit_info.value.code == 2
        assert repr(bad) in capsys.readouterr().err


def test_grpc_address_takes_grpc_host_then_host() -> None:
    assert grpc_address(_parse("--grpc-host", "127.0.0.1:5"), "http://x:1") == "127.0.0.1:5"
    assert grpc_address(_parse(), "grpc://127.0.0.1:7") == "127.0.0.1:7"
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        grpc_address(_parse(), "http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("payload", "status", "body", "expected"),
    [
        (VALID, 200, ANSWER, (Outcome.OK, None, 1, True)),
        (VALID, 200, b'{"predictions": []}', (Outcome.FAILURE, "schema", 0, False)),
        (VALID, 200, b"not json", (Outcome.FAILURE, "schema", 0, False)),
        (INVALID, 422, b"{}", (Outcome.EXPECTED_REJECTION, None, 0, True)),
        (VALID, 422, b"{}", (Outcome.FAILURE, "http_422", 0, False)),
        (INVALID, 200, ANSWER, (Outcome.FAILURE, "accepted_invalid", 0, False)),
        (VALID, 503, b"", (Outcome.FAILURE, "http_503", 0, False)),
    ],
)
def test_http_answers_are_judged_like_servelab_run(
    payload: Payload, status: int, body: bytes, expected: tuple[Any, ...]
) -> None:
    assert judge_http(payload, status, body) == expected


def test_errors_without_an_answer_get_classes() -> None:
    assert http_error_class(ConnectionRefusedError()) == "connect"
    assert http_error_class(TimeoutError()) == "timeout"
    assert http_error_class(ConnectionResetError()) == "reset"
    assert http_error_class(BrokenPipeError()) == "disconnected"
    assert http_error_class(OSError()) == "io_OSError"

    class HTTPConnectionClosed(Exception):  # geventhttpclient's, by name (no gevent here)
        pass

    class RetriesExceeded(Exception):
        def __init__(self, original: BaseException) -> None:
            self.original = original

    assert http_error_class(HTTPConnectionClosed()) == "disconnected"
    assert http_error_class(RetriesExceeded(TimeoutError())) == "timeout"
    assert http_error_class(RetriesExceeded(ConnectionRefusedError())) == "connect"


def test_grpc_and_edge_answers() -> None:
    import grpc

    class Failed(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped (Any) for mypy
        def __init__(self, code: grpc.StatusCode) -> None:
            self._code = code

        def code(self) -> grpc.StatusCode:
            return self._code

    rejected = Failed(grpc.StatusCode.INVALID_ARGUMENT)
    assert judge_rpc_error(INVALID, rejected)[0] == Outcome.EXPECTED_REJECTION
    assert judge_rpc_error(VALID, Failed(grpc.StatusCode.UNAVAILABLE))[1] == "unavailable"
    assert judge_rpc_error(VALID, RuntimeError())[1] == "client_RuntimeError"
    import orjson

    answer = orjson.loads(ANSWER)
    answer["metadata"]["source"] = "cache"
    assert judge_edge(VALID, answer) == ((Outcome.OK, None, 1, True), "cache")
    refused = {"error": {"code": "invalid_request"}}
    assert judge_edge(INVALID, refused)[0][0] == Outcome.EXPECTED_REJECTION
    assert judge_edge(VALID, {"error": {"code": "model_error"}})[0][1] == "model_error"


class _Clock:
    def __init__(self) -> None:
        self.ns = 1_800_000_000 * 10**9

    def __call__(self) -> int:
        return self.ns


def _recording(clock: _Clock, cpu: list[float]) -> ProcessRecording:
    return ProcessRecording(
        clock_ns=clock, cpu_s=lambda: cpu[0], monotonic_s=lambda: clock.ns / 1e9
    )


def _feed(recording: ProcessRecording, latencies_ns: list[int], start_s: float) -> None:
    for index, latency_ns in enumerate(latencies_ns):
        reply: tuple[Outcome, str | None, int, bool] = (Outcome.OK, None, 1, True)
        if index % 10 == 3:
            reply = (Outcome.FAILURE, "schema", 0, False)
        elif index % 10 == 7:
            reply = (Outcome.EXPECTED_REJECTION, None, 0, True)
        context = {REPLY_KEY: reply, LATENCY_NS_KEY: latency_ns}
        recording.record(latency_ns / 1e6, start_s + index * 0.01, context, None)


def test_worker_snapshots_merge_to_one_exact_recorder() -> None:
    clock, cpu = _Clock(), [0.0]
    rng = np.random.default_rng(3)
    parts = [rng.integers(1_000_000, 50_000_000, size=400).tolist() for _ in range(2)]
    collection = Collection()
    for number, latencies in enumerate(parts):
        recording = _recording(clock, cpu)
        _feed(recording, latencies[:150], clock.ns / 1e9)
        # Locust ships reports as msgpack: what travels must survive it
        early = msgpack.unpackb(msgpack.packb(recording.snapshot()), raw=False)
        collection.absorb(f"worker-{number}", early)
        _feed(recording, latencies[150:], clock.ns / 1e9 + 2)
        cpu[0], clock.ns = cpu[0] + 0.5, clock.ns + 3 * 10**9
        recording.stop()
        collection.absorb(f"worker-{number}", recording.snapshot())  # cumulative: replaces
    recorder, _side, processes = collection.merged()
    assert recorder.requests == 800
    assert recorder.failures == 80
    assert recorder.expected_rejections == 80
    assert recorder.errors == {"schema": 80}
    # latency describes the successes; the failures keep theirs apart (summary.latency_scope)
    succeeded = [v for part in parts for i, v in enumerate(part) if i % 10 not in (3, 7)]
    failed = [v for part in parts for i, v in enumerate(part) if i % 10 == 3]
    for histogram, values in ((recorder.latency, succeeded), (recorder.failure_latency, failed)):
        exact = LatencyHistogram()
        exact.record_many(np.asarray(values, dtype=np.int64))
        assert histogram.total == len(values)
        assert histogram.summary_ms() == exact.summary_ms()  # merged == recorded at once
    assert sum(row["requests"] for row in recorder.timeseries) == 800 - 80  # rows sent once
    assert [p.requests for p in processes] == [400, 400]
    assert all(p.final and p.cpu_share == pytest.approx(0.5 / 3) for p in processes)


def test_verdict_names_what_makes_a_locust_run_invalid() -> None:
    recorder = Recorder()
    hot = ProcessSummary("w1", 11, "h", 0, final=False, cpu_s=2.85, wall_s=3.0)
    verdict = judge_locust(recorder, [hot], interrupted=True, distributed=True)
    assert not verdict.valid
    reasons = " | ".join(verdict.reasons)
    assert "interrupted" in reasons
    assert "no requests were measured" in reasons
    assert "worker w1 sent no report after it stopped" in reasons
    # a saturated generator is the warning it is for the harness, with the same limit
    assert "CPU" not in reasons
    assert any(
        "generator-bound" in w and "Locust process 11 on h used 95% of a core" in w
        for w in verdict.warnings
    )


class _Hook:
    def __init__(self) -> None:
        self.listeners: list[Any] = []

    def add_listener(self, listener: Any) -> None:
        self.listeners.append(listener)

    def fire(self, **kwargs: Any) -> None:
        for listener in self.listeners:
            listener(**kwargs)


def _environment(tmp_path: Path, *argv: str, host: str = "http://127.0.0.1:9") -> Any:
    names = ("test_start", "test_stop", "quitting", "request", "report_to_master", "worker_report")
    total = SimpleNamespace(num_requests=3, num_failures=0,
                            get_response_time_percentile=lambda q: 5)  # fmt: skip
    return SimpleNamespace(
        events=SimpleNamespace(**{name: _Hook() for name in names}),
        host=host,
        parsed_options=_parse("--result", str(tmp_path / "r.json"), *argv),
        runner=None,
        stats=SimpleNamespace(total=total),
        user_classes=[type("RestUser", (), {"servelab_target": "rest"})],
        process_exit_code=None,
        shape_class=None,
    )


def _one_test(environment: Any, *, stop: bool = True) -> None:
    events = environment.events
    events.test_start.fire(environment=environment)
    for latency_ms in (4.0, 5.0, 6.0):
        context = {REPLY_KEY: (Outcome.OK, None, 1, True), LATENCY_NS_KEY: int(latency_ms * 1e6)}
        events.request.fire(response_time=latency_ms, context=context, exception=None,
                            start_time=None, name="x")  # fmt: skip
    if stop:
        events.test_stop.fire(environment=environment)
    events.quitting.fire(environment=environment)


def test_session_writes_the_result_and_gates_on_thresholds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = _environment(tmp_path, "--threshold", "p99<5ms", "--threshold", "p50<1s")
    Session(environment, "local").register()
    _one_test(environment)
    assert environment.process_exit_code == 1
    err = capsys.readouterr().err
    assert "servelab: threshold FAILED 'p99<5ms': p99 = 6.0" in err
    assert "servelab: threshold ok 'p50<1s'" in err
    document = load_result(tmp_path / "r.json")
    assert document["run"]["tool"] == "locust"
    assert document["summary"]["requests"] == 3
    assert document["summary"]["latency_ms"]["p50"] == pytest.approx(5.0, rel=1e-3)
    checks = document["extra"]["thresholds"]
    assert [c["expression"] for c in checks] == ["success_rate>=0.99", "p99<5ms", "p50<1s"]
    assert [c["passed"] for c in checks] == [True, False, True]  # the default gate first
    assert document["extra"]["locust"]["p99_ms"] == 5


def test_session_marks_an_interrupted_test_partial(tmp_path: Path) -> None:
    environment = _environment(tmp_path)
    Session(environment, "local").register()
    _one_test(environment, stop=False)
    document = load_result(tmp_path / "r.json")
    assert document["run"]["partial"] is True
    assert document["verdict"]["reasons"][0] == "interrupted"
    assert environment.process_exit_code == 130  # servelab's exit codes, not Locust's rule


def test_thresholds_fail_when_nothing_was_answered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = _environment(tmp_path, "--threshold", "p99<5ms")
    Session(environment, "local").register()
    environment.events.test_start.fire(environment=environment)
    environment.events.test_stop.fire(environment=environment)
    environment.events.quitting.fire(environment=environment)
    assert environment.process_exit_code == 3  # nothing measured: INVALID outranks the breach
    assert "FAILED 'p99<5ms': no answered requests" in capsys.readouterr().err


def test_session_refuses_remote_targets_and_lone_shapes(tmp_path: Path) -> None:
    remote = Session(_environment(tmp_path, host="http://10.0.0.8:80"), "local")
    assert "'10.0.0.8' is not a loopback address" in (remote.configuration_error() or "")
    allowed = Session(_environment(tmp_path, "--allow-remote", host="http://10.0.0.8:80"), "local")
    assert allowed.configuration_error() is None
    shaped = Session(_environment(tmp_path, "--shape", "ramp:0:5:10s"), "local")
    assert "--shape needs loadtests/locust_integration/shapes.py" in (
        shaped.configuration_error() or ""
    )


@pytest.mark.parametrize(
    ("spec", "ticks"),
    [
        ("step:2s:5,1s:20", [(0, (5, 20.0)), (1.9, (5, 20.0)), (2.5, (20, 20.0)), (3, None)]),
        ("ramp:0:10:10s:5s", [(0, (0, 1.0)), (5, (5, 1.0)), (12, (10, 1.0)), (15, None)]),
        ("spike:2:20:5s:2s:10s", [(4, (2, 20.0)), (5, (20, 20.0)), (7, (2, 20.0)), (10, None)]),
        ("arrival:100:4:3s", [(0, (4, 4.0)), (2.9, (4, 4.0)), (3, None)]),
    ],
)
def test_shape_plans_tick(spec: str, ticks: list[tuple[float, Any]]) -> None:
    plan = parse_shape(spec)
    assert [plan.tick(elapsed) for elapsed, _ in ticks] == [tick for _, tick in ticks]


BAD_SHAPES = ("wave:1", "step:10s", "ramp:0:10", "arrival:0:4:3s", "arrival:10:0:3s",
              "spike:1:2:3s:x:5s", "step:-1s:3")  # fmt: skip


@pytest.mark.parametrize("spec", BAD_SHAPES)
def test_bad_shapes_say_what_is_wrong(spec: str) -> None:
    with pytest.raises(ValueError, match="shape"):
        parse_shape(spec)


def test_arrival_pacing() -> None:
    period = pacing_period_s(parse_shape("arrival:100:4:3s"))
    assert period == pytest.approx(0.04)
    assert pacing_wait_s(period, None, 5.0) == 0.0
    assert pacing_wait_s(period, 5.0, 5.01) == pytest.approx(0.03)
    assert pacing_wait_s(period, 5.0, 5.2) == 0.0  # late: no catching up (closed loop)
    assert pacing_period_s(parse_shape("step:1s:1")) == 0.0


def test_servelab_locust_fills_in_defaults_and_the_target_to_start() -> None:
    assert option_value(["-u", "3", "--users=5"], "-u", "--users") == "5"
    assert option_value(["-u7"], "-u", "--users") == "7"
    args, start = plan_arguments(["GrpcUser", "-u", "3"])
    assert args[-4:] == ["-r", "3", "-t", "10s"]
    assert "--headless" in args
    assert start == ["grpc"]
    args, start = plan_arguments([])
    assert (option_value(args, "-u"), option_value(args, "-r")) == ("8", "8")
    assert args[-1] == "RestUser"
    assert start == ["rest"]
    _, start = plan_arguments(["EdgeUser", "GrpcStreamUser", "--host", "http://127.0.0.1:1"])
    assert start == ["grpc"]
    args, start = plan_arguments(["-u", "2"], default_user=None)  # a foreign locustfile
    assert (start, "RestUser" in args) == ([], False)
    args, start = plan_arguments(["BatchUser", "--shape", "step:1s:2"])
    assert start == []
    assert option_value(args, "-u", "-t") is None  # a shape sets users and time itself


def test_rebuilt_histogram_passes_through_locust_percentiles() -> None:
    points = [(0.0, 1.0), (0.5, 5.0), (0.9, 9.0), (0.99, 20.0), (1.0, 31.0)]
    histogram = rebuild_histogram(points, 1000)
    assert histogram.total == 1000
    for quantile, value_ms in points[1:]:
        assert histogram.percentile_ns(quantile * 100) / 1e6 == pytest.approx(value_ms, rel=1e-3)
    assert histogram.hdr.get_min_value() / 1e6 == pytest.approx(1.0, rel=1e-3)


def test_import_reads_history_and_failures(tmp_path: Path) -> None:
    columns = "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
    (tmp_path / "old_stats.csv").write_text(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
        "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
        f"{columns}\n"
        "POST,/v1/predict,100,2,6,6.5,1,40,90,50,1,6,7,8,9,11,13,16,20,35,40,40\n"
        ",Aggregated,100,2,6,6.5,1,40,90,50,1,6,7,8,9,11,13,16,20,35,40,40\n"
    )
    (tmp_path / "old_stats_history.csv").write_text(
        f"Timestamp,User Count,Type,Name,Requests/s,Failures/s,{columns},Total Request Count,"
        "Total Failure Count,Total Median Response Time,Total Average Response Time,"
        "Total Min Response Time,Total Max Response Time,Total Average Content Size\n"
        "1000,4,,Aggregated,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0,0,0,0\n"
        "1001,4,,Aggregated,40,0,6,7,8,9,11,13,16,20,35,40,40,40,1,6,6,1,30,90\n"
        "1002,4,,Aggregated,60,0,6,7,8,9,11,13,16,20,35,40,40,100,2,6,6.5,1,40,90\n"
    )
    (tmp_path / "old_failures.csv").write_text(
        "Method,Name,Error,Occurrences,First Seen,Last Seen\nPOST,/v1/predict,HTTPError(500),2,,\n"
    )
    document = import_locust_csv(tmp_path / "old")
    summary = document["summary"]
    assert (summary["requests"], summary["failures"], summary["window_s"]) == (100, 2, 2.0)
    assert summary["latency_ms"]["p99"] == pytest.approx(20.0, rel=1e-3)
    assert document["run"]["concurrency"] == 4
    assert document["errors"] == {"HTTPError(500)": 2}
    assert [row["requests"] for row in document["timeseries"]] == [40, 60]
    assert document["extra"]["bucketed_percentiles"] is True


def test_nothing_here_imported_gevent() -> None:
    assert "gevent" not in sys.modules
    assert "locust" not in sys.modules


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("127.0.0.1:8000", "needs http:// or https:// or grpc://"),
        ("http://127.0.0.1:8000/v1/predict", "already ends in /v1/predict"),
    ],
)
def test_session_refuses_a_host_that_is_not_a_base_url(
    tmp_path: Path, host: str, words: str
) -> None:
    session = Session(_environment(tmp_path, host=host), "local")
    assert words in (session.configuration_error() or "")
    assert (
        Session(_environment(tmp_path, host="grpc://127.0.0.1:5"), "local").refused_target() is None
    )
