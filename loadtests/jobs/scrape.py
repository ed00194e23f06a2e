"""Scraping the target's Prometheus endpoint during ``servelab run`` (README "Server-side view").

Where: ``--metrics-url``, else found (``metrics_url_for``). When: at the start of the measured
window, once a second during it, and at its end. How: an aiohttp GET with a short timeout in a
background task on the run's loop, never on a request's path; the texts are kept and parsed
only after the load (``loadtests.results.server_metrics``). A failed scrape is recorded as
missing, never a failure of the run; a 404 on the first one means no metrics at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from loadtests.errors import LoadOptionError
from loadtests.jobs.safety import check_target_allowed
from loadtests.results.server_metrics import Scrape, window_block

if TYPE_CHECKING:
    import aiohttp

    from loadtests.jobs.launch import LaunchedTarget
    from loadtests.jobs.settings import RunSettings

INTERVAL_S: Final = 1.0
TIMEOUT_S: Final = 0.8  # a slow scrape is missing, so it never overlaps the next one
END_TIMEOUT_S: Final = 3.0  # the window's two ends carry its figures: they get longer
# Protocols whose servers serve /metrics on the port they answer on (KServe, BentoML,
# servelab's own REST target). MLServer serves it on a port of its own: --metrics-url.
AUTO_PROTOCOLS: Final = frozenset({"servelab", "oip", "kserve-v1", "bentoml"})
START_BEFORE_LOAD: Final = "before the load (no warm-up: nothing in flight)"
START_AT_WINDOW: Final = "at the end of the warm-up (requests in flight then straddle it)"


def check_metrics_url(url: str, *, allow_remote: bool) -> None:
    """``LoadOptionError`` unless ``url`` is an http(s) URL with a host, on loopback unless
    ``allow_remote``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadOptionError(
            f"--metrics-url {url!r}: give an http:// or https:// URL with a host, e.g. "
            "http://127.0.0.1:8082/metrics"
        )
    check_target_allowed(url, allow_remote=allow_remote, option="--metrics-url")


def metrics_url_for(settings: RunSettings, server: LaunchedTarget | None) -> str | None:
    """The Prometheus URL found for a run without ``--metrics-url``: ``/metrics`` of a REST
    target servelab started, or of a ``--url`` spoken to in a protocol whose servers serve it
    there. servelab's gRPC targets expose no Prometheus endpoint; in-process targets none."""
    spec = settings.spec
    if spec.server != "rest" or spec.in_process:
        return None
    if settings.url:
        if settings.protocol not in AUTO_PROTOCOLS:
            return None
        return settings.url.rstrip("/") + "/metrics"
    return server.url.rstrip("/") + "/metrics" if server is not None else None


def server_scrape(
    settings: RunSettings, server: LaunchedTarget | None, metrics_url: str | None
) -> ServerScrape:
    """The scrapes of a run: of ``metrics_url`` (checked), else of the URL found, else none."""
    if metrics_url:
        check_metrics_url(metrics_url, allow_remote=settings.allow_remote)
    url = metrics_url or metrics_url_for(settings, server)
    return ServerScrape(
        url,
        given=bool(metrics_url),
        warm_up=settings.plan.warmup_s > 0,
        ssl_context=settings.ssl_context() if (url or "").startswith("https://") else None,
    )


class ServerScrape:
    """The scrapes of one run. Without a URL every method does nothing, so a run has one path.

    ``open`` before the load (the first scrape there when there is no warm-up), ``mark_start``
    at the window's start (from the harness's measure-start callback), ``finish`` after the load,
    ``close`` always; ``extra`` is the result's ``server_metrics`` block, if any."""

    def __init__(
        self,
        url: str | None,
        *,
        given: bool,
        warm_up: bool,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url, self.given, self.warm_up = url, given, warm_up
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._scrapes: list[Scrape] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._origin_s = 0.0
        self._absent = False  # the endpoint answered 404: no metrics, no more scrapes

    async def open(self) -> None:
        if self.url is None:
            return
        import aiohttp

        self._session = aiohttp.ClientSession()
        if not self.warm_up:
            self._origin_s = time.perf_counter()
            await self._take(END_TIMEOUT_S)

    def mark_start(self) -> None:
        if self._session is None or self._absent:
            return
        if self.warm_up:
            self._origin_s = time.perf_counter()
            self._tasks.append(asyncio.ensure_future(self._take(END_TIMEOUT_S)))
        self._tasks.append(asyncio.ensure_future(self._every_second()))

    async def finish(self) -> None:
        if self._session is None or self._absent or not self._tasks:
            return
        ticker = self._tasks.pop()
        ticker.cancel()
        await asyncio.gather(ticker, *self._tasks, return_exceptions=True)
        await self._take(END_TIMEOUT_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def extra(self) -> dict[str, Any]:
        """``{"server_metrics": block}``; empty when nothing was scraped (no URL, a 404)."""
        if self.url is None or self._absent:
            return {}
        block = window_block(
            self._scrapes,
            source=self.url,
            found="given" if self.given else "auto",
            start=START_AT_WINDOW if self.warm_up else START_BEFORE_LOAD,
        )
        if block is None and self.given:
            _say(f"no scrape of --metrics-url {self.url} gave known metrics; none recorded")
        return {} if block is None else {"server_metrics": block}

    async def _every_second(self) -> None:
        ticks = 0
        while (
            not self._absent
        ):  # on an absolute schedule: a slow scrape does not shift the next ones
            ticks += 1
            await asyncio.sleep(max(self._origin_s + ticks * INTERVAL_S - time.perf_counter(), 0))
            await self._take(TIMEOUT_S)

    async def _take(self, timeout_s: float) -> None:
        import aiohttp

        assert self._session is not None  # only called once opened
        sent_s = time.perf_counter()
        text: str | None = None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, UnicodeDecodeError):
            async with self._session.get(
                self.url or "", timeout=aiohttp.ClientTimeout(total=timeout_s), ssl=self._ssl
            ) as answer:
                if answer.status == 404 and not self._scrapes:
                    self._absent = True
                    if self.given:
                        _say(f"--metrics-url {self.url} answered 404: no server metrics recorded")
                    return
                if answer.status == 200:
                    text = await answer.text()
        took_s = time.perf_counter() - sent_s
        self._scrapes.append(Scrape(max(sent_s - self._origin_s, 0.0), text, took_s))


def _say(line: str) -> None:
    print(f"servelab: {line}", file=sys.stderr, flush=True)
