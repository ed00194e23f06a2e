"""The result file: one versioned JSON document per run, written atomically.

``build_result`` turns a finished recorder into the document (fields in README "Result file");
``load_result`` reads one back, refusing with one line anything that is not a servelab result or
is from a newer schema, and upgrading older ones through ``upgrade`` — the one place that knows
old layouts.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import orjson

from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.recorder import Recorder
from loadtests.errors import ResultFileError
from loadtests.results.document import (
    ColdStartsBlock,
    HistogramsBlock,
    LatencyMs,
    ResultDocument,
    RunBlock,
    SummaryBlock,
    VerdictBlock,
)
from targets.files import user_path, write_atomic

__all__ = [
    "KIND",
    "SCHEMA_VERSION",
    "HistogramsBlock",
    "LatencyMs",
    "ResultDocument",
    "ResultFileError",
    "RunBlock",
    "RunInfo",
    "SummaryBlock",
    "Verdict",
    "VerdictBlock",
    "build_result",
    "load_result",
    "summarize",
    "upgrade",
    "write_result",
]

SCHEMA_VERSION: Final = 2
KIND: Final = "servelab-result"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The run's settings as recorded (``run`` in the file)."""

    target: str
    transport: str
    mode: str
    model: str | None  # None: a target servelab did not start, its model not named
    seed: int
    concurrency: int | None = None
    rate_per_s: float | None = None
    arrival: str | None = None
    duration_s: float | None = None
    requests_limit: int | None = None
    warmup_s: float = 0.0
    batch_size: int | None = None
    window_ms: float | None = None
    api: str = "v1"
    protocol: str = "servelab"  # the wire contract spoken (--protocol)
    tool: str = "servelab"
    profile: str | None = None
    label: str | None = None
    group: str | None = None
    repeat: int = 0
    partial: bool = False
    url: str | None = None  # the REST target loaded, when given (--url)
    address: str | None = None  # the gRPC target loaded, when given (--address)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    def block(self) -> RunBlock:
        """The ``run`` block: ``RunBlock``'s keys are this class's fields."""
        return cast("RunBlock", asdict(self))


