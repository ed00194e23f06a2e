"""The server-side view: Prometheus texts in the style of each server → the window's figures
(``loadtests.results.server_metrics``), and ``servelab run`` scraping servelab's own REST target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtests.results.result import load_result
from loadtests.results.server_metrics import Scrape, server_view_lines, totals, window_block
from tests.conftest import ServelabCli, SpawnTarget
from tests.loadtests.foreign_apps import kserve_v1_app, served

ENV = {"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"}


def _block(*texts: str | None) -> dict[str, Any]:
    scrapes = [Scrape(float(at_s), text) for at_s, text in enumerate(texts)]
    block = window_block(scrapes, source="http://127.0.0.1:1/metrics", found="given", start="-")
    assert block is not None
    return dict(block)


_INFER = 'app_name="mlserver",method="POST",path="/v2/models/digits/infer",status_code="200"'
_READY = 'app_name="mlserver",method="GET",path="/v2/models/digits/ready",status_code="200"'


def _mlserver(rest: int, rest_s: float, infer: int, infer_s: float, queued: float) -> str:
    return f"""\
# HELP rest_server_requests_total Total number of requests
# TYPE rest_server_requests_total counter
rest_server_requests_total{{{_INFER}}} {rest}
rest_server_requests_total{{{_READY}}} 7
# TYPE rest_server_request_duration_seconds histogram
rest_server_request_duration_seconds_bucket{{{_INFER},le="0.01"}} {rest}
rest_server_request_duration_seconds_bucket{{{_INFER},le="+Inf"}} {rest}
rest_server_request_duration_seconds_sum{{{_INFER}}} {rest_s}
rest_server_request_duration_seconds_count{{{_INFER}}} {rest}
# TYPE model_infer_request_duration summary
model_infer_request_duration_count{{model="digits",version=""}} {infer}
model_infer_request_duration_sum{{model="digits",version=""}} {infer_s}
# TYPE model_infer_request_success_total counter
model_infer_request_success_total{{model="digits",version=""}} {infer}
# TYPE model_infer_request_failure_total counter
model_infer_request_failure_total{{model="digits",version=""}} 0.0
# TYPE parallel_request_queue histogram
parallel_request_queue_bucket{{workername="w1",le="+Inf"}} {infer}
parallel_request_queue_sum{{workername="w1"}} {queued}
parallel_request_queue_count{{workername="w1"}} {infer}
"""


def test_mlserver_rest_counts_requests_and_means_its_histogram_and_queue_length() -> None:
    block = _block(_mlserver(10, 0.05, 10, 0.02, 10.0), _mlserver(110, 0.45, 110, 0.22, 160.0))
    assert block["server"] == "mlserver"
    assert block["families"] == {
        "requests": ["rest_server_requests_total"],
        "duration": ["rest_server_request_duration_seconds"],
        "queue_length": ["parallel_request_queue"],
    }
    assert block["requests"] == 100  # the readiness counter did not move
    assert block["mean_ms"] == pytest.approx(4.0)  # (0.45 - 0.05) s / 100
    assert block["queue_length_mean"] == pytest.approx(1.5)  # a length, not a time
    assert block["queue_ms"] is None
    lines = server_view_lines(block, 6.5)
    assert "mean 4.000 ms by its own timer beside the client's mean 6.500 ms" in lines[0]
    assert lines[1].startswith("2.500 ms outside the server's timer: network, client")
    assert "not a time" in lines[2]


def test_mlserver_grpc_run_is_read_from_the_model_summary_when_rest_did_not_move() -> None:
    block = _block(_mlserver(3, 0.01, 10, 0.02, 10.0), _mlserver(3, 0.01, 60, 0.12, 70.0))
    assert block["families"]["duration"] == ["model_infer_request_duration"]
    assert block["requests"] == 50
    assert block["mean_ms"] == pytest.approx(2.0)  # summary: (0.12 - 0.02) s / 50


def _kserve(count: int, pre_s: float, predict_s: float, post_s: float) -> str:
    lines = ["# HELP request_predict_seconds predict latency"]
    for stage, spent in (("preprocess", pre_s), ("predict", predict_s), ("postprocess", post_s)):
        lines += [
            f"# TYPE request_{stage}_seconds histogram",
            f'request_{stage}_seconds_bucket{{le="+Inf",model_name="digits"}} {count}',
            f'request_{stage}_seconds_count{{model_name="digits"}} {count}',
            f'request_{stage}_seconds_sum{{model_name="digits"}} {spent}',
            f'request_{stage}_seconds_created{{model_name="digits"}} 1.7e9',
        ]
    return "\n".join(lines) + "\n"


def test_kserve_counts_its_predict_histogram_and_adds_the_stage_means() -> None:
    block = _block(_kserve(5, 0.001, 0.01, 0.0005), _kserve(205, 0.021, 0.41, 0.0205))
    assert block["server"] == "kserve"
    assert block["requests"] == 200  # no request counter: the predict histogram's count
    # 0.1 ms preprocess + 2 ms predict + 0.1 ms postprocess
    assert block["mean_ms"] == pytest.approx(2.2)


_BENTO = 'http_response_code="200",service_name="Digits",service_version="not available"'
_PREDICT = f'endpoint="/predict",{_BENTO}'
_READYZ = f'endpoint="/readyz",{_BENTO}'


def _bentoml(predicted: int, spent_s: float, ready: int) -> str:
    return f"""\
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{{{_PREDICT}}} {predicted}
bentoml_service_request_total{{{_READYZ}}} {ready}
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_sum{{{_PREDICT}}} {spent_s}
bentoml_service_request_duration_seconds_count{{{_PREDICT}}} {predicted}
bentoml_service_request_duration_seconds_sum{{{_READYZ}}} {ready * 0.5}
bentoml_service_request_duration_seconds_count{{{_READYZ}}} {ready}
"""


def test_bentoml_leaves_out_readiness_and_means_its_histogram() -> None:
    block = _block(_bentoml(2, 0.02, 3), _bentoml(52, 0.27, 9))
    assert block["server"] == "bentoml"
    assert block["requests"] == 50  # /readyz is not inference
    assert block["mean_ms"] == pytest.approx(5.0)


def _triton(success: int, duration_us: int, queue_us: int) -> str:
    return f"""\
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="digits",version="1"}} {success}
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{{model="digits",version="1"}} 0
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{{model="digits",version="1"}} {duration_us}
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{{model="digits",version="1"}} {queue_us}
"""


def test_triton_queue_time_comes_from_its_cumulative_microseconds() -> None:
    block = _block(_triton(0, 0, 0), _triton(40, 120_000, 20_000))
    assert (block["server"], block["requests"]) == ("triton", 40)
    assert block["mean_ms"] == pytest.approx(3.0)
    assert block["queue_ms"] == pytest.approx(0.5)
    assert "server queue time: mean 0.500 ms" in server_view_lines(block, 4.0)[2]


def _servelab(predicted: int, spent_s: float, scrapes: int) -> str:
    return f"""\
