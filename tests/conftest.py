"""Shared fixtures: real targets started through ``loadtests.jobs.launch.launch_target`` (port 0,
readiness polled from the ready file), and the ``servelab`` command run as users run it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import pytest

from loadtests.jobs.launch import LaunchedTarget, launch_target
from targets.errors import TargetStartError
from targets.spec import DEFAULT_MODEL_SPEC

# What ``servelab serve`` logs unless told otherwise: tests read its per-request lines.
SERVE_LOG_LEVEL = "info"
CLI_TIMEOUT_S = 120.0


class RunningTarget:
    """A ``servelab serve ...`` process a test started, with its address from the ready file."""

    def __init__(self, launched: LaunchedTarget) -> None:
        self.launched = launched

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.launched.process

    @property
    def pid(self) -> int:
        return self.launched.pid

    @property
    def info(self) -> dict[str, Any]:
        """The ready file's content (url, host, port, pid, ...)."""
        return self.launched.info

    @property
    def log(self) -> Path:
        """Everything the target wrote (stdout and stderr); gone after the test."""
        return self.launched.log_path

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` of a REST target."""
        return self.launched.url

    @property
    def address(self) -> str:
        """``HOST:PORT`` (what a gRPC channel takes)."""
        return self.launched.address

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """End the process early, by its PID; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        return self.process.returncode


class SpawnTarget(Protocol):
    def __call__(
        self, kind: str, *args: str, env: Mapping[str, str] | None = None
    ) -> RunningTarget: ...


@pytest.fixture
def spawn_target() -> Iterator[SpawnTarget]:
    """Start ``servelab serve KIND ARGS...`` (loopback, port 0, the default model, log level
    info; ARGS may override any of them); every target is stopped at teardown."""
    with ExitStack() as started:

        def spawn(kind: str, *args: str, env: Mapping[str, str] | None = None) -> RunningTarget:
            launching = launch_target(
                kind,
                model_spec=DEFAULT_MODEL_SPEC,
                extra_args=args,
                log_level=SERVE_LOG_LEVEL,
                env=env,
            )
            try:
                return RunningTarget(started.enter_context(launching))
            except TargetStartError as exc:
                pytest.fail(f"servelab serve {kind} {' '.join(args)}: {exc}")

        yield spawn


class ServelabCli:
    """The ``servelab`` console script, as users run it. ``env``, like ``subprocess``'s, is the
    whole environment (``None``: this process's)."""

    def __init__(self) -> None:
        script = Path(sys.executable).with_name("servelab")
        # the installed script; ``python -m loadtests.cli`` where the package is not installed
        self.command = [str(script)] if script.exists() else [sys.executable, "-m", "loadtests.cli"]

    def argv(self, *args: str) -> list[str]:
        """The command line, for a test that needs the process itself (``Popen``)."""
        return [*self.command, *args]

    def __call__(
        self,
        *args: str,
        cwd: Path | str | None = None,
        timeout: float = CLI_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``servelab ARGS...`` to its end; its exit code, stdout and stderr (text)."""
        return subprocess.run(
            self.argv(*args),
            cwd=cwd,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def servelab_cli() -> ServelabCli:
    """Runs the ``servelab`` command in a subprocess: ``servelab_cli("run", ..., cwd=tmp_path)``."""
    return ServelabCli()
