"""REST over HTTP with aiohttp: a keep-alive connection pool, one request in flight per
connection. (httpx.AsyncClient measured ~15x slower as a load generator; it is not used here.)"""

from __future__ import annotations

import asyncio

import aiohttp
import orjson

from loadtests.drivers.base import DriverBase, Reply, WireView, judge_http
from loadtests.drivers.http_errors import http_error_class
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError

JSON_HEADERS = {"content-type": "application/json"}


class RestDriver(DriverBase):
    """POSTs canonical payloads to ``{base_url}/v1/predict`` or ``/v2/predict``."""

    transport = "rest"
    client = "aiohttp"  # recorded as the result's extra.client
    wire: WireView = "stamped"  # by aiohttp's request-headers-sent trace signal

    def __init__(self, base_url: str, *, connections: int = 64, timeout_s: float = 30.0) -> None:
        if connections < 1:
            raise LoadOptionError("connections must be a positive int")
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self.timeout_s = timeout_s
        super().__init__()
        self._session: aiohttp.ClientSession | None = None
        self._bodies: dict[int, bytes] = {}  # payloads are pooled: encode each one once
        self._urls = {"v1": f"{self.base_url}/v1/predict", "v2": f"{self.base_url}/v2/predict"}

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.connections, ttl_dns_cache=None)
        # aiohttp waits for a pooled connection inside ``post``; the signal fires in the
        # request's own task once the headers are written, after that wait.
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._headers_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[trace],
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers=JSON_HEADERS,
            skip_auto_headers=("User-Agent",),
        )

    async def _headers_sent(self, *_: object) -> None:
        self.stamps.stamp()

    def _body(self, payload: Payload) -> bytes:
        key = id(payload)
        body = self._bodies.get(key)
        if body is None:
            body = self._bodies[key] = orjson.dumps(payload.body)
        return body

    async def send(self, payload: Payload) -> Reply:
        assert self._session is not None, "RestDriver.send() before open()"
        body = self._body(payload)
        try:
            async with self._session.post(self._urls[payload.api], data=body) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Reply.failure(http_error_class(exc))
        self.bytes_sent += len(body)
        self.bytes_received += len(raw)
        return judge_http(payload, status, raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let aiohttp close its transports before the loop ends
