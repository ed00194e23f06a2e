"""The edge runtime: JSON lines in, canonical responses out. Stdlib only.

Each request is validated by the canonical validator, its rows are quantised (``--quant``), and
the answer comes from, in order: the LRU cache keyed by the quantised rows, the remote REST target
(when ``--remote`` is given and the circuit breaker allows), the local model. Every answer is a
canonical response with transport ``"edge"`` and metadata ``source`` (``cache``/``remote``/
``local``), ``quantization`` (the mode) and ``quantization_drift``.

Drift is ``max |model(quantised rows) - model(rows)|``, measured on local computations only —
the cheap place: the quantised prediction is already in hand, and the exact one costs one more
local model call (none when quantisation changed nothing). ``drift_every`` samples it (1: every
local computation, N: one in N, 0: off); answers without a measurement carry ``null``.

A line that is a JSON object with any v2-only key (``rows``, ``request_id``, ``model_version``,
``options``) is read as API v2, any other line as v1. Blank lines are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, Final, NamedTuple, TextIO

from targets.edge.breaker import CircuitBreaker
from targets.edge.cache import LruCache
from targets.edge.config import EdgeConfig, build_parser
from targets.edge.quantize import Quantizer, parse_quant
from targets.edge.remote import (
    ConnectionFactory,
    RemoteClient,
    RemoteRejected,
    RemoteUnavailable,
)
from targets.errors import MalformedRequest, ModelFailure, RequestError, ServelabError
from targets.logs import JsonLogger
from targets.models import Model
from targets.schema import ApiVersion, PredictRequest, build_response, check_body_size
from targets.service import PredictionService
from targets.spec import load_model

TRANSPORT: Final = "edge"
SOURCES: Final = ("cache", "remote", "local")
_V2_ONLY_KEYS: Final = frozenset({"rows", "request_id", "model_version", "options"})
EXIT_USAGE: Final = 2

# ``EdgeConfig`` and ``build_parser`` live in ``targets.edge.config``; importable here as before.
__all__ = [
    "EXIT_USAGE",
    "SOURCES",
    "TRANSPORT",
    "Answer",
    "CacheKey",
    "EdgeConfig",
    "EdgeRuntime",
    "api_of",
    "build_parser",
    "encode_line",
    "main",
    "run",
    "run_bundled",
    "serve",
]

CacheKey = tuple[tuple[float, ...], ...]


class Answer(NamedTuple):
    """What the cache holds: predictions for the quantised rows, and which model made them."""

    predictions: list[float]
    model_name: str
    model_version: str


def _key_of(quantised_rows: Sequence[Sequence[float]]) -> CacheKey:
    """Quantised rows as a hashable key: rows that quantise alike share a cache entry."""
    return tuple(tuple(row) for row in quantised_rows)


def api_of(body: object) -> ApiVersion:
    """The API a stdin line speaks: v2 when it uses anything only v2 has."""
    return "v2" if isinstance(body, dict) and not _V2_ONLY_KEYS.isdisjoint(body) else "v1"


class EdgeRuntime:
    """Answers requests: cache, then remote (if any, breaker permitting), then the local model."""

    def __init__(
        self,
        model: Model,
        quantizer: Quantizer,
        *,
        cache_size: int = 1024,
        remote: RemoteClient | None = None,
        breaker: CircuitBreaker | None = None,
        drift_every: int = 1,
        logger: JsonLogger | None = None,
        model_runtime: str = "python",
    ) -> None:
        if type(drift_every) is not int or drift_every < 0:
            raise ValueError(f"drift_every must be an integer >= 0, got {drift_every!r}")
        self.service = PredictionService(model, transport=TRANSPORT)
        self.quantizer = quantizer
        self.cache: LruCache[CacheKey, Answer] = LruCache(cache_size)
        self.remote = remote
        self.breaker = breaker or CircuitBreaker()
        self.drift_every = drift_every
        self.model_runtime = model_runtime  # "wasm": ``model`` is its WebAssembly module
        self._logger = logger
        self._by_source: Counter[str] = Counter(dict.fromkeys(SOURCES, 0))
        self._remote_failures: Counter[str] = Counter()
        self._remote_rejections = 0
        self._requests = 0
        self._errors = 0
        self._local_computations = 0
        self._drift_measured = 0
        self._max_drift = 0.0

    @classmethod
    def from_config(
        cls,
        config: EdgeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        connection_factory: ConnectionFactory | None = None,
        logger: JsonLogger | None = None,
    ) -> EdgeRuntime:
        remote = None
        if config.remote:
            timeout_s = config.timeout_ms / 1e3
            remote = RemoteClient(
                config.remote, timeout_s=timeout_s, connection_factory=connection_factory
            )
        breaker = CircuitBreaker(
            failure_threshold=config.failure_threshold, cooldown_s=config.cooldown_s, clock=clock
        )
        quantizer = parse_quant(config.quant)
        model = load_model(config.model)
        if config.runtime == "wasm":
            from targets.edge.wasm_model import WasmModel  # wasmtime: never in a bare bundle

            model = WasmModel(model, quantizer)
        return cls(
            model,
            quantizer,
            cache_size=config.cache_size,
            remote=remote,
            breaker=breaker,
            drift_every=config.drift_every,
            logger=logger,
            model_runtime=config.runtime,
        )

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()

    def __enter__(self) -> EdgeRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def handle_line(self, line: bytes | str) -> dict[str, Any]:
        """One stdin line: a canonical response, or an ``{"error": {...}}`` body."""
        try:
            check_body_size(len(line), self.service.limits)
            body = json.loads(line)
        except RequestError as exc:
            self._requests += 1
            self._errors += 1
            return exc.to_body()
        except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8
            self._requests += 1
            self._errors += 1
            return MalformedRequest(f"line is not valid JSON: {exc}").to_body()
        return self.handle(body)

    def handle(self, body: object) -> dict[str, Any]:
        """A decoded request body: a canonical response, or an ``{"error": {...}}`` body."""
        self._requests += 1
        try:
            return self._answer(self.service.parse(body, api_of(body)))
        except RequestError as exc:
            self._errors += 1
            return exc.to_body()
        except ModelFailure as exc:  # the model's fault, reported; the runtime goes on
            self._errors += 1
            return {"error": {"code": exc.code, "message": str(exc)}}

    def cache_key(self, body: object) -> CacheKey | None:
        """The cache key ``handle(body)`` would look up, or ``None`` when validation rejects the
        body (``handle`` then answers an error without the remote or the model).

        Counts nothing and changes nothing, so a caller can route a request before handing it
        over — a load driver answers cache hits on its event loop and sends the rest to a thread.
        """
        try:
            request = self.service.parse(body, api_of(body))
        except RequestError:
            return None
        return _key_of([self.quantizer.quantize_row(row) for row in request.rows])

    def _answer(self, request: PredictRequest) -> dict[str, Any]:
        rows = [self.quantizer.quantize_row(row) for row in request.rows]
        key = _key_of(rows)
        drift: float | None = None
        answer = self.cache.get(key)
        if answer is not None:
            source = "cache"
        else:
            remote = self.remote
            answer = self._ask_remote(remote, rows, request.api) if remote is not None else None
            if answer is not None:
                source = "remote"
            else:
                answer, drift = self._compute_locally(request.rows, rows)
                source = "local"
            self.cache.put(key, answer)
        self._by_source[source] += 1
        predictions = answer.predictions
        if request.precision is not None:
            predictions = [round(value, request.precision) for value in predictions]
        return build_response(
            predictions,
            transport=TRANSPORT,
            model_name=answer.model_name,
            model_version=answer.model_version,
            request_id=request.request_id or self.service.next_request_id(),
            api=request.api,
            extra={
                "source": source,
                "quantization": self.quantizer.spec,
                "quantization_drift": drift,
            },
        )

    def _ask_remote(
        self, remote: RemoteClient, rows: Sequence[Sequence[float]], api: ApiVersion
    ) -> Answer | None:
        """The remote's answer, or ``None`` (breaker open, remote failed or declined)."""
        if not self.breaker.allow():
            return None
        was_trial = self.breaker.state() == "half_open"
        try:
            remote_answer = remote.predict(rows, api)
        except RemoteUnavailable as exc:
            opens = self.breaker.opens
            self.breaker.record_failure()
            self._remote_failures[exc.kind] += 1
            if self.breaker.opens != opens:
                self._log("warning", "remote_unavailable", reason=str(exc), **self._breaker_log())
            return None
        except RemoteRejected as exc:
            self.breaker.record_success()  # it answered: the remote is up
            self._remote_rejections += 1
            self._log("debug", "remote_rejected", reason=str(exc))  # counted in stats
            return None
        except BaseException:
            self.breaker.record_failure()  # never leave a half-open trial hanging
            raise
        self.breaker.record_success()
        if was_trial:
            self._log("info", "remote_recovered", **self._breaker_log())
        return Answer(
            remote_answer.predictions, remote_answer.model_name, remote_answer.model_version
        )

    def _compute_locally(
        self, rows: Sequence[Sequence[float]], quantised: Sequence[Sequence[float]]
    ) -> tuple[Answer, float | None]:
        model = self.service.model
        predictions = self._predict(quantised)
        self._local_computations += 1
        drift: float | None = None
        if self.drift_every and (self._local_computations - 1) % self.drift_every == 0:
            if quantised == rows:
                drift = 0.0  # quantisation changed nothing: no second model call needed
            else:
                exact = self._predict(rows)
                drift = max(abs(q - x) for q, x in zip(predictions, exact, strict=True))
            self._drift_measured += 1
            self._max_drift = max(self._max_drift, drift)
        return Answer(predictions, model.name, model.version), drift

    def _predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        model = self.service.model
        try:
            predictions = model.predict(rows)
        except Exception as exc:  # any model fault is the runtime's, reported as such
            raise ModelFailure(f"model {model.name} failed: {type(exc).__name__}") from exc
        if len(predictions) != len(rows) or not all(map(math.isfinite, predictions)):
            raise ModelFailure(
                f"model {model.name} returned {len(predictions)} predictions for {len(rows)} "
                "rows, or a non-finite one"
            )
        return predictions

    def _breaker_log(self) -> dict[str, object]:
        return {"breaker": self.breaker.state(), "cooldown_s": self.breaker.cooldown_s}

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self._logger is not None:
            url = self.remote.base_url if self.remote is not None else None
            self._logger.log(level, event, remote=url, **fields)

    def stats(self) -> dict[str, Any]:
        """Counts so far: requests, answers by source, cache, remote and breaker, drift."""
        remote: dict[str, Any] | None = None
        if self.remote is not None:
            remote = {
                "url": self.remote.base_url,
                "failures": dict(self._remote_failures),
                "rejections": self._remote_rejections,
                "breaker": self.breaker.stats(),
            }
        return {
            "requests": self._requests,
            "errors": self._errors,
            "by_source": dict(self._by_source),
            "model": self.service.model.name,
            "model_runtime": self.model_runtime,
            "quantization": self.quantizer.spec,
            "cache": self.cache.stats(),
            "remote": remote,
            "drift": {
                "max": self._max_drift,
                "measured": self._drift_measured,
                "every": self.drift_every,
            },
        }