@dataclass(frozen=True, slots=True)
class Verdict:
    """``reasons`` make a run INVALID; ``warnings`` doubt a figure; ``notes`` say what the valid
    figures mean (a saturated target, a queue in the client)."""

    valid: bool
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def block(self) -> VerdictBlock:
        """The ``verdict`` block."""
        return {
            "valid": self.valid,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def _merged(*parts: LatencyHistogram) -> LatencyHistogram:
    merged = LatencyHistogram()
    for part in parts:
        merged.merge(part)
    return merged


def _cold_starts(recorder: Recorder, judged: int) -> ColdStartsBlock:
    cold, warm = recorder.cold_latency, recorder.warm_latency
    return {
        "count": recorder.cold_starts,
        "share": recorder.cold_starts / judged if judged else 0.0,
        "cold_latency_ms": cold.summary_ms() if cold.total else None,
        "warm_latency_ms": warm.summary_ms() if warm.total else None,
    }


def summarize(recorder: Recorder, window_s: float) -> SummaryBlock:
    """The ``summary`` block. ``throughput_rps`` counts successful requests per second of the
    measured window (goodput); expected rejections count in ``requests`` only."""
    judged = recorder.requests - recorder.expected_rejections
    summary: SummaryBlock = {
        "requests": recorder.requests,
        "successes": recorder.successes,
        "failures": recorder.failures,
        "expected_rejections": recorder.expected_rejections,
        "success_rate": recorder.successes / judged if judged else 0.0,
        "schema_success_rate": (
            recorder.schema_ok / recorder.schema_checked if recorder.schema_checked else 0.0
        ),
        "throughput_rps": recorder.successes / window_s if window_s > 0 else 0.0,
        "predictions_per_s": recorder.predictions / window_s if window_s > 0 else 0.0,
        "window_s": window_s,
        # the latency blocks describe successful requests; failures have their own
        "latency_scope": "successes",
        "latency_ms": recorder.latency.summary_ms(),
        "service_latency_ms": recorder.service.summary_ms(),
        "failure_latency_ms": recorder.failure_latency.summary_ms(),
        "all_latency_ms": _merged(recorder.latency, recorder.failure_latency).summary_ms(),
        # absent (None) where the driver cannot see when its bytes left (README: What is measured)
        "client_queue_ms": (
            recorder.client_queue.summary_ms() if recorder.client_queue.total else None
        ),
        "send_lateness_ms": recorder.lateness.summary_ms(),
    }
    if recorder.split_cold_starts:
        summary["cold_starts"] = _cold_starts(recorder, judged)
    return summary


def _histograms(recorder: Recorder) -> HistogramsBlock:
    block: HistogramsBlock = {
        "latency": recorder.latency.encode(),
        "service_latency": recorder.service.encode(),
        "failure_latency": (
            recorder.failure_latency.encode() if recorder.failure_latency.total else None
        ),
        "client_queue": recorder.client_queue.encode() if recorder.client_queue.total else None,
        "send_lateness": recorder.lateness.encode(),
    }
    if recorder.split_cold_starts:
        cold, warm = recorder.cold_latency, recorder.warm_latency
        block["cold_latency"] = cold.encode() if cold.total else None
        block["warm_latency"] = warm.encode() if warm.total else None
    return block


def build_result(
    run: RunInfo,
    recorder: Recorder,
    *,
    window_s: float,
    verdict: Verdict,
    environment: dict[str, Any],
    cost: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> ResultDocument:
    recorder.finish()
    return {
        "kind": KIND,
        "schema_version": SCHEMA_VERSION,
        "run": run.block(),
        "environment": environment,
        "cost": cost
        or {"target_cpu_s": None, "cpu_s_per_1k_predictions": None, "source": "unknown"},
        "verdict": verdict.block(),
        "summary": summarize(recorder, window_s),
        "errors": dict(sorted(recorder.errors.items())),
        "histograms": _histograms(recorder),
        "timeseries": recorder.timeseries,
        "extra": extra or {},
    }


def write_result(path: str | Path, result: Mapping[str, Any]) -> None:
    """Write atomically (temp file + rename): a crash leaves no half-written result. Any
    mapping: the writer does not read the blocks (tests write mangled documents too)."""
    with user_path("write", "result file", path):  # a path that will not do: one line, exit 2
        write_atomic(path, orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")


def upgrade(document: dict[str, Any]) -> ResultDocument:
    """Bring an older result document (as read from JSON) to ``SCHEMA_VERSION``, in place; the
    one function that knows old layouts.

    Any version: ``run.protocol`` is ``"servelab"`` where the file predates it (every run
    spoke servelab's own contract then).

    v1 → v2: v1 timed service latency from the dispatch, wait for a connection included, and
    had no client-queue figure: it is marked absent (``None``), never 0. v1's latency blocks
    covered failures too (``latency_scope: "all"``, so ``all_latency_ms`` is that block) and
    kept no failure histogram (``failure_latency_ms`` absent). ``upgraded_from`` says which
    layout the numbers were measured in.
    """
    version = document.get("schema_version", SCHEMA_VERSION)
    # files written before ``--protocol`` existed spoke servelab's own contract
    document.setdefault("run", {}).setdefault("protocol", "servelab")
    if version < 2:
        summary = document.setdefault("summary", {})
        summary.setdefault("client_queue_ms", None)
        cost = document.setdefault("cost", {})
        in_process = str(cost.get("scope", "")).startswith("this process")
        # v1 counted the generator's own CPU for a target it did not start: not to be trusted
        cost.setdefault("source", "in-process" if in_process else "unknown")
        run = document.setdefault("run", {})
        run.setdefault("url", None)  # v1 did not record what it loaded
        run.setdefault("address", None)
        summary.setdefault("latency_scope", "all")
        summary.setdefault("all_latency_ms", summary.get("latency_ms"))
        summary.setdefault("failure_latency_ms", None)
        histograms = document.setdefault("histograms", {})
        histograms.setdefault("client_queue", None)
        histograms.setdefault("failure_latency", None)
        lateness = histograms.get("send_lateness")
        summary.setdefault(
            "send_lateness_ms", _decoded_summary_ms(lateness) if isinstance(lateness, str) else None
        )
        document.setdefault("verdict", {}).setdefault("notes", [])
        document["upgraded_from"] = version
        document["schema_version"] = 2
    return cast("ResultDocument", document)  # the v2 layout (not re-validated: see document.py)


def _decoded_summary_ms(encoded: str) -> dict[str, float] | None:
    try:
        return LatencyHistogram.decode(encoded).summary_ms()
    except Exception:  # hdrh raises bare errors on a corrupt encoding: the figure is absent
        return None


def load_result(path: str | Path) -> ResultDocument:
    """Read a result file; ``ResultFileError`` (one line naming the file) if it is not usable."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        raise ResultFileError(f"{path}: not JSON (truncated or not a result file)") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        raise ResultFileError(f"{path}: not a servelab result file")
    version = document.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultFileError(f"{path}: missing or bad schema_version")
    if version > SCHEMA_VERSION:
        raise ResultFileError(
            f"{path}: schema_version {version} is newer than this servelab reads "
            f"({SCHEMA_VERSION}); upgrade servelab"
        )
    missing = [key for key in ("run", "summary", "verdict", "histograms") if key not in document]
    if missing:
        raise ResultFileError(f"{path}: incomplete result, missing {', '.join(missing)}")
    return upgrade(document)
