"""servelab's Locust users. This file and ``locust_integration/plugin.py`` (servelab's options
and listeners, imported here) are the servelab modules that import gevent (``shapes.py``, the
other file Locust may load, imports only Locust).

    locust -f loadtests/locustfile.py --headless -u 8 -r 8 -t 10s \\
        --host http://127.0.0.1:8000 RestUser --threshold 'p99<50ms' --result r.json

Users (pick them the usual Locust ways: class names on the command line, ``--class-picker``,
weights): ``RestUser`` (FastHttpUser → ``/v1|v2/predict``, or the contract ``--protocol``
names), ``GrpcUser`` (unary ``Predict``, or ``ModelInfer`` with ``--protocol oip``),
``GrpcStreamUser`` (one bidi ``PredictStream`` — ``ModelStreamInfer`` with ``--protocol oip``
— per user, one message = one request), ``BatchUser`` (one ``score_file`` job = one request; no
target needed) and ``EdgeUser`` (the edge runtime in this process, ``--host`` its REST
remote). Payloads come from servelab's seeded generator (``--seed``, ``--api``,
``--instances``, ``--invalid-fraction`` ...; see
``loadtests.locust_integration.support.add_arguments``). Every answer is judged by its
contract: the canonical schema, or the one ``--protocol`` names.

Every request also goes into servelab's recorder (exact, HDR;
``loadtests/locust_integration/plugin.py`` registers it, and brings it alone to a locustfile of
your own); workers send their figures to the
master with their reports, and when Locust quits the master (or the local runner) writes the
servelab result file (``--result``), checks ``--threshold``s and sets the exit code.

**gevent.** Locust monkey-patches the process when it is imported, before it loads this file;
nothing but these Locust files imports gevent. gRPC gets gevent's I/O in ``init`` (after Locust's
``--processes`` fork), and channels are made in ``on_start``: grpc is not fork-safe.

**Module state.** None here: users reach their process's ``Session`` through their
``Environment`` (``session_of``, the plugin's one registry).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]
import gevent.queue  # type: ignore[import-untyped]
from locust import FastHttpUser, User, task
from locust.env import Environment
from locust.exception import StopUser

from loadtests.drivers.base import Reply
from loadtests.drivers.batch import score_batch
from loadtests.drivers.edge import judge_edge
from loadtests.drivers.grpc import judge_response
from loadtests.drivers.http_errors import http_error_class
from loadtests.engine.records import Outcome
from loadtests.engine.workload import Payload
from loadtests.locust_integration.plugin import session_of
from loadtests.locust_integration.support import (
    LATENCY_NS_KEY,
    REPLY_KEY,
    grpc_address,
    judge_rpc_error,
    option,
    pacing_wait_s,
    request_name,
    request_timeout_s,
)


class ServelabFailure(Exception):
    """A failed request as Locust sees it: the message is servelab's error class."""


def fire(
    user: User, kind: str, name: str, started_s: float, latency_ns: int, length: int, reply: Reply
) -> None:
    """Report one request to Locust (and so to servelab's listener, which reads the context)."""
    failed = reply[0] == Outcome.FAILURE
    user.environment.events.request.fire(
        request_type=kind,
        name=name,
        response_time=latency_ns / 1e6,
        response_length=length,
        response=None,
        context={**user.context(), REPLY_KEY: reply, LATENCY_NS_KEY: latency_ns},
        exception=ServelabFailure(reply[1]) if failed else None,
        start_time=started_s,
        url=None,
    )


class ServelabMixin:
    """What every servelab user shares: the session, target safety and ``--shape arrival``
    pacing (no wait otherwise: a closed loop, as ``servelab run --concurrency``)."""

    environment: Environment
    servelab_target: ClassVar[str] = "locust"

    def on_start(self) -> None:
        self.servelab = session_of(self.environment)
        self.last_start_s: float | None = None
        if self.servelab.refusal:
            raise StopUser()

    def wait_time(self) -> float:
        return pacing_wait_s(self.servelab.period_s, self.last_start_s, time.monotonic())

    def started(self) -> tuple[float, int]:
        """(wall-clock s, perf ns) at a request's start; remembers it for pacing."""
        self.last_start_s = time.monotonic()
        return time.time(), time.perf_counter_ns()


class ServelabUser(ServelabMixin, User):
    """Base of the users that time their own calls (gRPC, batch, edge) and fire the events."""

    abstract = True


