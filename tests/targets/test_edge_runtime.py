"""The edge runtime in-process: local answers, drift, cache, bad input, and its remote-first mode
against a refused port, fake remotes that fail in each way, and a real REST target that flaps."""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from targets.edge.breaker import CircuitBreaker
from targets.edge.quantize import parse_quant
from targets.edge.remote import RemoteClient
from targets.edge.runtime import EdgeConfig, EdgeRuntime, api_of, run
from targets.models import Model, ReferenceModel, reference_prediction
from targets.schema import build_response, response_problem
from tests.conftest import RunningTarget, SpawnTarget
from tests.targets.test_edge_parts import FakeClock

COOLDOWN_S = 30.0


class CountingConnections:
    """A connection factory that counts TCP connection attempts (``connect`` calls)."""

    def __init__(self) -> None:
        self.connects = 0

    def __call__(self, host: str, port: int, timeout_s: float) -> http.client.HTTPConnection:
        return _CountedConnection(self, host, port, timeout=timeout_s)


class _CountedConnection(http.client.HTTPConnection):
    def __init__(self, counter: CountingConnections, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter = counter

    def connect(self) -> None:
        self._counter.connects += 1
        super().connect()


class CountingModel(ReferenceModel):
    """The reference model, counting the rows it is asked to predict."""

    def __init__(self) -> None:
        self.calls: list[list[list[float]]] = []

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        self.calls.append([list(row) for row in rows])
        return super().predict(rows)


class FlakyModel(ReferenceModel):
    """Raises on a row whose first feature is 13."""

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        if any(row and row[0] == 13 for row in rows):
            raise RuntimeError("unlucky row")
        return super().predict(rows)


def make_runtime(
    *,
    remote: str | None = None,
    quant: str = "int8:8",
    cache_size: int = 1024,
    clock: FakeClock | None = None,
    connections: CountingConnections | None = None,
    drift_every: int = 1,
    model: Model | None = None,
    timeout_s: float = 5.0,
) -> EdgeRuntime:
    client = None
    if remote is not None:
        client = RemoteClient(
            remote, timeout_s=timeout_s, connection_factory=connections or CountingConnections()
        )
    return EdgeRuntime(
        model or ReferenceModel(),
        parse_quant(quant),
        cache_size=cache_size,
        remote=client,
        breaker=CircuitBreaker(cooldown_s=COOLDOWN_S, clock=clock or FakeClock()),
        drift_every=drift_every,
    )


def int8(value: float, value_range: float = 8.0) -> float:
    scale = value_range / 127
    return min(127, max(-127, round(value / scale))) * scale


def fixed(value: float, bits: int) -> float:
    return round(value * 2.0**bits) / 2.0**bits


def sources(answers: Sequence[dict[str, Any]]) -> list[str]:
    return [answer["metadata"]["source"] for answer in answers]


def assert_canonical(answers: Sequence[dict[str, Any]]) -> None:
    for answer in answers:
        assert response_problem(answer) is None, answer
        assert answer["metadata"]["transport"] == "edge"


@pytest.fixture
def refused_url() -> str:
    """A loopback port nothing listens on: bound, read, closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeRemote:
    """A stdlib HTTP/1.1 server in a thread that answers as ``behaviour`` says."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.requests: list[tuple[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()  # the socket already listens: no readiness to wait for

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def answer(self, path: str, body: Any) -> tuple[int, bytes]:
        rows = body.get("rows") or [body.get("instances")]
        predictions = [reference_prediction(row) for row in rows]
        if self.behaviour == "wrong_count":
            predictions.append(0.0)
        canonical = build_response(
            predictions,
            transport="rest",
            model_name="remote-reference",
            model_version="9.9",
            request_id="remote-1",
            api="v2" if path.endswith("v2/predict") else "v1",
        )
        if self.behaviour == "http_500":
            return 500, b'{"error": {"code": "model_error", "message": "boom"}}'
        if self.behaviour == "reject":
            return 422, b'{"error": {"code": "invalid_request", "message": "too many"}}'
        if self.behaviour == "garbage":
            return 200, b"<html>proxy error</html>"
        return 200, json.dumps(canonical).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        remote = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real REST target

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                body = json.loads(self.rfile.read(length))
                remote.requests.append((self.path, body))
                status, payload = remote.answer(self.path, body)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                # Hang up without announcing it: the client's kept-alive connection goes stale.
                self.close_connection = remote.behaviour == "close_after_each"

        return Handler


@pytest.fixture
def fake_remote() -> Iterator[Callable[[str], FakeRemote]]:
    started: list[FakeRemote] = []

    def start(behaviour: str) -> FakeRemote:
        started.append(FakeRemote(behaviour))
        return started[-1]

    yield start
    for remote in started:
        remote.close()


@pytest.mark.parametrize(
    ("quant", "quantise"),
    [("int8:8", int8), ("fixed:3", lambda value: fixed(value, 3))],
)
def test_local_answers_predict_on_dequantised_rows_and_measure_the_drift(
    quant: str, quantise: Callable[[float], float]
) -> None:
    rng = random.Random(7)
    rows = [[rng.uniform(-6, 6) for _ in range(rng.randint(1, 5))] for _ in range(40)]
    with make_runtime(quant=quant, cache_size=0) as runtime:
        answers = [runtime.handle({"instances": row}) for row in rows]
    assert_canonical(answers)
    drifts = []
    for row, answer in zip(rows, answers, strict=True):
        seen = [quantise(value) for value in row]
        expected_drift = abs(reference_prediction(seen) - reference_prediction(row))
        assert answer["predictions"] == [reference_prediction(seen)]
        assert answer["metadata"]["quantization"] == quant
        assert answer["metadata"]["source"] == "local"
        assert answer["metadata"]["quantization_drift"] == expected_drift
        drifts.append(expected_drift)
    stats = runtime.stats()
    assert stats["drift"] == {"max": max(drifts), "measured": 40, "every": 1}
    assert max(drifts) > 0
    assert stats["by_source"] == {"cache": 0, "remote": 0, "local": 40}


def test_v2_rows_are_answered_together_with_the_largest_drift_and_options() -> None:
    rows = [[1.03, 2.0], [0.5], [-7.77, 3.1, 0.0]]
    with make_runtime() as runtime:
        answer = runtime.handle({"rows": rows, "request_id": "abc", "options": {"precision": 2}})
    assert response_problem(answer, expected_predictions=3) is None
    seen = [[int8(value) for value in row] for row in rows]
    assert answer["predictions"] == [round(reference_prediction(row), 2) for row in seen]
    assert answer["metadata"]["request_id"] == "abc"
    assert answer["metadata"]["api"] == "v2"
    drift = max(
        abs(reference_prediction(q) - reference_prediction(x))
        for q, x in zip(seen, rows, strict=True)
    )
    assert answer["metadata"]["quantization_drift"] == drift


def test_rows_that_quantise_alike_share_one_cache_entry() -> None:
    with make_runtime() as runtime:
        first = runtime.handle({"instances": [1.0, 2.0]})
        second = runtime.handle({"instances": [1.01, 1.99]})
        third = runtime.handle({"instances": [1.5, 2.0]})
    assert_canonical([first, second, third])
    assert sources([first, second, third]) == ["local", "cache", "local"]
    assert second["predictions"] == first["predictions"]
    assert second["metadata"]["quantization_drift"] is None  # not this row's to report
    assert second["metadata"]["request_id"] != first["metadata"]["request_id"]
    cache = runtime.stats()["cache"]
    assert (cache["hits"], cache["misses"], cache["size"]) == (1, 2, 2)


def test_cache_size_bounds_the_entries_and_zero_disables_the_cache() -> None:
    with make_runtime(cache_size=2) as runtime:
        for value in (1.0, 2.0, 3.0, 1.0):
            runtime.handle({"instances": [value]})
    assert runtime.stats()["cache"] == {
        "capacity": 2,
        "size": 2,
        "hits": 0,
        "misses": 4,
        "evictions": 2,
    }
    with make_runtime(cache_size=0) as runtime:
        answers = [runtime.handle({"instances": [1.0]}) for _ in range(3)]
    assert sources(answers) == ["local"] * 3


def test_drift_is_sampled_and_costs_no_second_call_when_nothing_changed() -> None:
    model = CountingModel()
    with make_runtime(model=model, drift_every=2, cache_size=0) as runtime:
        answers = [runtime.handle({"instances": [value]}) for value in (0.1, 0.2, 0.3, 0.4)]
        off_grid = runtime.handle({"instances": [2.0, 0.0]})  # 2.0 is not a multiple of 8/127
    drifts = [answer["metadata"]["quantization_drift"] for answer in answers]
    assert drifts[1] is None
    assert drifts[3] is None
    assert drifts[0] is not None
    assert drifts[2] is not None
    assert off_grid["metadata"]["quantization_drift"] is not None
    assert len(model.calls) == 4 + 2 + 2  # one call per answer, one more per measurement

    model = CountingModel()
    with make_runtime(model=model, quant="fixed:2", cache_size=0) as runtime:
        exact = runtime.handle({"instances": [0.25, 1.5, -3]})
    assert exact["metadata"]["quantization_drift"] == 0.0
    assert len(model.calls) == 1


def test_bad_requests_get_error_bodies_and_the_runtime_goes_on() -> None:
    lines = [
        b"not json",
        b'{"instances": [1, "x"]}',
        b"[1, 2]",
        b'{"instances": [1e400]}',
        b'{"rows": []}',
        b'{"instances": [1], "model_version": "7.0"}',
        b'{"instances": [' + b"1," * 600_000 + b"1]}",
        b"\xff\xfe{",
        b'{"instances": [1, 2]}',
    ]
    with make_runtime() as runtime:
        answers = [runtime.handle_line(line) for line in lines]
    codes = [answer.get("error", {}).get("code") for answer in answers]
    assert codes == [
        "malformed_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "model_version_mismatch",
        "payload_too_large",
        "malformed_request",
        None,
    ]
    assert response_problem(answers[-1]) is None
    assert runtime.stats()["errors"] == 8
    assert runtime.stats()["requests"] == 9


def test_a_model_failure_is_reported_and_the_runtime_goes_on() -> None:
    with make_runtime(model=FlakyModel()) as runtime:
        failed = runtime.handle({"instances": [13, 1]})
        fine = runtime.handle({"instances": [1, 1]})
    assert failed["error"]["code"] == "model_error"
    assert "RuntimeError" in failed["error"]["message"]
    assert response_problem(fine) is None


def test_api_of_reads_v2_from_any_v2_only_key() -> None:
    assert api_of({"instances": [1]}) == "v1"
    assert api_of({"instances": [1], "extra": 1}) == "v1"
    assert api_of([1]) == "v1"
    for key in ("rows", "request_id", "model_version", "options"):
        assert api_of({"instances": [1], key: None}) == "v2"


def test_an_unreachable_remote_costs_one_connection_attempt_while_the_breaker_is_open(
    refused_url: str,
) -> None:
    clock = FakeClock()
    connections = CountingConnections()
    with make_runtime(remote=refused_url, clock=clock, connections=connections) as runtime:
        answers = [runtime.handle({"instances": [i / 4, 1.0]}) for i in range(20)]
        assert connections.connects == 1
        assert runtime.breaker.state() == "open"
        clock.advance(COOLDOWN_S)  # half-open: one trial, refused again, open again
        answers += [runtime.handle({"instances": [i / 4, 2.0]}) for i in range(20)]
    assert_canonical(answers)
    assert sources(answers) == ["local"] * 40
    assert connections.connects == 2
    remote = runtime.stats()["remote"]
    assert remote["failures"] == {"ConnectionRefusedError": 2}
    assert remote["breaker"]["opens"] == 2
    assert remote["breaker"]["state"] == "open"
    assert remote["breaker"]["rejected"] == 38


def test_remote_answers_first_on_one_kept_alive_connection(
    fake_remote: Callable[[str], FakeRemote],
) -> None:
    remote = fake_remote("ok")
    connections = CountingConnections()
    with make_runtime(remote=remote.url, connections=connections) as runtime:
        answers = [runtime.handle({"instances": [float(i), 1.03]}) for i in range(5)]
        answers.append(runtime.handle({"instances": [0.0, 1.03]}))  # same as the first
        answers.append(runtime.handle({"rows": [[1.0], [2.0]]}))
    assert_canonical(answers)
    assert sources(answers) == ["remote"] * 5 + ["cache", "remote"]
    assert connections.connects == 1
    assert answers[0]["metadata"]["model_name"] == "remote-reference"
    assert answers[0]["metadata"]["model_version"] == "9.9"
    assert answers[0]["metadata"]["quantization_drift"] is None
    # The remote sees the quantised rows, so cache, remote and local answers agree.
    assert remote.requests[0] == ("/v1/predict", {"instances": [0.0, int8(1.03)]})
    assert remote.requests[-1] == ("/v2/predict", {"rows": [[int8(1.0)], [int8(2.0)]]})
    assert answers[0]["predictions"] == [reference_prediction([0.0, int8(1.03)])]


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [("http_500", "http_500"), ("garbage", "invalid_answer"), ("wrong_count", "invalid_answer")],
)
def test_a_failing_remote_is_replaced_by_the_local_model(
    fake_remote: Callable[[str], FakeRemote], behaviour: str, kind: str
) -> None:
    remote = fake_remote(behaviour)
    with make_runtime(remote=remote.url) as runtime:
        answers = [runtime.handle({"instances": [float(i)]}) for i in range(4)]
    assert_canonical(answers)
    assert sources(answers) == ["local"] * 4
    assert len(remote.requests) == 1
    assert answers[0]["metadata"]["model_name"] == "reference"
    assert runtime.stats()["remote"]["failures"] == {kind: 1}


