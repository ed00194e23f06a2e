"""Where stream events come from and where results go. Stdlib only.

A source is any async iterable of events: ``bytes``/``str`` are JSON lines, anything else is an
already-decoded body. ``QueueSource`` serves the Python API (tests, the load driver);
``LineSource`` reads complete lines from a file descriptor — a file to EOF, a file that is still
being appended to (``follow=True``), or stdin. A sink is an async callable taking one output
object; ``JsonLinesSink`` writes them as JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

END_OF_STREAM = None
"""Put this on a ``QueueSource``'s queue to end the stream."""


class QueueSource:
    """Events taken from an ``asyncio.Queue`` until ``END_OF_STREAM`` (``None``) arrives."""

    def __init__(self, queue: asyncio.Queue[object]) -> None:
        self.queue = queue

    def __aiter__(self) -> AsyncIterator[object]:
        return self._events()

    async def _events(self) -> AsyncIterator[object]:
        while (item := await self.queue.get()) is not END_OF_STREAM:
            yield item


async def read_in_daemon_thread(fd: int, size: int) -> bytes:
    """``os.read`` in a daemon thread, so a blocked read (a terminal, a quiet pipe) neither
    stalls the event loop nor keeps the process alive after the loop has ended."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()

    def deliver(chunk: bytes | None, error: BaseException | None) -> None:
        if future.done():  # the reader was cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(chunk or b"")

    def work() -> None:
        chunk: bytes | None = None
        error: BaseException | None = None
        try:
            chunk = os.read(fd, size)
        except OSError as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we were blocked
            loop.call_soon_threadsafe(deliver, chunk, error)

    threading.Thread(target=work, name="servelab-stream-reader", daemon=True).start()
    return await future


class LineSource:
    """Complete, non-blank lines (without their newline) read in chunks from ``fd``.

    At end of file a plain source stops; with ``follow=True`` it polls for growth every
    ``poll_s`` (an ``asyncio.sleep``, so the loop keeps serving) and stops once ``idle_exit_s``
    passes without a new byte. A partial line is held until its newline arrives; a tail without
    one is the last event when the source stops. ``in_thread=True`` reads in a daemon thread
    (stdin and pipes, which block). ``bytes_read``/``lines`` show progress to tests and logs.
    """

    def __init__(
        self,
        fd: int,
        *,
        follow: bool = False,
        idle_exit_s: float = 2.0,
        poll_s: float = 0.01,
        in_thread: bool = False,
        chunk_bytes: int = 1 << 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_exit_s <= 0 or poll_s <= 0:
            raise ValueError("idle_exit_s and poll_s must be positive numbers of seconds")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be a positive int, got {chunk_bytes}")
        self.fd = fd
        self.follow = follow
        self.idle_exit_s = idle_exit_s
        self.poll_s = poll_s
        self.in_thread = in_thread
        self.chunk_bytes = chunk_bytes
        self.clock = clock
        self.bytes_read = 0
        self.lines = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _read(self) -> bytes:
        if self.in_thread:
            return await read_in_daemon_thread(self.fd, self.chunk_bytes)
        return os.read(self.fd, self.chunk_bytes)  # a regular file: a page-cache copy, no wait

    async def _lines(self) -> AsyncIterator[bytes]:
        buffer = bytearray()
        idle_since = self.clock()
        while True:
            chunk = await self._read()
            if not chunk:
                if not self.follow or self.clock() - idle_since >= self.idle_exit_s:
                    break
                await asyncio.sleep(self.poll_s)
                continue
            idle_since = self.clock()
            self.bytes_read += len(chunk)
            # Only the new chunk can hold a newline the buffer did not already have.
            search_from = len(buffer)
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", search_from)) >= 0:
                line = bytes(buffer[start:end])
                start = search_from = end + 1
                if line.strip():
                    self.lines += 1
                    yield line
            del buffer[:start]
        if buffer.strip():
            self.lines += 1
            yield bytes(buffer)


class JsonLinesSink:
    """Writes each output object as one compact JSON line to a binary stream.

    ``flush_each_line`` makes every line visible at once (for a reader tailing the output while
    the input is followed); otherwise the stream's buffer decides.
    """

    def __init__(self, stream: BinaryIO, *, flush_each_line: bool = False) -> None:
        self.stream = stream
        self.flush_each_line = flush_each_line
        self.lines = 0

    async def __call__(self, body: dict[str, Any]) -> None:
        self.stream.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")
        self.lines += 1
        if self.flush_each_line:
            self.stream.flush()
