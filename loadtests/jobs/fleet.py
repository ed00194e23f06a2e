"""The generator processes of one ``servelab run --processes N``, from the parent's side.

Each child is a fresh interpreter, ``python -m loadtests.jobs.part_run FD`` (nothing of the
parent's loop, threads or grpc channels is inherited, and no main module is re-imported, as
multiprocessing's spawn would), in a process group of its own, talking on one end of a
socketpair. The parent watches every socket, and every child's exit (a pidfd), on its event
loop: no thread, no polling loop::

    open ─► every child "ready" (bounded: READY_TIMEOUT_S) ─► one "start" instant for all
        ─► ticks each second; a started child silent for HANG_S is hung and killed
        ─► every child's result, or its exit, or the run's deadline (warm-up + duration + grace
           + SLACK_S, when the run has a duration): a child still running then is killed
    interrupt(): a child that has not started is told "stop"; a started one gets SIGINT (its
        harness stops and drains; its partial result comes back within the grace + SLACK_S)
    close(): "stop" or SIGTERM to any child still running, then SIGKILL, each after a
        bounded wait — always by the child's own PID

A child that exits without a result (it crashed, or was killed) is reported as such: what the
others measured is kept, and the run is INVALID (``jobs.part_merge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from loadtests.jobs.part_merge import ProcessReport
from loadtests.jobs.part_run import PartResult
from loadtests.jobs.settings import RunSettings
from targets.errors import ServelabError

READY_TIMEOUT_S: Final = 120.0  # start-up, imports, model load, connect and probe, busy box
HANG_S: Final = 60.0  # a started child silent this long is hung (its loop is blocked)
SLACK_S: Final = 30.0  # past the planned end (+ grace) before a child still running is killed
CLOSE_WAIT_S: Final = 5.0  # per step of close(): stop/SIGTERM, then SIGKILL
CHECK_S: Final = 1.0  # how often hangs and the deadline are checked while waiting


@dataclass(slots=True)
class _Child:
    index: int
    cpu: int | None
    process: subprocess.Popen[bytes]
    conn: Connection
    exit_fd: int | None  # a pidfd: readable once the child has exited
    heard_s: float = field(default_factory=time.monotonic)
    ready: bool = False
    started: bool = False
    told_stop: bool = False
    result: PartResult | None = None
    error: ServelabError | None = None
    exit_code: int | None = None
    killed_for: str | None = None  # "hung", "overran", "unready": why the parent killed it

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None or self.exit_code is not None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def say(self, *message: Any) -> None:
        with contextlib.suppress(OSError, ValueError):  # a socket already closed: it is gone
            self.conn.send(message)

    def signal(self, sig: int) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    def kill(self, reason: str) -> None:
        if self.alive:
            self.killed_for = self.killed_for or reason
            self.signal(signal.SIGKILL)

    def reap(self) -> None:
        """Its exit code, once it has exited."""
        if self.exit_code is None and self.process.poll() is not None:
            self.exit_code = self.process.returncode

    def report(self) -> ProcessReport:
        fate = "ok" if self.result is not None else "error" if self.error else "died"
        return ProcessReport(
            index=self.index, cpu=self.cpu, pid=self.process.pid, fate=self.killed_for or fate,
            exit_code=self.exit_code, result=self.result,
        )  # fmt: skip


def _spawn(index: int, settings: RunSettings, cpu: int | None) -> _Child:
    mine, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "loadtests.jobs.part_run", str(theirs.fileno())],
            stdin=subprocess.DEVNULL, pass_fds=(theirs.fileno(),), process_group=0,
        )  # fmt: skip
    finally:
        theirs.close()  # the child holds its end: its exit reads as EOF here
    conn = Connection(mine.detach())
    try:
        exit_fd: int | None = os.pidfd_open(process.pid)
    except OSError:  # a kernel before 5.3: exits are noticed at each check instead
        exit_fd = None
    child = _Child(index, cpu, process, conn, exit_fd)
    child.say("path", list(sys.path))
    child.say("run", settings, cpu)
    return child


class Fleet:
    """The children of one run: ``async with Fleet(parts, cpus, grace_s=...) as fleet``."""

    def __init__(
        self, parts: Sequence[RunSettings], cpus: Sequence[int | None], *, grace_s: float
    ) -> None:
        self._parts = list(zip(parts, cpus, strict=True))
        self._children: list[_Child] = []
        self._grace_s = grace_s
        self._changed = asyncio.Event()
        self._deadline_s: float | None = None
        self.interrupted = False

    async def __aenter__(self) -> Fleet:
        loop = asyncio.get_running_loop()
        try:
            for index, (settings, cpu) in enumerate(self._parts):
                child = _spawn(index, settings, cpu)
                self._children.append(child)
                loop.add_reader(child.conn.fileno(), self._readable, child)
                # the loop made it non-blocking; a message is read whole, as it is written
                os.set_blocking(child.conn.fileno(), True)
                if child.exit_fd is not None:
                    loop.add_reader(child.exit_fd, self._exited, child)
        except BaseException:
            self.close()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        self.close()

    @property
    def errors(self) -> list[ServelabError]:
        return [child.error for child in self._children if child.error is not None]

    def reports(self) -> list[ProcessReport]:
        return [child.report() for child in self._children]

    async def ready(self) -> bool:
        """Wait until every child is ready or finished; ``False`` if interrupted meanwhile.
        A child not ready in ``READY_TIMEOUT_S`` is killed."""
        deadline_s = time.monotonic() + READY_TIMEOUT_S
        done = await self._until(lambda c: c.ready or c.finished, deadline_s, interruptible=True)
        if self.interrupted:  # those still starting were told to stop: they report, empty
            return False
        for child in self._children:
            if not done and not (child.ready or child.finished):
                child.kill("unready")
        return True

    def start(self, start_ns: int, *, warmup_s: float, duration_s: float | None) -> None:
        """Every ready child starts its load at ``start_ns`` (``perf_counter_ns``). A run
        without a duration (bounded by count) is bounded by its ticks alone; ticks begin after
        the warm-up."""
        lead_s = max(start_ns - time.perf_counter_ns(), 0) / 1e9
        first_tick_s = time.monotonic() + lead_s + warmup_s
        if duration_s is not None:
            self._deadline_s = first_tick_s + duration_s + self._grace_s + SLACK_S
        for child in self._children:
            if child.ready and not child.finished:
                child.say("start", start_ns)
                child.started, child.heard_s = True, first_tick_s

    async def finished(self) -> None:
        """Wait for every child's result or exit; kill any past the deadline."""
        if await self._until(lambda c: c.finished, self._deadline_s):
            return
        for child in self._children:
            if not child.finished:
                child.kill("overran")
        await self._until(lambda c: c.finished, time.monotonic() + CLOSE_WAIT_S)  # their exits

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: stop every child, keeping what each measured."""
        self.interrupted = True
        self._changed.set()
        bound_s = time.monotonic() + self._grace_s + SLACK_S
        self._deadline_s = bound_s if self._deadline_s is None else min(self._deadline_s, bound_s)
        for child in self._children:
            if child.finished:
                continue
            if child.started:
                child.signal(signal.SIGINT)
            elif not child.told_stop:
                child.say("stop")
                child.told_stop = True

    def close(self) -> None:
        """Every child gone, by its own PID; sockets and watchers released."""
        for child in self._children:
            if not child.alive or child.finished:  # one that reported is exiting by itself
                continue
            if child.started:
                child.signal(signal.SIGTERM)
            elif not child.told_stop:
                child.say("stop")
        for child in self._children:
            try:
                child.process.wait(CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                child.signal(signal.SIGKILL)
                child.process.wait(CLOSE_WAIT_S)
            child.reap()
            self._forget(child)
            child.conn.close()
            if child.exit_fd is not None:
                os.close(child.exit_fd)
                child.exit_fd = None

    # -- the loop's watchers -------------------------------------------------------------------

    async def _until(
        self,
        done: Callable[[_Child], bool],
        deadline_s: float | None,
        *,
        interruptible: bool = False,
    ) -> bool:
        """Wait until ``done`` holds for every child (``True``), or the deadline or (when
        ``interruptible``) an interrupt (``False``); started children silent for HANG_S are
        killed as hung."""
        while True:
            for child in self._children:
                child.reap()
            if all(done(child) for child in self._children):
                return True
            now_s = time.monotonic()
            if deadline_s is not None and now_s >= deadline_s:
                return False
            if interruptible and self.interrupted:
                return False
            for child in self._children:
                if child.started and not child.finished and now_s - child.heard_s > HANG_S:
                    child.kill("hung")
            self._changed.clear()
            wait_s = CHECK_S if deadline_s is None else min(CHECK_S, deadline_s - now_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(wait_s, 0.0))

    def _readable(self, child: _Child) -> None:
        try:
            while child.conn.poll():
                self._take(child, child.conn.recv())
        except (EOFError, OSError):  # the child closed its end: nothing more will come
            self._forget_socket(child)
        self._changed.set()

    def _take(self, child: _Child, message: tuple[Any, ...]) -> None:
        child.heard_s = time.monotonic()
        kind = message[0]
        if kind == "ready":
            child.ready = True
        elif kind == "result":
            child.result = message[1]
        elif kind == "error":
            child.error = message[1]

    def _exited(self, child: _Child) -> None:
        if child.exit_fd is not None:
            asyncio.get_running_loop().remove_reader(child.exit_fd)
        if not child.conn.closed:
            self._readable(child)  # its last words (the result) may still be in the socket
        child.reap()
        self._changed.set()

    def _forget_socket(self, child: _Child) -> None:
        with contextlib.suppress(Exception):  # a loop already closed, a socket already gone
            asyncio.get_running_loop().remove_reader(child.conn.fileno())

    def _forget(self, child: _Child) -> None:
        self._forget_socket(child)
        if child.exit_fd is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(child.exit_fd)
