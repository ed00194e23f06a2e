"""REST over a lean HTTP/1.1 client: asyncio transports, ``httptools`` parsing (the llhttp parser
uvicorn and uvloop's authors keep), a keep-alive pool with one request in flight per connection.

Why not aiohttp: as a load generator it spends ~60 µs of client CPU per request on a 2-core box;
this path spends a fraction of that (see ``benchmarks/selfbench.py``), so the generator stays far
from being the bottleneck. It does what a load test needs and no more: plain ``http://``, POST
with ``Content-Length``, responses framed by ``Content-Length``, chunked encoding or connection
close, keep-alive honoured (``Connection: close`` drops the connection after the answer), and
every failure reported by class (``connect``, ``timeout``, ``reset``, ``disconnected``,
``protocol``; named by ``http_errors``, as for every HTTP client) — never raised.
``--client aiohttp`` keeps the aiohttp driver (``rest.py``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

from loadtests.drivers.base import ColdStarts, DriverBase, Reply, WireView
from loadtests.drivers.http_errors import (
    PROTOCOL,
    TIMEOUT,
    http_error_class,
    lost_connection_class,
)
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import HttpContract
from loadtests.protocols.servelab import ServelabHttp

_Answer = tuple[int, bytes]  # status, body
MAX_BODY_BYTES: Final = 64 * 1024 * 1024  # an answer larger than this is a protocol failure


class ConnectionFailed(Exception):
    """A request on this connection got no complete answer; ``error_class`` says why."""

    def __init__(self, error_class: str) -> None:
        super().__init__(error_class)
        self.error_class = error_class


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight (no pipelining)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_body_bytes: int,
        flag_header: bytes | None = None,
    ) -> None:
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.flag_header = flag_header  # a header (lower case) whose value "1" sets ``flagged``
        self.flagged = False  # the last answer carried ``flag_header: 1``
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[_Answer] | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.framed = False  # Content-Length or chunked: EOF before the end cuts the answer
        self.reusable = True
        self.closed = False

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(PROTOCOL)

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        self.waiter = None
        if self.headers_done and exc is None and not self.framed:
            # a body delimited by the connection's end (no Content-Length, not chunked)
            waiter.set_result((self.parser.get_status_code(), b"".join(self.parts)))
            return
        waiter.set_exception(ConnectionFailed(lost_connection_class(exc)))

    # -- httptools callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in (b"content-length", b"transfer-encoding"):
            self.framed = True
        elif lowered == self.flag_header:
            self.flagged = value.strip() == b"1"

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body_bytes:
            raise httptools.HttpParserError("answer too large")
        self.parts.append(body)

    def on_message_complete(self) -> None:
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        self.parts, self.size, self.headers_done, self.framed = [], 0, False, False
        if not self.parser.should_keep_alive():
            self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))
        if not self.reusable and self.transport is not None:
            self.transport.close()

    # -- ours -----------------------------------------------------------------------------------

    def _fail(self, error_class: str) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionFailed(error_class))
        if self.transport is not None:
            self.transport.abort()

    def request(self, data: bytes, timeout_s: float) -> asyncio.Future[_Answer]:
        """Send ``data`` (a whole request); the future resolves to its answer."""
        assert self.transport is not None, "request() before the connection was made"
        assert self.waiter is None, "one request in flight per connection"
        waiter = self.waiter = self.loop.create_future()
        self.flagged = False
        self.transport.write(data)
        timer = self.loop.call_later(timeout_s, self._timed_out, waiter)
        waiter.add_done_callback(lambda _: timer.cancel())
        return waiter

    def _timed_out(self, waiter: asyncio.Future[_Answer]) -> None:
        if self.waiter is waiter:  # the answer never came: this connection is unusable now
            self._fail(TIMEOUT)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()


class Http1Driver(DriverBase):
    """POSTs canonical payloads to ``{base_url}/v1/predict`` or ``/v2/predict`` over at most
    ``connections`` keep-alive connections (the ``Driver`` protocol)."""

    transport = "rest"
    client = "fast"  # recorded as the result's extra.client
    wire: WireView = "stamped"  # on the wire once a connection is ours

    def __init__(
        self,
        base_url: str,
        *,
        connections: int = 64,
        timeout_s: float = 30.0,
        max_body_bytes: int = MAX_BODY_BYTES,
        contract: HttpContract | None = None,
        cold_start_header: str | None = None,
    ) -> None:
        """``cold_start_header``: an answer header that says ``1`` when the request started the
        instance that served it (a function front's); each such request is marked cold."""
        if connections < 1:
            raise LoadOptionError("connections must be a positive int")
        if timeout_s <= 0:
            raise LoadOptionError("timeout_s must be positive")
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise LoadOptionError(
                f"the fast REST client speaks plain http://HOST:PORT, not {base_url!r}"
            )
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self._authority = parts.netloc.rsplit("@", 1)[-1]
        self.contract = contract or ServelabHttp()
        self._judge = self.contract.judge
        self.connections = connections
        self.timeout_s = timeout_s
        self.max_body_bytes = max_body_bytes
        super().__init__()
        self._flag_header = cold_start_header.lower().encode() if cold_start_header else None
        if cold_start_header:
            self.cold_starts = ColdStarts()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._opening = 0
        self._dialing: set[asyncio.Task[None]] = set()
        self._waiters: deque[asyncio.Future[_Connection]] = deque()
        self._requests: dict[int, bytes] = {}  # payloads are pooled: encode each one once

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()

    def _request(self, payload: Payload) -> bytes:
        key = id(payload)
        data = self._requests.get(key)
        if data is None:
            request = self.contract.request(payload)
            lines = [
                f"{request.method} {self.prefix}{request.path} HTTP/1.1",
                f"Host: {self._authority}",
                f"Content-Length: {len(request.body)}",
            ]
            lines += [f"{name}: {value}" for name, value in request.headers]
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            data = self._requests[key] = head + request.body
        return data

    async def _connection(self) -> _Connection:
        """An idle connection, a new one (under the limit), or the next one released."""
        while self._idle:
            connection = self._idle.pop()  # LIFO: the warmest connection
            if not connection.closed:
                return connection
            self._all.discard(connection)
        if len(self._all) + self._opening < self.connections:
            return await self._dial()
        waiter: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        # The wait for a pooled connection counts against the request's timeout, as aiohttp's
        # total timeout does: an exhausted pool times out as "timeout", never waits forever.
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), self.timeout_s)
        except (TimeoutError, asyncio.CancelledError):
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())  # handed over as we gave up: not lost
            waiter.cancel()
            raise

    async def _dial(self) -> _Connection:
        loop = self._loop or asyncio.get_running_loop()
        self._opening += 1
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(loop, self.max_body_bytes, self._flag_header),
                    self.host,
                    self.port,
                ),
                self.timeout_s,
            )
        finally:
            self._opening -= 1
        self._all.add(protocol)
        return protocol

    def _release(self, connection: _Connection) -> None:
        # A request still awaiting its answer (its send was cancelled) leaves the connection
        # unusable: the answer may yet arrive, for nobody.
        if not connection.reusable or connection.closed or connection.waiter is not None:
            self._all.discard(connection)
            connection.close()
            if self._waiters:  # a slot is free: let the next waiter dial
                self._wake_with_dial()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _wake_with_dial(self) -> None:
        waiter = self._waiters.popleft()

        async def dial() -> None:
            try:
                connection = await self._dial()
            except Exception as exc:  # reported to the waiting request, which classifies it
                if not waiter.done():
                    waiter.set_exception(exc)
                return
            if waiter.done():
                self._release(connection)
            else:
                waiter.set_result(connection)

        task = asyncio.ensure_future(dial())
        self._dialing.add(task)  # keep a reference until it is done
        task.add_done_callback(self._dialing.discard)

    async def send(self, payload: Payload) -> Reply:
        data = self._request(payload)
        try:
            connection = await self._connection()
        except (TimeoutError, OSError) as exc:
            return Reply.failure(http_error_class(exc))
        self.stamps.stamp()
        try:
            status, raw = await connection.request(data, self.timeout_s)
        except ConnectionFailed as exc:
            return Reply.failure(exc.error_class)
        finally:
            if connection.flagged and self.cold_starts is not None:
                self.cold_starts.mark()
            self._release(connection)
        self.bytes_sent += len(data)
        self.bytes_received += len(raw)
        return self._judge(payload, status, raw)

    async def close(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
        for connection in list(self._all):
            connection.close()
        self._all.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports close before the loop ends