def test_a_rejection_falls_back_locally_without_opening_the_breaker(
    fake_remote: Callable[[str], FakeRemote],
) -> None:
    remote = fake_remote("reject")
    with make_runtime(remote=remote.url) as runtime:
        answers = [runtime.handle({"instances": [float(i)]}) for i in range(3)]
    assert sources(answers) == ["local"] * 3
    assert len(remote.requests) == 3
    stats = runtime.stats()["remote"]
    assert stats["rejections"] == 3
    assert stats["breaker"]["state"] == "closed"


def test_a_silent_remote_costs_one_timeout() -> None:
    # Listening but never accepting: the connection is made, the answer never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with make_runtime(remote=url, timeout_s=0.05) as runtime:
            answers = [runtime.handle({"instances": [float(i)]}) for i in range(5)]
    assert sources(answers) == ["local"] * 5
    assert runtime.stats()["remote"]["failures"] == {"TimeoutError": 1}


def test_a_stale_kept_alive_connection_is_retried_once_not_counted_as_a_failure(
    fake_remote: Callable[[str], FakeRemote],
) -> None:
    remote = fake_remote("close_after_each")
    connections = CountingConnections()
    with make_runtime(remote=remote.url, connections=connections) as runtime:
        answers = [runtime.handle({"instances": [float(i)]}) for i in range(4)]
    assert sources(answers) == ["remote"] * 4
    assert connections.connects == 4
    assert runtime.stats()["remote"]["breaker"]["opens"] == 0