def encode_line(body: Mapping[str, Any]) -> bytes:
    """One compact JSON line; ``allow_nan=False`` because NaN is not JSON."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def serve(runtime: EdgeRuntime, lines: Iterable[bytes], out: IO[bytes]) -> None:
    """Answer each non-blank line with one line, flushed at once (a client may be waiting)."""
    for line in lines:
        if not line.strip():
            continue
        out.write(encode_line(runtime.handle_line(line)))
        out.flush()


def run(
    config: EdgeConfig,
    stdin: IO[bytes] | None = None,
    stdout: IO[bytes] | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Serve stdin to stdout until end of input; final stats to stderr as one JSON line."""
    logger = JsonLogger(stderr if stderr is not None else sys.stderr, "info")
    out = stdout if stdout is not None else sys.stdout.buffer
    with EdgeRuntime.from_config(config, logger=logger) as runtime:
        try:
            serve(runtime, stdin if stdin is not None else sys.stdin.buffer, out)
        except BrokenPipeError:
            # The reader went away: stop quietly, and keep the interpreter's final flush of
            # stdout from failing again (the recipe in the ``signal`` module docs).
            if stdout is None:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        finally:
            logger.log("info", "edge_stats", **runtime.stats())
    return 0


def main(args: argparse.Namespace) -> int:
    """``servelab edge run``: bad options raise ``InputError``/``SpecError`` for the CLI."""
    return run(EdgeConfig.from_mapping(vars(args)))


def run_bundled(baked_config: Mapping[str, Any], argv: Sequence[str]) -> int:
    """A zipapp's entry point: the baked-in config, overridden by command-line options."""
    try:
        defaults = EdgeConfig.from_mapping(baked_config)
        config = EdgeConfig.from_mapping(vars(build_parser(defaults).parse_args(argv)))
        return run(config)
    except ServelabError as exc:  # one line, as the servelab CLI does; a bug keeps its traceback
        print(f"edge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
