"""The result document's shape (README "Result file"), as the types every reader checks against.

``run``, ``summary``, ``verdict`` and ``histograms`` have fixed keys: TypedDicts. ``environment``,
``cost`` and ``extra`` vary by producer (harness, Locust, an imported CSV, a recompute): looser
mappings. A v1 file has this shape once ``upgrade`` has run; a file from disk is only checked
where a reader needs it (``reports.load.check_blocks``), so readers of optional figures still test
for ``None``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypeAlias, TypedDict

# min, mean, p50, p90, p95, p99, p999, max in ms (``LatencyHistogram.summary_ms``)
LatencyMs: TypeAlias = dict[str, float]


class RunBlock(TypedDict):
    """``run``: the run's settings as recorded (the fields of ``result.RunInfo``)."""

    target: str
    transport: str
    mode: str
    model: str | None
    seed: int
    concurrency: int | None
    rate_per_s: float | None
    arrival: str | None
    duration_s: float | None
    requests_limit: int | None
    warmup_s: float
    batch_size: int | None
    window_ms: float | None
    api: str
    protocol: str
    tool: str
    profile: str | None
    label: str | None
    group: str | None
    repeat: int
    partial: bool
    url: str | None
    address: str | None
    id: str
    started_at: str


class ColdStartsBlock(TypedDict):
    """``summary.cold_starts``, for a target whose answers say which requests started their
    instance (``--target function``): how many judged requests did, their share, and the
    successes' latencies split cold / warm (histograms ``cold_latency`` / ``warm_latency``)."""

    count: int
    share: float
    cold_latency_ms: LatencyMs | None
    warm_latency_ms: LatencyMs | None


class SummaryBlock(TypedDict):
    """``summary``: counts, rates and latency blocks of the measured window. The latency blocks
    describe successes (``latency_scope``; ``"all"`` in a v1 file); ``None``: not measured."""

    requests: int
    successes: int
    failures: int
    expected_rejections: int
    success_rate: float
    schema_success_rate: float
    throughput_rps: float
    predictions_per_s: float
    window_s: float
    latency_scope: str
    latency_ms: LatencyMs
    service_latency_ms: LatencyMs
    failure_latency_ms: LatencyMs | None
    all_latency_ms: LatencyMs | None
    client_queue_ms: LatencyMs | None
    send_lateness_ms: LatencyMs | None
    cold_starts: NotRequired[ColdStartsBlock]  # only where the driver tells cold from warm


class VerdictBlock(TypedDict):
    """``verdict``: ``reasons`` make a run INVALID, ``warnings`` doubt a figure, ``notes`` say
    what the valid figures mean."""

    valid: bool
    reasons: list[str]
    warnings: list[str]
    notes: list[str]


class HistogramsBlock(TypedDict):
    """``histograms``: base64 HdrHistogram encodings; ``None`` where nothing was recorded."""

    latency: str
    service_latency: str
    failure_latency: str | None
    client_queue: str | None
    send_lateness: str
    cold_latency: NotRequired[str | None]  # with ``summary.cold_starts`` only
    warm_latency: NotRequired[str | None]


class ResultDocument(TypedDict):
    """One result file."""

    kind: str
    schema_version: int
    run: RunBlock
    environment: dict[str, Any]
    cost: dict[str, Any]
    verdict: VerdictBlock
    summary: SummaryBlock
    errors: dict[str, int]
    histograms: HistogramsBlock
    timeseries: list[dict[str, float]]
    extra: dict[str, Any]
    upgraded_from: NotRequired[int]  # the schema_version a file was read in (``upgrade``)
