"""Shared fixtures: real targets in subprocesses on free loopback ports, readiness polled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from targets.files import read_ready_file

READY_TIMEOUT_S = 30.0


class RunningTarget:
    """A ``servelab serve ...`` process we started, with the address from its ready file."""

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log: Path) -> None:
        self.process = process
        self.info = info
        self.log = log

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of a REST target."""
        return str(self.info["url"])

    @property
    def address(self) -> str:
        """``HOST:PORT`` (what a gRPC channel takes)."""
        return f"{self.info['host']}:{self.info['port']}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """End the process we started, by its PID; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        return self.process.returncode


def wait_for_ready_file(
    path: Path, process: subprocess.Popen[bytes], log: Path, timeout_s: float = READY_TIMEOUT_S
) -> dict[str, Any]:
    """Poll for the ready file; fail fast (with the log) if the process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = read_ready_file(path)
        if info is not None:
            return info
        if process.poll() is not None:
            pytest.fail(f"target exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"target not ready in {timeout_s}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def spawn_target(tmp_path: Path) -> Iterator[Callable[..., RunningTarget]]:
    """Start ``servelab serve KIND --port 0 --ready-file F ARGS...``; stopped at teardown."""
    started: list[RunningTarget] = []

    def spawn(kind: str, *args: str, env: dict[str, str] | None = None) -> RunningTarget:
        index = len(started)
        ready = tmp_path / f"ready-{kind}-{index}.json"
        log = tmp_path / f"target-{kind}-{index}.log"
        command = [sys.executable, "-m", "loadtests.cli.app", "serve", kind, "--port", "0"]
        command += ["--ready-file", str(ready), *args]
        with log.open("wb") as log_handle:
            process = subprocess.Popen(
                command,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        info = wait_for_ready_file(ready, process, log)
        target = RunningTarget(process, info, log)
        started.append(target)
        return target

    yield spawn
    for target in started:
        target.stop()
