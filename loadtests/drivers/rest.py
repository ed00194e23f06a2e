"""REST over HTTP with aiohttp: a keep-alive connection pool, one request in flight per
connection. (httpx.AsyncClient measured ~15x slower as a load generator; it is not used here.)"""

from __future__ import annotations

import asyncio
from ssl import SSLContext

import aiohttp

from loadtests.drivers.base import DriverBase, Reply, WireView
from loadtests.drivers.http_errors import http_error_class
from loadtests.engine.workload import Payload
from loadtests.errors import LoadOptionError
from loadtests.protocols.base import HttpContract
from loadtests.protocols.servelab import ServelabHttp


class RestDriver(DriverBase):
    """Sends each payload as its contract says (servelab's own by default: ``{base_url}/v1/predict``
    or ``/v2/predict``); ``ssl``: the context for https (``--cacert`` / ``--insecure``)."""

    transport = "rest"
    client = "aiohttp"  # recorded as the result's extra.client
    wire: WireView = "stamped"  # by aiohttp's request-headers-sent trace signal

    def __init__(
        self,
        base_url: str,
        *,
        connections: int = 64,
        timeout_s: float = 30.0,
        contract: HttpContract | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        if connections < 1:
            raise LoadOptionError("connections must be a positive int")
        self.base_url = base_url.rstrip("/")
        self.connections = connections
        self.timeout_s = timeout_s
        super().__init__()
        self._session: aiohttp.ClientSession | None = None
        self.contract = contract or ServelabHttp()
        self._judge = self.contract.judge
        self._ssl = ssl
        # payloads are pooled: encode each one once (method, URL, headers, body)
        self._requests: dict[int, tuple[str, str, dict[str, str], bytes]] = {}

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.connections, ttl_dns_cache=None, ssl=self._ssl if self._ssl else True
        )
        # aiohttp waits for a pooled connection inside ``post``; the signal fires in the
        # request's own task once the headers are written, after that wait.
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._headers_sent)
        self._session = aiohttp.ClientSession(
            connector=connector,
            trace_configs=[trace],
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            skip_auto_headers=("User-Agent",),
        )

    async def _headers_sent(self, *_: object) -> None:
        self.stamps.stamp()

    def _request(self, payload: Payload) -> tuple[str, str, dict[str, str], bytes]:
        key = id(payload)
        request = self._requests.get(key)
        if request is None:
            made = self.contract.request(payload)
            request = self._requests[key] = (
                made.method, self.base_url + made.path, dict(made.headers), made.body
            )  # fmt: skip
        return request

    async def send(self, payload: Payload) -> Reply:
        assert self._session is not None, "RestDriver.send() before open()"
        method, url, headers, body = self._request(payload)
        try:
            async with self._session.request(method, url, data=body, headers=headers) as response:
                raw = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return Reply.failure(http_error_class(exc))
        self.bytes_sent += len(body)
        self.bytes_received += len(raw)
        return self._judge(payload, status, raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            await asyncio.sleep(0)  # let aiohttp close its transports before the loop ends
