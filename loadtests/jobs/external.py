"""Third-party model servers a bench config declares (``[[servers]]``) and servelab starts:
MLServer, KServe, BentoML, Triton, a user's own app. Each gets free loopback ports (``{port}``,
``{grpc_port}``, ``{metrics_port}``), a fresh working directory (``{workdir}``, where its
``files`` are written), its own process group, readiness polled (an HTTP URL answering 200, or
a gRPC address accepting a channel) within its start timeout, its process tree's CPU as the
run's cost, and at the end SIGTERM to the group, then SIGKILL.

    [[servers]]
    name = "mlserver"
    argv = [".servers/mlserver/bin/mlserver", "start", "{workdir}"]
    ready_url = "http://127.0.0.1:{port}/v2/models/digits/ready"
    url = "http://127.0.0.1:{port}"              # what cells with server = "mlserver" load
    address = "127.0.0.1:{grpc_port}"            # ... over gRPC
    start_timeout = "90s"
    [servers.env]
    PYTHONUNBUFFERED = "1"
    [servers.files]                              # written into {workdir}, placeholders filled
    "settings.json" = '{"host": "127.0.0.1", "http_port": {port}, "grpc_port": {grpc_port}}'

``{root}`` is the config file's directory, for paths next to it; ``{digits_joblib}`` the
built-in digits model saved with joblib (``targets.learned.export_digits``), exported on first
use, for third-party servers to load the model servelab's own targets serve.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from loadtests.jobs.launch import LaunchedTarget
from targets.errors import TargetStartError

PORT_NAMES: Final = ("port", "grpc_port", "metrics_port")
POLL_S: Final = 0.1
STOP_GRACE_S: Final = 15.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One ``[[servers]]`` table, checked (``bench_config`` reads it)."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    ready_address: str | None = None
    url: str | None = None
    address: str | None = None
    start_timeout_s: float = 60.0
    root: str = "."


def free_port() -> int:
    """A port the OS just gave out on 127.0.0.1 (released for the server to bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with ``{name}`` placeholders replaced; other braces (JSON) are left alone."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def _ready(spec: ServerSpec, values: Mapping[str, str]) -> bool:
    if spec.ready_url is not None:
        try:
            with urllib.request.urlopen(fill(spec.ready_url, values), timeout=2) as answer:  # noqa: S310
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False
    if spec.ready_address is not None:
        host, _, port = fill(spec.ready_address, values).rpartition(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1):
            return True
        return False
    return True


def _texts(spec: ServerSpec) -> list[str]:
    return [*spec.argv, *spec.env.values(), *spec.files.values()]


def _digits_joblib() -> Path:
    from targets.learned import cache_dir, export_digits

    joblib_path, _ = export_digits(cache_dir() / "export")
    return joblib_path


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE_S)


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines()
    return lines[-1].strip()[:300] if lines else "(nothing logged)"


@contextlib.contextmanager
def start_server(spec: ServerSpec, cpus: tuple[int, ...] | None = None) -> Iterator[LaunchedTarget]:
    """Start ``spec``; yield it as a ``LaunchedTarget`` (``url``/``address`` filled) once ready;
    stop its process group on exit. ``TargetStartError`` (exit 2) when it exits or is not ready
    within its start timeout, with the last line it logged."""
    with tempfile.TemporaryDirectory(prefix=f"servelab-{spec.name}-") as workdir:
        values = {name: str(free_port()) for name in PORT_NAMES}
        values |= {"workdir": workdir, "root": spec.root}
        if any("{digits_joblib}" in text for text in _texts(spec)):
            values["digits_joblib"] = str(_digits_joblib())
        for name, content in spec.files.items():
            (Path(workdir) / name).write_text(fill(content, values))
        log = Path(workdir) / "server.log"
        env = {**os.environ, **{key: fill(value, values) for key, value in spec.env.items()}}
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, set(cpus)))
        with log.open("wb") as out:
            process = subprocess.Popen(
                [fill(arg, values) for arg in spec.argv],
                cwd=fill(spec.cwd, values) if spec.cwd else None, env=env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=pin,  # noqa: PLW1509 - only sets this child's CPU affinity
            )  # fmt: skip
        try:
            _await_ready(spec, values, process, log)
            info = {"url": fill(spec.url or "", values), "host": "", "port": ""}
            if spec.address:
                host, _, port = fill(spec.address, values).rpartition(":")
                info |= {"host": host, "port": port}
            yield LaunchedTarget(spec.name, process, info, log)
        finally:
            _stop_group(process)


def _await_ready(
    spec: ServerSpec, values: Mapping[str, str], process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + spec.start_timeout_s
    while not _ready(spec, values):
        code = process.poll()
        if code is not None:
            raise TargetStartError(spec.name, _last_line(log), code)
        if time.monotonic() > deadline:
            raise TargetStartError(
                spec.name, f"not ready within {spec.start_timeout_s:g} s: {_last_line(log)}"
            )
        time.sleep(POLL_S)
