"""The fault proxy: a loopback TCP proxy between the edge runtime and its remote that follows a
``LinkSchedule`` (``targets.edge.link``). Stdlib only (asyncio).

Every decision reads the schedule at the proxy's clock (``clock``, seconds; ``time.monotonic``
unless a test gives its own), relative to ``origin_s``:

- a connection accepted while the link is down is reset at once (*drop*) or held open with
  nothing forwarded until the outage ends, then reset (*blackhole*);
- while up, the first chunk the client sends after the last answer (or on a new connection)
  starts request number ``n`` on the proxy: reset when ``schedule.resets(n)``, else forwarded
  after ``delay_s``; the rest of that request (``http.client`` may send headers and body apart)
  follows without a second draw or delay. Any chunk, either way, that meets an outage — the
  link went down under a kept-alive connection — gets the outage's treatment.

A reset is a real TCP RST (``SO_LINGER`` 0), what a dropped link looks like to ``http.client``.
``python -m targets.edge.faults --upstream HOST:PORT`` runs one in a process of its own (its
CPU is not the edge's): it prints ``{"port", "origin_s", ...}`` as one JSON line once it
listens, serves until its stdin closes, then prints its counts as one more line and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

from targets.edge.link import LinkSchedule, LinkState, parse_link_profile
from targets.errors import InputError

CHUNK_BYTES: Final = 64 * 1024
_LINGER_RESET: Final = struct.pack("ii", 1, 0)  # close with RST, not FIN


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s connection with a TCP reset."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


class _Exchange:
    """One connection's turn: ``asking`` from a request's first chunk until its answer."""

    __slots__ = ("asking",)

    def __init__(self) -> None:
        self.asking = False


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``upstream`` as ``schedule`` allows (module docstring)."""

    def __init__(
        self,
        upstream: tuple[str, int],
        schedule: LinkSchedule,
        *,
        clock: Callable[[], float] = time.monotonic,
        origin_s: float | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream
        self.schedule = schedule
        self.host = host
        self._clock = clock
        self.origin_s = clock() if origin_s is None else origin_s
        self.counts: Counter[str] = Counter()
        self.outages_hit: set[int] = set()  # outages that cut or held at least one connection
        self._requests = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.port = 0

    def now_s(self) -> float:
        """Seconds since the origin, on the proxy's clock."""
        return self._clock() - self.origin_s

    async def start(self) -> int:
        """Listen on ``host`` port 0; returns the port."""
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        """Stop listening, reset every connection still open and let its handler end."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            _reset(writer)
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def stats(self) -> dict[str, Any]:
        return {
            "connections": self.counts["connections"],
            "forwarded": self.counts["forwarded"],
            "resets": self.counts["resets"],
            "dropped": self.counts["dropped"],
            "blackholed": self.counts["blackholed"],
            "upstream_errors": self.counts["upstream_errors"],
            "outages_hit": sorted(self.outages_hit),
        }

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        self._writers.add(writer)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
            handler.add_done_callback(self._handlers.discard)
        try:
            state = self.schedule.state_at(self.now_s())
            if not state.up:
                await self._outage(state, reader, writer)
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                self.counts["upstream_errors"] += 1
                _reset(writer)
                return
            self._writers.add(up_writer)
            try:
                await self._pump_both(reader, writer, up_reader, up_writer)
            finally:
                self._writers.discard(up_writer)
                up_writer.transport.abort()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump_both(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        exchange = _Exchange()
        requests = asyncio.create_task(self._pump(reader, up_writer, exchange, asks=True))
        answers = asyncio.create_task(self._pump(up_reader, writer, exchange, asks=False))
        try:
            done, _ = await asyncio.wait({requests, answers}, return_when="FIRST_COMPLETED")
        finally:
            for task in (requests, answers):
                task.cancel()
            await asyncio.gather(requests, answers, return_exceptions=True)
        cut = next((task.result() for task in done if not task.cancelled()), None)
        if isinstance(cut, LinkState):  # an outage met mid-connection
            up_writer.transport.abort()
            await self._outage(cut, reader, writer)
        elif cut is not None:  # a reset
            _reset(writer)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        exchange: _Exchange,
        *,
        asks: bool,
    ) -> LinkState | bool | None:
        """Copy ``source`` to ``sink`` until end of stream (``None``), a reset (``True``) or an
        outage (its ``LinkState``). ``asks``: the client's side, where requests start."""
        while True:
            try:
                chunk = await source.read(CHUNK_BYTES)
            except OSError:
                return None
            if not chunk:
                return None
            state = self.schedule.state_at(self.now_s())
            if state.up and asks and not exchange.asking:
                exchange.asking = True  # a new request: drawn for a reset, delayed
                request, self._requests = self._requests, self._requests + 1
                if self.schedule.resets(request):
                    self.counts["resets"] += 1
                    return True
                if self.schedule.profile.delay_s:
                    await asyncio.sleep(self.schedule.profile.delay_s)
                    state = self.schedule.state_at(self.now_s())
                if state.up:
                    self.counts["forwarded"] += 1
            if not state.up:
                return state
            if not asks:
                exchange.asking = False  # answered: the client's next chunk is a new request
            try:
                sink.write(chunk)
                await sink.drain()
            except OSError:
                return None

    async def _outage(
        self, state: LinkState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Drop: reset now. Blackhole: read and discard until the outage ends, then reset."""
        if state.outage is not None:
            self.outages_hit.add(state.outage)
        if state.mode == "blackhole":
            self.counts["blackholed"] += 1
            with contextlib.suppress(TimeoutError, OSError):
                async with asyncio.timeout(max(state.until_s - self.now_s(), 0.0)):
                    while await reader.read(CHUNK_BYTES):
                        pass
        else:
            self.counts["dropped"] += 1
        _reset(writer)


# -- a proxy process ----------------------------------------------------------------------------


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--upstream must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _stdin_closed(loop: asyncio.AbstractEventLoop, closed: asyncio.Event) -> None:
    """In a thread: block until stdin ends, then tell the loop."""
    with contextlib.suppress(OSError, ValueError):
        while sys.stdin.buffer.read(4096):
            pass
    loop.call_soon_threadsafe(closed.set)


async def serve_until_stdin_closes(upstream: tuple[str, int], schedule: LinkSchedule) -> int:
    proxy = FaultProxy(upstream, schedule)
    port = await proxy.start()
    profile = schedule.profile
    hello = {"port": port, "origin_s": proxy.origin_s, "profile": profile.spec}
    print(json.dumps(hello | {"seed": schedule.seed}), flush=True)
    closed = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=_stdin_closed, args=(loop, closed), daemon=True).start()
    try:
        await closed.wait()
    finally:
        await proxy.close()
        print(json.dumps({"stats": proxy.stats()}), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m targets.edge.faults",
        description="a loopback TCP proxy that breaks the link on a seeded schedule; runs "
        "until stdin closes",
    )
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    parser.add_argument("--profile", default="default", metavar="SPEC")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        schedule = LinkSchedule(parse_link_profile(args.profile), args.seed)
        upstream = _address(args.upstream)
    except InputError as exc:
        print(f"faults: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(serve_until_stdin_closes(upstream, schedule))


if __name__ == "__main__":
    sys.exit(main())
