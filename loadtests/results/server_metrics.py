"""What a model server's own Prometheus metrics say about a run (``extra.server_metrics``).

One table names the metrics each known server exposes (``SERVERS``); an exposition text is
flattened to per-sample totals (``totals``); the totals at the window's two ends give the
requests the server counted and its own mean time per request — counter deltas, and
``Δsum / Δcount`` of a histogram or summary (``window_block``). Pure: the scrapes are
``loadtests.jobs.scrape``'s, parsed here only after the load.

Summed over every label set, except samples labelled with a path that is not inference
(``NON_INFERENCE_PATHS``): the scrape itself is a request servelab's target counts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypedDict

NON_INFERENCE_PATHS: Final = frozenset(
    {"/metrics", "/healthz", "/readyz", "/livez", "/docs", "/docs.json", "/openapi.json"}
)
_SKIPPED_SUFFIXES: Final = ("_bucket", "_created", "_gcount", "_gsum")


@dataclass(frozen=True, slots=True)
class Timer:
    """A server-side figure per request, read as ``Δsum / Δcount``: a histogram's or summary's
    ``_sum``/``_count``, or a cumulative counter over a request counter (Triton's µs)."""

    sum: str
    count: tuple[str, ...]
    unit_s: float = 1.0  # seconds per unit of ``sum`` (1e-6 for Triton's microseconds)

    @classmethod
    def of(cls, family: str) -> Timer:
        """The ``_sum``/``_count`` pair of histogram or summary ``family`` (seconds)."""
        return cls(f"{family}_sum", (f"{family}_count",))

    @property
    def family(self) -> str:
        return self.sum.removesuffix("_sum")


@dataclass(frozen=True, slots=True)
class ServerNames:
    """The metrics of one kind of server: the counters of the requests it answered (summed),
    the timers whose means add up to its own time per request, and its queue if it shows one."""

    server: str
    requests: tuple[str, ...]
    timers: tuple[Timer, ...]
    queue_time: Timer | None = None
    queue_length: Timer | None = None  # a histogram of queue *length* (requests), not time


_TRITON_COUNT: Final = ("nv_inference_request_success",)
_KSERVE_STAGES: Final = ("preprocess", "predict", "postprocess")
_MLSERVER_QUEUE: Final = Timer.of("parallel_request_queue")
# In order of preference: the first whose request counters moved over the window is used (so
# MLServer's REST counters win for a REST run, its model counters for a gRPC one).
SERVERS: Final = (
    ServerNames(
        "servelab", ("servelab_requests_total",),
        (Timer.of("servelab_request_latency_seconds"),),
    ),
    ServerNames(
        "triton", (*_TRITON_COUNT, "nv_inference_request_failure"),
        (Timer("nv_inference_request_duration_us", _TRITON_COUNT, 1e-6),),
        queue_time=Timer("nv_inference_queue_duration_us", _TRITON_COUNT, 1e-6),
    ),
    ServerNames(
        "mlserver", ("rest_server_requests_total",),
        (Timer.of("rest_server_request_duration_seconds"),), queue_length=_MLSERVER_QUEUE,
    ),
    ServerNames(
        "mlserver", ("model_infer_request_success_total", "model_infer_request_failure_total"),
        (Timer.of("model_infer_request_duration"),), queue_length=_MLSERVER_QUEUE,
    ),
    # KServe counts no requests: its predict histogram's count stands in; the stages add up.
    ServerNames(
        "kserve", ("request_predict_seconds_count",),
        tuple(Timer.of(f"request_{stage}_seconds") for stage in _KSERVE_STAGES),
    ),
    ServerNames(
        "bentoml", ("bentoml_service_request_total",),
        (Timer.of("bentoml_service_request_duration_seconds"),),
    ),
)  # fmt: skip
GENERIC_TIMER_SUFFIX: Final = "_request_duration_seconds"
GENERIC_COUNTER_SUFFIX: Final = "_requests_total"


class ServerMetricsBlock(TypedDict):
    """``extra.server_metrics``: ``null`` figures were not measured (a missing end scrape, a
    counter that went backwards), never 0."""

    source: str  # the URL scraped
    found: str  # "given" (--metrics-url) or "auto"
    server: str  # the SERVERS entry used, or "generic"
    families: dict[str, list[str]]  # requests / duration / queue_time / queue_length
    requests: int | None  # counted by the server over the window
    mean_ms: float | None  # the server's own mean time per request over the window
    queue_ms: float | None  # mean queue time per request, where the server exposes it
    queue_length_mean: float | None  # mean queue length (MLServer), where exposed
    start: str  # when the window's first scrape was taken
    start_scrape_ms: float  # its round trip: requests answered meanwhile may fall either side
    scrapes: dict[str, int]  # ok / missing
    series: list[dict[str, float | int | None]]  # t_s, interval_s, requests, mean_ms


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape: when it was sent (s since the window's first), its text (None: failed) and
    how long its answer took."""

    at_s: float
    text: str | None
    took_s: float = 0.0


def totals(text: str) -> dict[str, float]:
    """Each sample name's value summed over its label sets (buckets, quantiles, ``_created``
    and non-inference paths left out). ``ValueError`` when the text is not an exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    summed: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels = sample.name, sample.labels
            if name.endswith(_SKIPPED_SUFFIXES) or "quantile" in labels:
                continue
            if not math.isfinite(sample.value) or NON_INFERENCE_PATHS.intersection(labels.values()):
                continue
            summed[name] = summed.get(name, 0.0) + sample.value
            if family.type == "counter" and name.endswith("_total"):  # the parser adds
                bare = name.removesuffix("_total")  # ``_total`` to a counter without it
                summed[bare] = summed.get(bare, 0.0) + sample.value  # (Triton's): both names
    return summed


def generic_names(last: Mapping[str, float]) -> ServerNames | None:
    """Any ``*_request_duration_seconds`` histogram and ``*_requests_total`` counter (the
    histogram's count when there is no counter)."""
    timers = sorted(
        name.removesuffix("_sum")
        for name in last
        if name.endswith(GENERIC_TIMER_SUFFIX + "_sum") and name[:-4] + "_count" in last
    )
    counters = sorted(name for name in last if name.endswith(GENERIC_COUNTER_SUFFIX))
    if not timers and not counters:
        return None
    timer = Timer.of(timers[0]) if timers else None
    requests = (counters[0],) if counters else (timer.count if timer else ())
    return ServerNames("generic", requests, (timer,) if timer else ())


def _delta(first: Mapping[str, float], last: Mapping[str, float], names: Sequence[str]) -> float:
    """Σ last - Σ first (a sample absent at the start had not been counted yet: 0); NaN when a
    sample is absent at the end."""
    if any(name not in last for name in names):
        return math.nan
    return sum(last[name] - first.get(name, 0.0) for name in names)


def names_for(first: Mapping[str, float], last: Mapping[str, float]) -> ServerNames | None:
    """The ``SERVERS`` entry the scrapes show, preferring one whose counters moved; else the
    generic names; None when none is there."""
    present = [names for names in SERVERS if names.requests[0] in last]
    moved = [names for names in present if _delta(first, last, names.requests) > 0]
    chosen = moved or present
    return chosen[0] if chosen else generic_names(last)


def _mean(
    first: Mapping[str, float], last: Mapping[str, float], timers: Sequence[Timer]
) -> float | None:
    """Σ over ``timers`` of Δsum / Δcount, in ms; None when none counted anything (or a
    counter went backwards: a restarted server)."""
    means = []
    for timer in timers:
        counted = _delta(first, last, timer.count)
        spent = _delta(first, last, (timer.sum,))
        if counted < 0 or spent < 0:
            return None
        if counted > 0 and spent >= 0:  # NaN: a sample absent at the end
            means.append(spent / counted * timer.unit_s * 1e3)
    return sum(means) if means else None


def _ratio(
    first: Mapping[str, float], last: Mapping[str, float], timer: Timer | None
) -> float | None:
    if timer is None:
        return None
    counted = _delta(first, last, timer.count)
    spent = _delta(first, last, (timer.sum,))
    return spent / counted if counted > 0 and spent >= 0 else None


def _requests(
    first: Mapping[str, float], last: Mapping[str, float], names: ServerNames
) -> int | None:
    counted = _delta(first, last, names.requests)
    return round(counted) if counted >= 0 else None  # NaN compares False: None


def _families(names: ServerNames) -> dict[str, list[str]]:
    families = {
        "requests": list(names.requests),
        "duration": [timer.family for timer in names.timers],
        "queue_time": [names.queue_time.family] if names.queue_time else [],
        "queue_length": [names.queue_length.family] if names.queue_length else [],
    }
    return {kind: listed for kind, listed in families.items() if listed}


def _parsed(scrapes: Sequence[Scrape]) -> list[tuple[float, dict[str, float] | None]]:
    """Each scrape's totals in the order sent; a text that does not parse is missing."""
    parsed: list[tuple[float, dict[str, float] | None]] = []
    for scrape in sorted(scrapes, key=lambda s: s.at_s):
        try:
            parsed.append((scrape.at_s, None if scrape.text is None else totals(scrape.text)))
        except ValueError:
            parsed.append((scrape.at_s, None))
    return parsed


def _window(
    first: Mapping[str, float] | None, last: Mapping[str, float] | None, names: ServerNames
) -> dict[str, float | int | None]:
    """The figures between the window's two ends; all None when either end is missing."""
    if first is None or last is None or first is last:
        return dict.fromkeys(("requests", "mean_ms", "queue_ms", "queue_length_mean"))
    queue_time = names.queue_time
    return {
        "requests": _requests(first, last, names),
        "mean_ms": _mean(first, last, names.timers),
        "queue_ms": None if queue_time is None else _mean(first, last, (queue_time,)),
        "queue_length_mean": _ratio(first, last, names.queue_length),
    }


def window_block(
    scrapes: Sequence[Scrape], *, source: str, found: str, start: str
) -> ServerMetricsBlock | None:
    """The window's figures from its scrapes (the first and the last are its ends) and a series
    between consecutive good ones; None when no scrape gave a text with known metrics."""
    parsed = _parsed(scrapes)
    ok = [(at_s, counted) for at_s, counted in parsed if counted is not None]
    names = names_for(ok[0][1], ok[-1][1]) if ok else None
    if names is None:
        return None
    figures = _window(parsed[0][1], parsed[-1][1], names)
    series: list[dict[str, float | int | None]] = [
        {
            "t_s": round(at_s, 3),
            "interval_s": round(at_s - before_s, 3),
            "requests": _requests(before, after, names),
            "mean_ms": _mean(before, after, names.timers),
        }
        for (before_s, before), (at_s, after) in itertools.pairwise(ok)
    ]
    return ServerMetricsBlock(
        source=source,
        found=found,
        server=names.server,
        families=_families(names),
        requests=_int_or_none(figures["requests"]),
        mean_ms=figures["mean_ms"],
        queue_ms=figures["queue_ms"],
        queue_length_mean=figures["queue_length_mean"],
        start=start,
        start_scrape_ms=round(min(scrapes, key=lambda s: s.at_s).took_s * 1e3, 3),
        scrapes={"ok": len(ok), "missing": len(parsed) - len(ok)},
        series=series,
    )


def _int_or_none(value: float | int | None) -> int | None:
    return None if value is None else int(value)


OUTSIDE_TIMER: Final = (
    "outside the server's timer: network, client, serialisation, and whatever of accept, parse "
    "and queue the server does not time"
)


def _ms(value: object) -> str:
    return f"{value:,.3f} ms" if isinstance(value, int | float) else "—"


def server_view_lines(block: Mapping[str, object], client_mean_ms: float | None) -> list[str]:
    """The server's own mean beside the client's *mean* (never a percentile), and what lies
    between them — for the run summary and the report, in the same words."""
    server_mean = block.get("mean_ms")
    scrapes = block.get("scrapes")
    ok, missing = (
        (scrapes.get("ok"), scrapes.get("missing")) if isinstance(scrapes, dict) else (0, 0)
    )
    requests = block.get("requests")
    counted = f"{requests:,}" if isinstance(requests, int) else "—"
    lines = [
        f"server's view ({block.get('server')}, {block.get('source')}; scrapes {ok} ok, "
        f"{missing} missing): {counted} requests counted by the server; mean {_ms(server_mean)} "
        f"by its own timer beside the client's mean {_ms(client_mean_ms)}"
    ]
    if isinstance(server_mean, int | float) and client_mean_ms is not None:
        lines.append(f"{_ms(client_mean_ms - server_mean)} {OUTSIDE_TIMER}")
    if isinstance(block.get("queue_ms"), int | float):
        lines.append(f"server queue time: mean {_ms(block['queue_ms'])} per request")
    if isinstance(block.get("queue_length_mean"), int | float):
        lines.append(
            f"server queue length: mean {block['queue_length_mean']:.2f} requests "
            "(a histogram of queue length, not a time)"
        )
    return lines
