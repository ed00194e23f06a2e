"""The edge runtime, driven in-process: one request is one ``EdgeRuntime.handle`` of the
payload's canonical body, and the answers are split by where they came from.

**One runtime, one worker thread.** The runtime that ships (``python edge.pyz``) is one process
answering stdin lines one at a time: one LRU cache, one circuit breaker, one kept-alive
``http.client`` connection to the remote, none of them thread-safe. The driver keeps exactly
that: one ``EdgeRuntime`` behind one lock, and one worker thread for the calls that may block
(remote HTTP, the local model). ``concurrency`` N therefore measures N clients queueing in front
of one edge runtime — what a gateway's callers see — and cache and breaker figures mean what
they mean in production. A runtime per thread would measure N caches each warming on its own
(N times the misses) and N breakers each opening; a shared runtime under a pool of threads would
serialise on the lock anyway, in no fair order. One thread keeps submission (FIFO) order, so a
repeat queued behind its first occurrence is a cache hit, as on the real stdin.

**Cache hits inline.** A thread hop costs tens of microseconds, more than a cache hit; charging
it to every hit would measure the executor. So when the lock is free (the worker is between
requests) and the runtime's own ``cache_key`` says the answer is cached or the body is rejected
by validation, ``handle`` runs on the event loop: neither the network nor the model can be
reached on that path. Otherwise the request waits its turn in the thread, as it would at a
busy edge. Keys are computed once per pooled payload object.

**Counting by source.** Each answer's ``metadata.source`` (``cache``/``remote``/``local``)
selects an ``array('q')`` of latencies in ns (send entry to answer: the client's view, queueing
included); ``extra()`` folds them with numpy once, at the end. Answers without a source are
error bodies (rejections, model failures), counted apart.
"""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from loadtests.drivers.base import DriverBase, Reply, WireView, judge_answer, p50_p99
from loadtests.engine.workload import Payload
from targets.edge.remote import ConnectionFactory
from targets.edge.runtime import SOURCES, CacheKey, EdgeConfig, EdgeRuntime
from targets.errors import ModelFailure

# Cache keys memoised per payload object; the pool is ``PayloadSpec.distinct`` objects, so this
# bound is only hit by callers that build a fresh payload per request (then it is cleared).
MAX_MEMOISED_KEYS: Final = 1 << 16
_REJECTED: Final = None  # cache_key's answer for a body validation rejects


def judge_edge(payload: Payload, answer: Mapping[str, Any]) -> tuple[Reply, str | None]:
    """An edge runtime's answer, judged, and where it came from (``metadata.source``: cache /
    remote / local; ``None`` for an error body): a refused request is the client's (an expected
    rejection for an invalid payload), a model failure a failure. ``EdgeDriver`` and Locust's
    ``EdgeUser`` both judge with it."""
    metadata = answer.get("metadata")
    if isinstance(metadata, dict):
        return judge_answer(payload, True, answer, False), str(metadata.get("source"))
    error = answer.get("error")
    if isinstance(error, dict) and error.get("code") == ModelFailure.code:
        return Reply.failure(ModelFailure.code), None
    return judge_answer(payload, False, None, True), None


