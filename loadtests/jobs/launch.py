"""Targets servelab starts itself: ``servelab serve ...`` subprocesses on free loopback ports,
readiness read from their ready file (polled, never guessed), stopped by PID afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from targets.errors import TargetStartError
from targets.files import read_ready_file

if TYPE_CHECKING:
    from loadtests.drivers.registry import Target

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class LaunchedTarget:
    kind: str
    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return str(self.info["url"])

    @property
    def address(self) -> str:
        return f"{self.info['host']}:{self.info['port']}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)


@contextmanager
def _signals_deferred() -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM while a child is being forked: a signal landing inside ``Popen``
    would leave a child nobody stops. Python-level handlers are not inherited across exec."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    arrived: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda number, _frame: arrived.append(number))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield arrived
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _last_words(log_path: Path) -> str:
    """The last line a target that exited logged: its own one-line account of why (servelab's
    ``servelab: `` prefix dropped, as the caller prints its own)."""
    lines = log_path.read_text(errors="replace").strip().splitlines()
    last = lines[-1].strip() if lines else "(nothing logged)"
    return last.removeprefix("servelab: ")


@contextmanager
def launch_target(
    kind: str,
    *,
    model_spec: str,
    extra_args: Sequence[str] = (),
    log_level: str = "warning",
    env: Mapping[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Iterator[LaunchedTarget]:
    """Start ``servelab serve KIND`` on 127.0.0.1, port 0; stop it (SIGTERM, then KILL) on exit.

    ``env`` adds variables (thread caps); ``cpus`` pins the server — and every worker it spawns,
    which inherit the affinity — to those CPUs."""
    with tempfile.TemporaryDirectory(prefix=f"servelab-{kind}-") as workdir:
        ready = Path(workdir) / "ready.json"
        log_path = Path(workdir) / "target.log"
        command = [
            sys.executable, "-m", "loadtests.cli", "serve", kind, "--host", "127.0.0.1",
            "--port", "0", "--ready-file", str(ready), "--model", model_spec,
            "--log-level", log_level, *extra_args,
        ]  # fmt: skip
        with log_path.open("wb") as log, _signals_deferred() as deferred:
            pin = None if cpus is None else (lambda: os.sched_setaffinity(0, set(cpus)))
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                preexec_fn=pin,  # noqa: PLW1509 - only sched_setaffinity, no locks taken
            )
        try:
            if deferred:  # Ctrl-C / SIGTERM arrived while starting: stop what was started
                raise KeyboardInterrupt
            deadline = time.monotonic() + READY_TIMEOUT_S
            info = read_ready_file(ready)
            while info is None:
                if process.poll() is not None:
                    raise TargetStartError(kind, _last_words(log_path), process.returncode)
                if time.monotonic() > deadline:
                    raise TargetStartError(kind, f"not ready in {READY_TIMEOUT_S:g}s")
                time.sleep(0.02)  # polling the ready file
                info = read_ready_file(ready)
            yield LaunchedTarget(kind, process, info, log_path)
        finally:
            _stop(process)


@contextmanager
def launch_for(
    spec: Target,
    *,
    url: str | None,
    address: str | None,
    model_spec: str,
    server_args: Sequence[str] = (),
) -> Iterator[LaunchedTarget | None]:
    """The server a run of target ``spec`` needs, started on loopback for the run — ``None``
    when the target runs in this process alone, or ``url``/``address`` names a running one.
    ``server_args``: more options for it (a function front's idle timeout and maximum)."""
    from loadtests.drivers.registry import HTTP_SERVERS

    given = url if spec.server in HTTP_SERVERS else address
    if spec.server is None or given:
        yield None
        return
    with launch_target(spec.server, model_spec=model_spec, extra_args=server_args) as launched:
        yield launched