# TYPE servelab_requests_total counter
servelab_requests_total{{route="/v1/predict",status="200"}} {predicted}
servelab_requests_total{{route="/metrics",status="200"}} {scrapes}
# TYPE servelab_request_latency_seconds histogram
servelab_request_latency_seconds_sum{{route="/v1/predict",status="200"}} {spent_s}
servelab_request_latency_seconds_count{{route="/v1/predict",status="200"}} {predicted}
servelab_request_latency_seconds_sum{{route="/metrics",status="200"}} {scrapes * 0.01}
servelab_request_latency_seconds_count{{route="/metrics",status="200"}} {scrapes}
"""


def test_servelab_leaves_out_its_own_scrapes_and_builds_a_series() -> None:
    block = _block(_servelab(0, 0.0, 0), _servelab(100, 0.1, 1), None, _servelab(300, 0.5, 3))
    assert (block["server"], block["requests"]) == ("servelab", 300)
    assert block["mean_ms"] == pytest.approx(0.5 / 300 * 1e3)
    assert block["scrapes"] == {"ok": 3, "missing": 1}
    # the missing scrape merges its two seconds into one interval
    assert block["series"] == [
        {"t_s": 1.0, "interval_s": 1.0, "requests": 100, "mean_ms": pytest.approx(1.0)},
        {"t_s": 3.0, "interval_s": 2.0, "requests": 200, "mean_ms": pytest.approx(2.0)},
    ]


def test_generic_names_are_the_fallback() -> None:
    def text(count: int, spent_s: float) -> str:
        return (
            "# TYPE app_http_requests_total counter\n"
            f'app_http_requests_total{{handler="/score"}} {count}\n'
            "# TYPE app_request_duration_seconds histogram\n"
            f"app_request_duration_seconds_sum {spent_s}\n"
            f"app_request_duration_seconds_count {count}\n"
        )

    block = _block(text(1, 0.001), text(21, 0.061))
    assert block["server"] == "generic"
    assert block["families"] == {
        "requests": ["app_http_requests_total"],
        "duration": ["app_request_duration_seconds"],
    }
    assert (block["requests"], block["mean_ms"]) == (20, pytest.approx(3.0))


def test_a_missing_end_scrape_or_a_reset_counter_is_not_measured_never_zero() -> None:
    ended_missing = _block(_servelab(0, 0.0, 0), _servelab(100, 0.1, 1), None)
    assert (ended_missing["requests"], ended_missing["mean_ms"]) == (None, None)
    restarted = _block(_servelab(500, 1.0, 0), _servelab(20, 0.02, 1))
    assert (restarted["requests"], restarted["mean_ms"]) == (None, None)
    assert "— requests counted by the server" in server_view_lines(restarted, 1.0)[0]


def test_text_that_is_not_an_exposition_is_a_missing_scrape() -> None:
    with pytest.raises(ValueError, match="<html>"):
        totals("<html>not metrics</html>\n")
    scrapes = [Scrape(0.0, "<html>no</html>\n"), Scrape(1.0, None)]
    assert window_block(scrapes, source="u", found="auto", start="-") is None


# -- servelab run against servelab's own REST target (real uvicorn, real /metrics) ----------------


def _run(servelab_cli: ServelabCli, tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "r.json"
    result = servelab_cli("run", *args, "--out", str(out), cwd=tmp_path, env=ENV)
    assert result.returncode in (0, 3), result.stderr  # 3: INVALID on a busy shared machine
    document: dict[str, Any] = dict(load_result(out))
    document["stdout"], document["stderr"] = result.stdout, result.stderr
    return document


def test_server_counts_every_request_of_a_run_without_warmup(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    document = _run(
        servelab_cli, tmp_path, "--target", "rest", "--concurrency", "4", "--duration", "2s"
    )
    summary, block = document["summary"], document["extra"]["server_metrics"]
    assert (block["found"], block["server"]) == ("auto", "servelab")
    assert block["source"].endswith("/metrics")
    # No warm-up: the first scrape is taken before any load and the last after every answer,
    # and the scrapes themselves are left out (route /metrics): the counts agree exactly.
    assert block["requests"] == summary["requests"]
    assert block["start"].startswith("before the load")
    assert 0 < block["mean_ms"] <= summary["latency_ms"]["mean"]
    assert block["scrapes"]["missing"] == 0
    assert block["scrapes"]["ok"] >= 3
    assert sum(point["requests"] for point in block["series"]) == block["requests"]
    assert "outside the server's timer" in str(document["stdout"])


def test_server_count_after_a_warmup_is_within_the_in_flight_slack(
    tmp_path: Path, servelab_cli: ServelabCli
) -> None:
    document = _run(
        servelab_cli, tmp_path, "--target", "rest", "--concurrency", "4", "--warmup", "1s",
        "--duration", "2s", "--json",
    )  # fmt: skip
    summary, block = document["summary"], document["extra"]["server_metrics"]
    # The first scrape is sent at the warm-up's end. A request counted on the wrong side of
    # that boundary was either in flight then (a warm-up request the server counts after its
    # baseline: at most the concurrency, 4) or answered during the scrape's round trip (a
    # measured request in the baseline: at most the throughput times that round trip).
    slack = 4 + summary["throughput_rps"] * block["start_scrape_ms"] / 1e3
    assert abs(block["requests"] - summary["requests"]) <= slack
    assert block["start"].startswith("at the end of the warm-up")
    assert 0 < block["mean_ms"] <= summary["latency_ms"]["mean"]
    assert json.loads(str(document["stdout"]))["server_metrics"]["requests"] == block["requests"]


def test_a_metrics_url_that_answers_404_leaves_no_server_metrics(
    tmp_path: Path, servelab_cli: ServelabCli, spawn_target: SpawnTarget
) -> None:
    target = spawn_target("rest")
    given = _run(
        servelab_cli, tmp_path, "--target", "rest", "--url", target.url, "--requests", "200",
        "--metrics-url", f"{target.url}/no-metrics-here",
    )  # fmt: skip
    assert "server_metrics" not in given["extra"]
    assert given["summary"]["failures"] == 0
    assert "answered 404: no server metrics recorded" in str(given["stderr"])
    with served(kserve_v1_app()) as url:  # found, not given: a 404 there is silent
        found = _run(
            servelab_cli, tmp_path, "--target", "rest", "--url", url, "--protocol", "kserve-v1",
            "--model-name", "digits", "--requests", "100",
        )  # fmt: skip
    assert "server_metrics" not in found["extra"]
    assert "metrics" not in str(found["stderr"])


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://127.0.0.1/metrics", "give an http:// or https:// URL"),
        ("http:///metrics", "give an http:// or https:// URL"),
        ("http://10.1.2.3:8082/metrics", "is not a loopback address"),
    ],
)
def test_a_bad_metrics_url_is_one_line_exit_2(
    tmp_path: Path, servelab_cli: ServelabCli, url: str, words: str
) -> None:
    result = servelab_cli("run", "--target", "rest", "--metrics-url", url, cwd=tmp_path, env=ENV)
    assert result.returncode == 2
    assert words in result.stderr
    assert "--metrics-url" in result.stderr
    assert result.stderr.strip().count("\n") == 0