class EdgeDriver(DriverBase):
    """Drives one ``EdgeRuntime`` built from ``config``; see the module docstring.

    ``clock_ns`` times the per-source latencies (injectable, as the harness clock is);
    ``connection_factory`` reaches the runtime's remote client (tests gate or break it).
    ``bytes_sent``/``bytes_received`` stay 0: bodies are handed over as objects, no bytes move
    between the driver and the runtime (the remote's traffic is the runtime's own).
    """

    transport = "edge"
    in_process = True
    wire: WireView = "stamped"  # when the runtime takes the request (its one worker is free)

    def __init__(
        self,
        config: EdgeConfig | None = None,
        *,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
        connection_factory: ConnectionFactory | None = None,
    ) -> None:
        self.config = config or EdgeConfig()
        # Built here, not in open(): a bad --model or --remote fails before any load starts.
        self.runtime = EdgeRuntime.from_config(self.config, connection_factory=connection_factory)
        super().__init__()
        self._clock_ns = clock_ns
        self._lock = threading.Lock()  # held by whoever is inside runtime.handle()
        self._executor: ThreadPoolExecutor | None = None
        self._keys: dict[int, tuple[Payload, CacheKey | None]] = {}
        self._latency_ns: dict[str, array[int]] = {}
        self._error_answers = 0
        self._breaker_opens_before = 0
        self._reset_counts()

    def _reset_counts(self) -> None:
        self._latency_ns = {source: array("q") for source in SOURCES}
        self._error_answers = 0
        self._breaker_opens_before = self.runtime.breaker.opens

    def mark_measure_start(self) -> None:
        """Forget what warm-up requests added, so ``extra()`` covers the measured window (the
        cache stays warm: that is what warm-up is for). Chain it into the harness's
        ``on_measure_start``; requests in flight at that instant land on the side they end on."""
        self._reset_counts()

    async def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="servelab-edge")

    async def send(self, payload: Payload) -> Reply:
        started_ns = self._clock_ns()
        executor = self._executor
        if executor is None:
            raise RuntimeError("EdgeDriver.send() before open()")
        try:
            inline = self._answer_inline(payload)
            if inline is None:
                loop = asyncio.get_running_loop()
                answer, taken_ns = await loop.run_in_executor(executor, self._handle, payload.body)
                self.stamps.stamp(taken_ns)
            else:
                answer = inline
        except Exception as exc:  # the runtime itself blew up (handle() reports the rest)
            failed = Reply.failure(f"edge_{type(exc).__name__}")
            self.on_answer(None, failed)
            return failed
        ended_ns = self._clock_ns()
        reply, source = judge_edge(payload, answer)
        self.on_answer(source, reply)
        if source is None:
            self._error_answers += 1
            return reply
        try:
            latencies = self._latency_ns[source]
        except KeyError:  # a source this driver does not know: counted all the same
            latencies = self._latency_ns[source] = array("q")
        latencies.append(ended_ns - started_ns)
        return reply

    def on_answer(self, source: str | None, reply: Reply) -> None:
        """Each request's end, as it happens: where its answer came from (``None``: an error
        body, or the runtime failed) and its verdict. A subclass's hook (the flaky link)."""

    def _answer_inline(self, payload: Payload) -> dict[str, Any] | None:
        """The answer computed here, on the event loop, when that cannot block: the worker is
        idle (lock free) and the body is rejected or cached. ``None``: use the worker thread."""
        key = self._cache_key(payload)
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if key is _REJECTED or key in self.runtime.cache:
                self.stamps.stamp()
                return self.runtime.handle(payload.body)
            return None
        finally:
            self._lock.release()

    def _cache_key(self, payload: Payload) -> CacheKey | None:
        # The entry keeps the payload alive, so its id cannot be reused while memoised.
        entry = self._keys.get(id(payload))
        if entry is None:
            if len(self._keys) >= MAX_MEMOISED_KEYS:
                self._keys.clear()
            entry = self._keys[id(payload)] = (payload, self.runtime.cache_key(payload.body))
        return entry[1]

    def _handle(self, body: object) -> tuple[dict[str, Any], int]:
        """In the worker thread: one request, with the runtime to itself; and when it got it."""
        with self._lock:
            taken_ns = self.stamps.now_ns()
            return self.runtime.handle(body), taken_ns

    async def close(self) -> None:
        """Drop requests still queued (abandoned by the harness), let a running one finish,
        then close the runtime's remote connection. Joining happens off the event loop."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            self.runtime.close()

    def extra(self) -> dict[str, Any]:
        """The edge split for the result file's ``extra`` block.

        ``sources``: per source, answers, share of answers, and p50/p99 of the driver-side
        latency in ms (``None`` without answers); ``cache_hit_rate``: cache answers over all
        answers; ``breaker_opens``: since ``mark_measure_start`` (or the start);
        ``max_quantization_drift``: the runtime's largest measured drift over its life (a max
        cannot be split by window); ``runtime``: the runtime's cumulative ``stats()``. Called
        after the run; during one it waits for the request in the worker to finish.
        """
        answers = sum(len(latencies) for latencies in self._latency_ns.values())
        sources: dict[str, dict[str, Any]] = {}
        for source, latencies in self._latency_ns.items():
            count = len(latencies)
            p50_ms, p99_ms = p50_p99(latencies, 1e-6)
            sources[source] = {
                "count": count,
                "share": count / answers if answers else 0.0,
                "p50_ms": p50_ms,
                "p99_ms": p99_ms,
            }
        with self._lock:
            runtime_stats = self.runtime.stats()
        return {
            "sources": sources,
            "answers": answers,
            "error_answers": self._error_answers,
            "cache_hit_rate": sources["cache"]["count"] / answers if answers else 0.0,
            "breaker_opens": self.runtime.breaker.opens - self._breaker_opens_before,
            "max_quantization_drift": runtime_stats["drift"]["max"],
            "quantization": runtime_stats["quantization"],
            "model_runtime": self.config.runtime,  # python, or wasm (its WebAssembly module)
            "remote": self.config.remote,
            "runtime": runtime_stats,
        }
