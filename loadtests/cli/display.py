"""What ``servelab run`` shows: a live line on a terminal (rich), then a summary table;
plain text or JSON for CI."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loadtests.engine.harness import RunStats
from loadtests.engine.histogram import LATENCY_KEYS
from loadtests.engine.recorder import Recorder
from loadtests.results.document import ResultDocument, SummaryBlock
from loadtests.results.server_metrics import server_view_lines


class LiveProgress:
    """Elapsed, requests, errors, current p50/p99 and achieved rate, refreshed each tick."""

    def __init__(self, *, scheduled_rate: float | None, stream: TextIO | None = None) -> None:
        self.console = Console(file=stream or sys.stderr)
        self.scheduled_rate = scheduled_rate
        self.started = time.perf_counter()
        self._last_requests = 0
        self._last_time = self.started
        self._live = Live(Text("starting…"), console=self.console, refresh_per_second=4)

    def __enter__(self) -> LiveProgress:
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.__exit__(None, None, None)

    def __call__(self, recorder: Recorder, stats: RunStats) -> None:
        now = time.perf_counter()
        recent = recorder.requests - self._last_requests
        rate = recent / max(now - self._last_time, 1e-9)
        self._last_requests, self._last_time = recorder.requests, now
        last = recorder.timeseries[-1] if recorder.timeseries else None
        p50 = f"{last['p50_ms']:.2f}" if last else "-"
        p99 = f"{last['p99_ms']:.2f}" if last else "-"
        schedule = f" / {self.scheduled_rate:g} scheduled" if self.scheduled_rate else ""
        self._live.update(
            Text(
                f"{now - self.started:6.1f}s  requests {recorder.requests:>9,}  "
                f"errors {recorder.failures:>6,}  p50 {p50} ms  p99 {p99} ms  "
                f"rate {rate:,.0f}/s{schedule}"
            )
        )


# The summary table shows these of a latency block (``LATENCY_KEYS``): a terminal is narrow.
SHOWN = tuple(key for key in LATENCY_KEYS if key in ("p50", "p90", "p99", "p999", "max"))
UNSEEN = "— (no successful request, or this client cannot see when its bytes left)"


def _row(name: str, block: dict[str, float] | None) -> list[str]:
    if block is None:  # never shown as 0: the instant was not observed
        return [name] + ["—"] * len(SHOWN)
    return [name] + [f"{block[key]:.3f}" for key in SHOWN]


def latency_blocks(summary: SummaryBlock) -> list[tuple[str, dict[str, float] | None]]:
    """The four histograms of a run, named for what each one times (successful requests;
    ``—`` when none succeeded), and the failures' elapsed time when there were any."""
    succeeded = summary.get("successes") != 0
    blocks: list[tuple[str, dict[str, float] | None]] = [
        ("from intended start", summary["latency_ms"] if succeeded else None),
        ("service (from the wire)", summary["service_latency_ms"] if succeeded else None),
        ("client queue (to the wire)", summary.get("client_queue_ms") if succeeded else None),
        ("send lateness", summary.get("send_lateness_ms")),
    ]
    if summary.get("failures") and summary.get("failure_latency_ms") is not None:
        blocks.append(("failures (elapsed)", summary["failure_latency_ms"]))
    return blocks


def summary_table(result: ResultDocument) -> Table:
    run, summary = result["run"], result["summary"]
    title = f"{run['target']} · {run['mode']} · {run['model']}"
    table = Table(title=title, show_header=True)
    for column in ("latency (ms)", *(key.replace("p999", "p99.9") for key in SHOWN)):
        table.add_column(column, justify="right")
    for name, block in latency_blocks(summary):
        table.add_row(*_row(name, block))
    return table


def summary_lines(result: ResultDocument, path: str | None) -> list[str]:
    summary, verdict = result["summary"], result["verdict"]
    state = "VALID" if verdict["valid"] else "INVALID"
    lines = [
        f"verdict: {state}" + (f" — {'; '.join(verdict['reasons'])}" if verdict["reasons"] else ""),
        f"requests {summary['requests']:,}  successes {summary['successes']:,}  "
        f"failures {summary['failures']:,}  expected rejections {summary['expected_rejections']:,}",
        f"success rate {summary['success_rate']:.4f}  "
        f"schema success {summary['schema_success_rate']:.4f}  "
        f"throughput {summary['throughput_rps']:,.1f} req/s  "
        f"predictions {summary['predictions_per_s']:,.1f}/s",
    ]
    server = (result.get("extra") or {}).get("server_metrics")
    if isinstance(server, dict):  # the server's mean beside the client's mean, never a percentile
        lines += server_view_lines(
            server, summary["latency_ms"]["mean"] if summary["successes"] else None
        )
    lines += [f"warning: {warning}" for warning in verdict["warnings"]]
    lines += [f"note: {note}" for note in verdict.get("notes", [])]
    if result["errors"]:
        lines.append("errors: " + ", ".join(f"{k}={v}" for k, v in result["errors"].items()))
    cost = result["cost"]
    if cost.get("source") == "unknown":
        lines.append("target CPU unknown: servelab did not start the target (give --target-pid)")
    if cost.get("target_cpu_s") is not None:
        per_1k = cost.get("cpu_s_per_1k_predictions")
        lines.append(
            f"target CPU {cost['target_cpu_s']:.2f} s"
            + (f" ({per_1k:.4f} CPU-s per 1k predictions)" if per_1k is not None else "")
        )
    if path:
        lines.append(f"result: {path}")
    return lines


def print_summary(result: ResultDocument, path: str | None, *, as_json: bool, rich: bool) -> None:
    if as_json:
        compact: dict[str, object] = {
            key: result[key] for key in ("run", "verdict", "summary", "errors", "cost")
        }
        if "server_metrics" in result["extra"]:
            compact["server_metrics"] = result["extra"]["server_metrics"]
        compact["result_path"] = path
        print(json.dumps(compact, indent=2))
        return
    if rich:
        console = Console()
        console.print(summary_table(result))
        for line in summary_lines(result, path):
            console.print(line, highlight=False)
        return
    for name, block in latency_blocks(result["summary"]):
        figures = UNSEEN if block is None else " ".join(f"{k}={block[k]:.3f}" for k in SHOWN)
        print(f"{'latency ms, ' + name + ':':<40} {figures}")
    for line in summary_lines(result, path):
        print(line)