class RestUser(ServelabMixin, FastHttpUser):
    """Sends each payload in the ``--protocol`` contract (default servelab's: ``/v1|v2/predict``
    by ``--api``) and judges the answer by it. The contract is the process's, prepared once
    (readiness, the model's metadata) before the first request."""

    servelab_target: ClassVar[str] = "rest"

    def __init__(self, environment: Environment) -> None:
        # FastHttpUser builds its session from these in __init__; options are parsed by then.
        self.network_timeout = self.connection_timeout = request_timeout_s(
            environment.parsed_options
        )
        super().__init__(environment)

    def on_start(self) -> None:
        super().on_start()
        self.contract = self.servelab.rest_contract()

    @task
    def predict(self) -> None:
        workload = self.servelab.workload()
        payload = workload.next_payload()
        request = workload.request(payload, self.contract)
        self.started()
        with self.client.request(
            request.method,
            request.path,
            data=request.body,  # type: ignore[arg-type]  # Locust takes bytes too
            headers=dict(request.headers),
            name=request_name(request.path, payload),
            catch_response=True,
        ) as response:
            if response.status_code == 0:  # no HTTP answer: connection refused, reset, timeout
                error = getattr(response, "error", None) or ConnectionError("no answer")
                reply: Reply = Reply.failure(http_error_class(error))
            else:
                reply = self.contract.judge(payload, response.status_code, response.content)
            response.request_meta["context"][REPLY_KEY] = reply
            if reply[0] == Outcome.FAILURE:
                response.failure(ServelabFailure(reply[1]))
            else:
                response.success()


class _GrpcUser(ServelabUser):
    """A blocking grpc channel per user, made cooperative by gevent (grpc shares one HTTP/2
    connection between equal channels, the gRPC norm). Made in ``on_start``: after any fork.
    ``oip``: the process's Open Inference Protocol contract (``--protocol oip``), else
    ``None`` (servelab's own ``Predictor``)."""

    abstract = True
    channel: Any = None

    def on_start(self) -> None:
        super().on_start()
        import grpc

        from targets.rpc import predict_pb2_grpc

        self.timeout_s = request_timeout_s(self.servelab.options)
        self.channel = grpc.insecure_channel(grpc_address(self.servelab.options, self.host))
        self.stub = predict_pb2_grpc.PredictorStub(self.channel)
        self.oip = self.servelab.oip_contract()
        self.oip_metadata = (
            tuple((key.lower(), value) for key, value in self.oip.metadata) or None
            if self.oip is not None
            else None
        )

    def on_stop(self) -> None:
        if self.channel is not None:  # None when on_start refused the target
            self.channel.close()

    def encode(self, payload: Payload) -> tuple[Any, int]:
        """The request for ``payload`` in this user's contract, and its size in bytes."""
        if self.oip is not None:
            data = self.servelab.workload().infer_request(payload, self.oip)
            return data, len(data)
        message, size = self.servelab.workload().message(payload)
        return message, size


class GrpcUser(_GrpcUser):
    """Unary ``Predict`` (``ModelInfer`` with ``--protocol oip``), one call per request."""

    servelab_target: ClassVar[str] = "grpc"

    def on_start(self) -> None:
        super().on_start()
        if self.oip is not None:
            from loadtests.protocols.oip_grpc import INFER

            self.call: Any = self.channel.unary_unary(INFER)  # bytes in, bytes out
            self.method = "ModelInfer"
        else:
            self.call, self.method = self.stub.Predict, "Predict"

    @task
    def predict(self) -> None:
        payload = self.servelab.workload().next_payload()
        request, _size = self.encode(payload)
        started_s, started_ns = self.started()
        try:
            answer = self.call(request, timeout=self.timeout_s, metadata=self.oip_metadata)
        except Exception as exc:  # grpc.RpcError, and anything else the channel raises
            reply, length = judge_rpc_error(payload, exc), 0
        else:
            reply, length = self.judge(payload, answer)
        latency_ns = time.perf_counter_ns() - started_ns
        name = request_name(self.method, payload)
        fire(self, "grpc", name, started_s, latency_ns, length, reply)

    def judge(self, payload: Payload, answer: Any) -> tuple[Reply, int]:
        if self.oip is not None:
            return self.oip.judge(payload, answer), len(answer)
        return judge_response(payload, answer), answer.ByteSize()


_END = object()  # closes a stream's request iterator


