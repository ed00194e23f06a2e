"""Test helpers: golden files, synthetic runs from numpy samples, result documents on disk."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from loadtests.histogram import LatencyHistogram
from reports.buckets import Buckets, buckets_of
from reports.stats import RunSample

GOLDEN = Path(__file__).parent / "golden"
# REST, gRPC and batch runs under two hardware profiles (the "done when" mix)
MIX = [
    str(GOLDEN / f"{t}-{p}.json") for t in ("rest", "grpc", "batch") for p in ("laptop", "server")
]


def golden(name: str) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((GOLDEN / name).read_bytes())
    return document


def buckets_from_ms(values_ms: np.ndarray) -> Buckets:
    histogram = LatencyHistogram()
    histogram.record_many((values_ms * 1e6).astype(np.int64))
    return buckets_of(histogram)


def lognormal_sample(
    rng: np.random.Generator, n: int, *, median_ms: float = 5.0, sigma: float = 0.5
) -> RunSample:
    """One synthetic run of ``n`` lognormal latencies (the only thing the latency stats read)."""
    values = rng.lognormal(np.log(median_ms), sigma, n)
    return RunSample({"successes": n, "requests": n}, latency=buckets_from_ms(values))


def write_variant(source: str, destination: Path, **run_fields: Any) -> Path:
    """A copy of golden ``source`` with ``run`` fields replaced (label, profile, repeat …)."""
    document = copy.deepcopy(golden(source))
    document["run"].update(run_fields)
    destination.write_bytes(orjson.dumps(document))
    return destination


def write_document(document: dict[str, Any], target: Path) -> Path:
    target.write_bytes(orjson.dumps(document))
    return target