@pytest.mark.slow
def test_a_remote_that_flaps_is_used_while_up_and_replaced_while_down(
    spawn_target: SpawnTarget,
) -> None:
    first = spawn_target("rest")
    clock = FakeClock()
    connections = CountingConnections()
    runtime = make_runtime(remote=first.url, cache_size=0, clock=clock, connections=connections)
    second: RunningTarget | None = None
    try:
        up = [runtime.handle({"instances": [float(i), 1.0]}) for i in range(3)]
        assert sources(up) == ["remote"] * 3
        assert connections.connects == 1

        first.stop()
        down = [runtime.handle({"instances": [float(i), 1.0]}) for i in range(6)]
        assert sources(down) == ["local"] * 6
        # One failed attempt in all: the stale connection, retried once on a refused port.
        assert connections.connects == 2
        assert sum(runtime.stats()["remote"]["failures"].values()) == 1
        assert runtime.breaker.state() == "open"

        second = spawn_target("rest", "--port", str(first.info["port"]))  # the same port again
        still_open = runtime.handle({"instances": [9.0]})
        assert sources([still_open]) == ["local"]
        assert connections.connects == 2

        clock.advance(COOLDOWN_S)
        back = [runtime.handle({"instances": [float(i), 1.0]}) for i in range(3)]
        assert sources(back) == ["remote"] * 3
        assert runtime.breaker.state() == "closed"
        assert connections.connects == 3
    finally:
        runtime.close()
        if second is not None:
            second.stop()
    answers = [*up, *down, still_open, *back]
    assert_canonical(answers)
    for answer in [*up, *back]:
        assert answer["metadata"]["model_name"] == "reference"
    assert [answer["predictions"] for answer in up] == [answer["predictions"] for answer in back]
    assert [answer["predictions"] for answer in up] == [
        answer["predictions"] for answer in down[:3]
    ]