class GrpcStreamUser(_GrpcUser):
    """One bidi ``PredictStream`` (``ModelStreamInfer`` with ``--protocol oip``) per user,
    ping-pong: each message is one request. The time from opening the stream to its first
    answer goes to the result's ``first_response_ms``. A broken or timed-out stream fails that
    request and is reopened by the next one; an OIP answer carrying ``error_message`` refuses
    that request only (an expected rejection for a deliberately invalid payload)."""

    servelab_target: ClassVar[str] = "grpc-stream"
    responses: Any = None

    def on_start(self) -> None:
        super().on_start()
        if self.oip is not None:
            from loadtests.drivers.grpc_oip import OipStream
            from loadtests.protocols.oip_grpc import STREAM_INFER
            from targets.rpc import inference_pb2

            self.oip_stream: OipStream | None = OipStream(self.oip)
            self.stream_call: Any = self.channel.stream_stream(
                STREAM_INFER,
                response_deserializer=inference_pb2.ModelStreamInferResponse.FromString,
            )
            self.method = "ModelStreamInfer"
        else:
            self.oip_stream, self.stream_call = None, self.stub.PredictStream
            self.method = "PredictStream"
        self.open_stream()

    def open_stream(self) -> None:
        self.requests = gevent.queue.Queue()
        self.responses = self.stream_call(iter(self.requests.get, _END), metadata=self.oip_metadata)
        self.opened_ns = time.perf_counter_ns()
        self.answered = False

    def close_stream(self) -> None:
        if self.responses is not None:
            self.requests.put(_END)  # half-close, then cancel whatever is left
            self.responses.cancel()
            self.responses = None

    def on_stop(self) -> None:
        self.close_stream()
        super().on_stop()

    def exchange(self, payload: Payload, message: Any) -> tuple[Reply, int]:
        """Send one message, read its answer: (reply, response bytes)."""
        timer = gevent.Timeout(self.timeout_s)
        timer.start()
        try:
            self.requests.put(message)
            response = next(self.responses)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            reply: Reply = Reply.failure("timeout")
        except StopIteration:
            reply = Reply.failure("stream_ended")
        except Exception as exc:  # the stream broke (grpc.RpcError): its status decides
            reply = judge_rpc_error(payload, exc)
        else:
            if self.oip_stream is not None:
                return self.oip_stream.judge(payload, response), response.ByteSize()
            return judge_response(payload, response), response.ByteSize()
        finally:
            timer.cancel()
        self.close_stream()
        return reply, 0

    @task
    def predict(self) -> None:
        if self.responses is None:
            self.open_stream()
            self.servelab.side().count("stream_reopens")
        payload = self.servelab.workload().next_payload()
        message, _size = self.encode(payload)
        started_s, started_ns = self.started()
        reply, length = self.exchange(payload, message)
        ended_ns = time.perf_counter_ns()
        if length and not self.answered:
            self.answered = True
            self.servelab.side().sample("first_response_ns", ended_ns - self.opened_ns)
        name = request_name(self.method, payload)
        fire(self, "grpc-stream", name, started_s, ended_ns - started_ns, length, reply)


class BatchUser(ServelabUser):
    """One batch job per request through the batch target's real path (``--batch-size`` rows
    from the payload, ``--model``); runs in gevent's thread pool so file I/O and the model do
    not stall the other users. Rows go to the result's ``rows`` and ``rows_per_s``."""

    servelab_target: ClassVar[str] = "batch"

    def on_start(self) -> None:
        super().on_start()
        self.servelab.batch_users += 1
        pool = gevent.get_hub().threadpool
        pool.maxsize = max(pool.maxsize, self.servelab.batch_users)
        self.jobs = 0

    @task
    def score(self) -> None:
        payload = self.servelab.workload().next_payload()
        self.jobs += 1
        name = f"job-{id(self):x}-{self.jobs}"
        size = int(option(self.servelab.options, "batch_size", 256))
        started_s, started_ns = self.started()
        reply, scored = gevent.get_hub().threadpool.apply(
            score_batch,
            (payload,),
            {"model": self.servelab.model(), "batch_size": size,
             "directory": self.servelab.batch_directory(), "name": name},
        )  # fmt: skip
        latency_ns = time.perf_counter_ns() - started_ns
        side = self.servelab.side()
        side.count("batch_jobs")
        side.count("batch_rows", size if scored is not None else 0)
        fire(self, "batch", request_name("score_file", payload), started_s, latency_ns, 0, reply)


class EdgeUser(ServelabUser):
    """Requests through the edge runtime in this process (quantised cache, ``--host`` as its
    REST remote, local fallback); each request is named by where its answer came from."""

    servelab_target: ClassVar[str] = "edge"

    @task
    def predict(self) -> None:
        payload = self.servelab.workload().next_payload()
        started_s, started_ns = self.started()
        with self.servelab.edge_lock:
            answer = self.servelab.edge_runtime().handle(payload.body)
        latency_ns = time.perf_counter_ns() - started_ns
        reply, source = judge_edge(payload, answer)
        if source is not None:
            self.servelab.side().observe_ns(f"edge_source:{source}", latency_ns)
        if self.servelab.link is not None:  # --flaky-link: counted by the link's state
            self.servelab.link.count_answer(
                self.servelab.side(), source, reply.outcome == Outcome.FAILURE
            )
        name = request_name(f"edge [{source or 'refused'}]", payload)
        fire(self, "edge", name, started_s, latency_ns, 0, reply)
