"""Faulty targets for tests: tiny loopback servers whose behaviour per request is scripted.

``FaultyRestTarget`` speaks just enough HTTP/1.1 (keep-alive, Content-Length) to answer the
canonical ``/v1/predict`` and ``/v2/predict``; ``FaultyGrpcTarget`` serves ``Predictor.Predict``
and ``PredictStream`` (one script entry per message) with grpc.aio. A *script* maps the
request's index (0, 1, 2... in arrival order) to a ``Fault``:

- ``OK``: a canonical answer; ``Slow(s)``: the same after ``s`` seconds;
- ``HANG``: never answer (the client's per-request timeout ends it);
- ``RESET``: abort the connection (RST) without answering; ``CLOSE``: close it cleanly (FIN);
- ``Status(code)``: answer that HTTP status (5xx bursts) or gRPC status (UNAVAILABLE).

``stop()`` is "the target was killed": the listener goes and every open connection is cut. Both
run in the test's event loop on 127.0.0.1, port 0 (``ThreadedTarget``: on a loop of their own in
a thread, for load from another process); hanging handlers end when the target stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from targets.rpc import convert, predict_pb2_grpc
from targets.rpc import predict_pb2 as pb


@dataclass(frozen=True, slots=True)
class Slow:
    delay_s: float


@dataclass(frozen=True, slots=True)
class Status:
    code: int | grpc.StatusCode


OK, HANG, RESET, CLOSE = "ok", "hang", "reset", "close"
Fault = str | Slow | Status
Script = Callable[[int], Fault]


def burst(fault: Fault, start: int, stop: int) -> Script:
    """``fault`` for requests ``start`` to ``stop - 1``, a normal answer otherwise."""
    return lambda index: fault if start <= index < stop else OK


def _answer(body: Any, transport: str) -> dict[str, Any]:
    rows = body.get("rows") if isinstance(body, dict) else None
    count = len(rows) if isinstance(rows, list) and rows else 1
    metadata = {"transport": transport, "model_name": "faulty", "model_version": "0",
                "request_id": "0", "api": "v2" if rows else "v1"}  # fmt: skip
    return {"predictions": [0.5] * count, "metadata": metadata}


class FaultyRestTarget:
    """See the module docstring. ``url`` once ``start()`` returned; ``seen`` counts requests."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopped = asyncio.Event()

    async def start(self) -> FaultyRestTarget:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Killed: stop listening and cut every connection, answered or not."""
        self._stopped.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        """(the request line, the body); ``None`` when the connection ended."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        try:
            return head.split(b"\r\n", 1)[0], await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while not self._stopped.is_set():  # one request per turn, keep-alive
                request = await self._read_request(reader)
                if request is None:
                    return
                line, body = request
                if not line.startswith(b"POST "):  # a scrape of /metrics: not in the script
                    writer.write(b"HTTP/1.1 404 X\r\ncontent-length: 0\r\n\r\n")
                    continue
                fault = self.script(self.seen)
                self.seen += 1
                if not await self._respond(writer, body, fault):
                    return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _respond(self, writer: asyncio.StreamWriter, body: bytes, fault: Fault) -> bool:
        """Act out ``fault``; False when the connection is gone."""
        if fault == HANG:
            await self._stopped.wait()
            return False
        if fault in (RESET, CLOSE):
            sock = writer.get_extra_info("socket")
            if fault == RESET and sock is not None:  # linger 0: close sends RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort() if fault == RESET else writer.close()
            return False
        if isinstance(fault, Slow):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), fault.delay_s)
            if self._stopped.is_set():
                return False
        status = fault.code if isinstance(fault, Status) else 200
        if status == 200:
            payload = orjson.dumps(_answer(orjson.loads(body), "rest"))
        else:
            payload = orjson.dumps({"error": {"code": "internal_error", "message": "scripted"}})
        writer.write(
            f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        except ConnectionError:
            return False
        return True


class _ScriptedPredictor(predict_pb2_grpc.PredictorServicer):
    def __init__(self, target: FaultyGrpcTarget) -> None:
        self.target = target

    async def Predict(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        return await self._answer(request, context)

    async def PredictStream(
        self, request_iterator: Any, context: Any
    ) -> AsyncIterator[pb.PredictResponse]:
        """Each message takes the next script entry: a ``Status`` ends the whole stream."""
        async for request in request_iterator:
            yield await self._answer(request, context)

    async def _answer(self, request: pb.PredictRequest, context: Any) -> pb.PredictResponse:
        target = self.target
        fault = target.script(target.seen)
        target.seen += 1
        if fault == HANG:
            await target.stopped.wait()
        if isinstance(fault, Slow):
            await asyncio.sleep(fault.delay_s)
        if isinstance(fault, Status) and isinstance(fault.code, grpc.StatusCode):
            await context.abort(fault.code, "scripted")
        body = {"rows": [list(row.values) for row in request.rows]} if request.rows else {}
        return convert.to_response(_answer(body, "grpc"))


class FaultyGrpcTarget:
    """A grpc.aio server whose ``Predict`` follows the script (``Status(grpc.StatusCode...)``)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen = 0
        self.address = ""
        self.stopped = asyncio.Event()
        self._server: grpc.aio.Server | None = None

    async def start(self) -> FaultyGrpcTarget:
        server = grpc.aio.server()
        predict_pb2_grpc.add_PredictorServicer_to_server(_ScriptedPredictor(self), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server, self.address = server, f"127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Killed: no grace period, in-flight calls are cut."""
        self.stopped.set()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace=None)


class ThreadedTarget:
    """A faulty target served from its own event loop in a thread, for load from another
    process (Locust). ``where`` is its URL or address; ``seen`` and ``kill()`` as above."""

    def __init__(self, make: Callable[[], FaultyRestTarget | FaultyGrpcTarget]) -> None:
        self._make = make
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.target: FaultyRestTarget | FaultyGrpcTarget | None = None

    def __enter__(self) -> ThreadedTarget:
        self._thread.start()
        self.target = self._call(self._start())
        return self

    async def _start(self) -> FaultyRestTarget | FaultyGrpcTarget:
        return await self._make().start()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)

    @property
    def where(self) -> str:
        target = self.target
        assert target is not None
        return target.url if isinstance(target, FaultyRestTarget) else target.address

    @property
    def seen(self) -> int:
        return self.target.seen if self.target is not None else 0

    def kill(self) -> None:
        if self.target is not None:
            self._call(self.target.stop())

    def __exit__(self, *_exc: object) -> None:
        try:
            self.kill()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()