def test_run_answers_each_line_and_reports_stats_on_stderr(refused_url: str) -> None:
    lines = b'{"instances": [1, 2]}\n\n{"instances": [1, 2]}\nnope\n'
    stdout, stderr = io.BytesIO(), io.StringIO()
    config = EdgeConfig(remote=refused_url, timeout_ms=500.0)
    assert run(config, io.BytesIO(lines), stdout, stderr) == 0
    answers = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert len(answers) == 3
    assert sources(answers[:2]) == ["local", "cache"]
    assert answers[2]["error"]["code"] == "malformed_request"
    log = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert log[0]["event"] == "remote_unavailable"
    stats = log[-1]
    assert stats["event"] == "edge_stats"
    assert stats["by_source"] == {"cache": 1, "remote": 0, "local": 1}
    assert stats["remote"]["breaker"]["state"] == "open"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cache_size": -1}, "--cache-size"),
        ({"timeout_ms": 0.0}, "--timeout-ms"),
        ({"quant": "int4:2"}, "--quant"),
        ({"failure_threshold": 0}, "--failure-threshold"),
        ({"cooldown_s": -1.0}, "--cooldown-s"),
        ({"drift_every": -2}, "--drift-every"),
    ],
)
def test_edge_config_names_the_bad_option(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EdgeConfig.from_mapping(options)


def test_edge_config_ignores_foreign_keys_and_reads_an_empty_remote_as_none() -> None:
    config = EdgeConfig.from_mapping({"command": "edge", "remote": "", "cache_size": 3})
    assert config == EdgeConfig(cache_size=3)


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8000", "https://127.0.0.1", "http://", "http://h:99999", "http://h/?q=1"]
)
def test_remote_client_rejects_a_url_it_cannot_post_to(url: str) -> None:
    with pytest.raises(ValueError, match="--remote"):
        RemoteClient(url, timeout_s=1.0)
