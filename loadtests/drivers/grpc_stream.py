"""The gRPC streaming driver: ``streams`` bidi ``PredictStream`` calls kept open for the run.

Each ``send`` writes one message on a stream (round-robin: the server answers every stream from
one shared micro-batcher, so streams are alike and an O(1) pick keeps the hot path short) and
awaits its answer. A stream's answers come in request order, so each stream keeps a FIFO of the
futures of its messages in flight and one reader task resolves them front to back, draining with
``read()`` until ``grpc.aio.EOF`` (never mixed with ``async for``). A future holds the response or
the error class that ended its stream — never an exception, so a stream that breaks with many
sends in flight leaves nothing unretrieved.

A broken stream (target stopped, connection lost, a write cancelled mid-way) fails its waiting
sends with its classified error and is reopened by the next send that picks it, at most
``max_reopens`` times per driver; past that, sends on it fail at once with that error rather than
dialling a dead target on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from array import array
from asyncio import current_task
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final, Protocol

import grpc
import numpy as np

from loadtests.drivers.base import DriverBase, Reply, WireView
from loadtests.drivers.deadlines import Deadlines
from loadtests.drivers.grpc import (
    MESSAGE_CACHE_LIMIT,
    PREDICT_STREAM_PATH,
    AnswerJudge,
    MessageCache,
    check_timeout,
    error_class,
    reply_for_status,
)
from loadtests.engine.histogram import LatencyHistogram
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from targets.rpc import predict_pb2 as pb

StreamAnswer = Any  # the response message, or the error class (a str) that ended the stream
TIMED_OUT: Final = "\x00timed out"  # a send's own timeout fired (not an error class)
STREAM_ENDED: Final = "stream_ended"  # the server ended a stream the driver had not finished
UNASKED_RESPONSE: Final = "unasked_response"  # an answer with no message in flight for it
CANCELLED: Final = "cancelled"
GAP_FOLD_EVERY: Final = 1 << 16
CLOSE_TIMEOUT_S: Final = 5.0


class StreamContract(Protocol):
    """What a bidi stream speaks: servelab's ``PredictStream`` (the default) or the Open
    Inference Protocol's ``ModelStreamInfer`` (``drivers.grpc_oip.OipStream``)."""

    def open_call(self, channel: Any) -> Any: ...

    def encode(self, payload: Payload) -> tuple[Any, int]:
        """The message for ``payload`` (made once per distinct payload) and its size."""
        ...

    def judge(self, payload: Payload, answer: Any) -> Reply: ...


class PredictStreamContract:
    """servelab's own ``Predictor/PredictStream``."""

    def __init__(self) -> None:
        # ``encode`` and ``judge`` are the caches' own methods: no wrapper call a message
        self.encode: Callable[[Payload], tuple[bytes, int]] = MessageCache().sized
        self.judge: Callable[[Payload, Any], Reply] = AnswerJudge()

    def open_call(self, channel: Any) -> Any:
        # bytes out (serialized once per payload), PredictResponses back
        call = channel.stream_stream(
            PREDICT_STREAM_PATH, response_deserializer=pb.PredictResponse.FromString
        )
        return call()


class _Stream:
    """One bidi call: its FIFO of waiting sends, its write slot, its timings and its fate.

    grpc allows one write in flight per call. The slot is a flag, taken without a lock when
    free (ping-pong: always); a send that finds it taken queues a turn, and a finished write
    hands the slot straight to the oldest turn still waiting, so writes keep send order."""

    __slots__ = (
        "call", "error", "index", "last_response_ns", "opened_ns", "turns", "waiting",
        "write_busy", "writing",
    )  # fmt: skip

    def __init__(self, call: Any, opened_ns: int, index: int) -> None:
        self.call = call
        self.index = index  # its place in the driver's list
        self.waiting: deque[asyncio.Future[StreamAnswer]] = deque()
        self.write_busy = False  # a write is in flight, or the slot is handed to a turn
        self.turns: deque[asyncio.Future[None]] = deque()  # sends waiting for the slot
        self.opened_ns = opened_ns
        self.last_response_ns = 0  # 0 until the first response
        self.error: str | None = None  # set once, when the stream breaks
        # the send whose write is in flight, and its task (cancelled if stuck past its timeout)
        self.writing: tuple[asyncio.Future[StreamAnswer], asyncio.Task[object] | None] | None = None

    async def wait_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the write slot (it was taken): it is ours when this returns."""
        turn: asyncio.Future[None] = loop.create_future()
        self.turns.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the slot as we were cancelled
                self.pass_turn()
            raise

    def pass_turn(self) -> None:
        """Hand the write slot to the oldest send still waiting for it, else free it."""
        turns = self.turns
        while turns:
            turn = turns.popleft()
            if not turn.done():  # a cancelled one has left
                turn.set_result(None)
                return
        self.write_busy = False

    def fail(self, error: str) -> None:
        """Mark the stream broken (the first cause wins), answer every waiting send with it."""
        if self.error is None:
            self.error = error
        waiting = self.waiting
        while waiting:
            future = waiting.popleft()
            if not future.done():
                future.set_result(self.error)
        if not self.call.done():
            self.call.cancel()


class GrpcStreamDriver(DriverBase):
    """One message per request over ``streams`` long-lived ``PredictStream`` calls.

    ``extra()`` reports ``first_response_ms`` (opening a stream to its first answer, median over
    streams), ``gap_p50_ms``/``gap_p99_ms`` (between consecutive answers on a stream — idle time
    included, so under saturation it is the server's per-stream pace), ``streams`` and
    ``stream_reopens``; gaps and reopens count since ``mark_measure_start``. Byte counts are
    serialized message sizes, as in ``GrpcUnaryDriver``. All streams share one channel — one
    HTTP/2 connection, the setup the design's bidi figures were measured with.
    """

    transport = "grpc-stream"
    wire: WireView = "stamped"  # once the stream's write slot is ours

    def __init__(
        self,
        address: str,
        *,
        streams: int = 1,
        timeout_s: float = 30.0,
        max_reopens: int = 64,
        contract: StreamContract | None = None,
    ) -> None:
        if streams < 1:
            raise LoadOptionError("streams must be a positive int")
        if max_reopens < 0:
            raise LoadOptionError("max_reopens must be an int >= 0")
        check_timeout(timeout_s)
        self.address = address
        self.streams = streams
        self.timeout_s = timeout_s
        self.max_reopens = max_reopens
        super().__init__()
        self.reopens = 0  # over the driver's life: what ``max_reopens`` bounds
        self._reopens_before = 0
        self.contract: StreamContract = contract or PredictStreamContract()
        self._encode = self.contract.encode
        self._judge = self.contract.judge
        self._channel: Any = None
        self._streams: list[_Stream] = []
        self._next = 0
        self._idle: list[int] = []  # streams that went idle (may hold stale entries: checked)
        self._readers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._expired: set[asyncio.Task[object]] = set()  # sends whose stuck write we cancelled
        # every send's (stream, future) in flight: one sweeper expires those past their timeout
        self._deadlines: Deadlines[tuple[_Stream, asyncio.Future[StreamAnswer]]] = Deadlines(
            timeout_s, expire=lambda item: self._expire(*item)
        )
        # Raw ns in int64 columns, folded vectorised: no Python object per answer, and the gap
        # histogram keeps memory flat however long the run.
        self._first_response_ns = array("q")
        self._gaps_ns = array("q")
        self._gaps = LatencyHistogram()

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._channel = grpc.aio.insecure_channel(self.address)
        self._streams = [self._start(index) for index in range(self.streams)]
        self._deadlines.start()

    def _start(self, index: int) -> _Stream:
        # No deadline on the call: it lives for the run; each message has its own timeout.
        call = self.contract.open_call(self._channel)
        stream = _Stream(call, time.perf_counter_ns(), index)
        self._idle.append(index)
        reader = (self._loop or asyncio.get_running_loop()).create_task(self._read(stream))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        return stream

    async def close(self) -> None:
        """Half-close every live stream and let the readers see the end; then force the rest."""
        await self._deadlines.stop()
        streams, self._streams = self._streams, []
        for stream in streams:
            if stream.error is None:
                with contextlib.suppress(Exception):  # it may have ended meanwhile: fine
                    await stream.call.done_writing()
        if self._readers:
            await asyncio.wait(set(self._readers), timeout=min(self.timeout_s, CLOSE_TIMEOUT_S))
        for stream in streams:
            stream.fail(CANCELLED)
        if self._channel is not None:
            await self._channel.close()  # cancels any call still open, which ends its reader
            self._channel = None
        readers = set(self._readers)
        if readers:
            _, stuck = await asyncio.wait(readers, timeout=CLOSE_TIMEOUT_S)
            for reader in stuck:
                reader.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)

    # -- the hot path ------------------------------------------------------------------------

    def prepare(self, payloads: Iterable[Payload]) -> None:
        for payload in itertools.islice(payloads, MESSAGE_CACHE_LIMIT):
            self._encode(payload)  # both contracts keep what they encode

    def _pick(self) -> _Stream:
        """An idle stream (nothing in flight: ping-pong, the send is answered without queueing
        behind another), else the next in turn."""
        streams = self._streams
        if not streams:
            raise RuntimeError("GrpcStreamDriver.send() before open()")
        idle = self._idle
        while idle:
            index = idle.pop()
            stream = streams[index]
            if not stream.waiting and stream.error is None:
                return stream
        index = self._next
        self._next = (index + 1) % len(streams)
        stream = streams[index]
        if stream.error is not None and self.reopens < self.max_reopens:
            self.reopens += 1
            stream = streams[index] = self._start(index)
        return stream

    async def send(self, payload: Payload) -> Reply:
        message, size = self._encode(payload)
        stream = self._pick()
        loop = self._loop
        assert loop is not None, "GrpcStreamDriver.send() before open()"
        future: asyncio.Future[StreamAnswer] = loop.create_future()
        watched = (stream, future)
        self._deadlines.add(watched)  # no timer per send: the sweeper's ``_expire``
        try:
            if stream.write_busy:
                await stream.wait_turn(loop)
            else:
                stream.write_busy = True
            try:  # FIFO order = write order
                if stream.error is not None:
                    return Reply.failure(stream.error)
                stream.waiting.append(future)
                self.bytes_sent += size
                task = current_task(loop)
                stream.writing = (future, task)
                self.stamps.stamp_task(task)
                try:
                    await self._write(stream, message)
                finally:
                    stream.writing = None
            finally:
                stream.pass_turn()
            answer = await future
        except asyncio.CancelledError:
            task = asyncio.current_task(loop)
            if task is None or task not in self._expired:
                raise
            self._expired.discard(task)  # our own cancel of a write stuck past the timeout
            task.uncancel()
            answer = TIMED_OUT
        finally:
            self._deadlines.forget(watched)
            if not future.done():  # nobody answers it now; the reader skips it
                future.cancel()
        if answer is TIMED_OUT:  # the stream goes on; the reader drops the late answer
            return reply_for_status(payload, grpc.StatusCode.DEADLINE_EXCEEDED)
        if isinstance(answer, str):
            return Reply.failure(answer)
        return self._judge(payload, answer)

    def _expire(self, stream: _Stream, future: asyncio.Future[StreamAnswer]) -> None:
        """A send's timeout: an answer still awaited is given up (the stream goes on); a write
        still stuck is cancelled, which breaks its stream — grpc cancels the whole call."""
        if future.done():
            return
        writing = stream.writing
        if writing is not None and writing[0] is future and writing[1] is not None:
            self._expired.add(writing[1])
            writing[1].cancel()
        else:
            future.set_result(TIMED_OUT)

    async def _write(self, stream: _Stream, message: Any) -> None:
        """Write one message; a failed write breaks the stream (its FIFO is no longer sure)."""
        call = stream.call
        try:
            await call.write(message)
        except asyncio.CancelledError:  # grpc cancels the whole call when a write is cancelled
            stream.fail(CANCELLED)
            raise
        except Exception as exc:
            if call.done() and not isinstance(exc, grpc.aio.AioRpcError):
                return  # it had ended: its reader reports why, to every waiting send
            stream.fail(error_class(exc))

    async def _read(self, stream: _Stream) -> None:
        """Resolve the stream's futures in order until it ends; then fail what is left."""
        call, waiting = stream.call, stream.waiting
        clock = time.perf_counter_ns
        eof = grpc.aio.EOF
        error = STREAM_ENDED
        try:
            while (response := await call.read()) is not eof:
                now_ns = clock()
                if stream.last_response_ns:
                    self._gaps_ns.append(now_ns - stream.last_response_ns)
                    if len(self._gaps_ns) >= GAP_FOLD_EVERY:
                        self._fold_gaps()
                else:
                    self._first_response_ns.append(now_ns - stream.opened_ns)
                stream.last_response_ns = now_ns
                self.bytes_received += response.ByteSize()
                if not waiting:
                    error = UNASKED_RESPONSE
                    break
                future = waiting.popleft()
                if not future.done():  # a timed-out or cancelled send no longer waits
                    future.set_result(response)
                if not waiting:
                    self._idle.append(stream.index)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # this reader is being cancelled
                stream.fail(CANCELLED)
                raise
            error = CANCELLED  # the call was cancelled locally (a write, or close)
        except Exception as exc:  # the stream broke: the reader's one error boundary
            error = error_class(exc)
        stream.fail(error)

    # -- figures -----------------------------------------------------------------------------

    def mark_measure_start(self) -> None:
        """Forget warm-up gaps and reopens, so ``extra()`` covers the measured window (chain it
        into the harness's ``on_measure_start``). First-response times stay: streams open before
        any window, and that opening is what the figure describes."""
        self._gaps_ns = array("q")
        self._gaps = LatencyHistogram()
        self._reopens_before = self.reopens

    def _fold_gaps(self) -> None:
        gaps, self._gaps_ns = self._gaps_ns, array("q")
        self._gaps.record_many(np.frombuffer(gaps, dtype=np.int64))

    def extra(self) -> dict[str, float]:
        """Transport figures for the result file's ``extra`` block (see the class docstring)."""
        self._fold_gaps()
        reopens = self.reopens - self._reopens_before
        figures: dict[str, float] = {"streams": self.streams, "stream_reopens": reopens}
        first_ns = np.frombuffer(self._first_response_ns, dtype=np.int64)
        if first_ns.size:
            figures["first_response_ms"] = float(np.median(first_ns)) / 1e6
        if self._gaps.total:
            figures["gap_p50_ms"] = self._gaps.percentile_ns(50) / 1e6
            figures["gap_p99_ms"] = self._gaps.percentile_ns(99) / 1e6
        return figures
