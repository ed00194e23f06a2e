"""``servelab serve rest``: the FastAPI app on uvicorn, one or several workers.

The socket is bound here (not by uvicorn) so ``--port 0`` yields a known port, a busy port is a
one-line error, and several workers share one listening socket. The ready file is written only
once the server answers: after ``Server.started`` with one worker, after ``/readyz`` answers 200
with several.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from targets.admission import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE, AdmissionGate
from targets.errors import AddressUnavailable, InputError
from targets.files import write_ready_file
from targets.logs import JsonLogger
from targets.rest.app import create_app
from targets.rest.metrics import MULTIPROC_ENV, RestMetrics
from targets.schema import MIN_BODY_BYTES, Limits
from targets.service import PredictionService
from targets.spec import load_model

SETTINGS_ENV = "SERVELAB_REST_SETTINGS"
GRACEFUL_SHUTDOWN_S = 30
WORKERS_READY_TIMEOUT_S = 60.0
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True, slots=True)
class RestSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    model_spec: str = "reference"
    ready_file: str | None = None
    log_level: str = "info"
    enable_v2: bool = True
    max_instances: int = Limits().max_instances
    max_body_bytes: int = Limits().max_body_bytes
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT  # per worker process
    max_queue: int = DEFAULT_MAX_QUEUE

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RestSettings:
        return cls(
            host=args.host,
            port=args.port,
            workers=args.workers,
            model_spec=args.model,
            ready_file=args.ready_file,
            log_level=args.log_level,
            enable_v2=not args.disable_v2,
            max_instances=args.max_instances,
            max_body_bytes=args.max_body_bytes,
            max_in_flight=args.max_in_flight,
            max_queue=args.max_queue,
        )


def build_app(settings: RestSettings) -> FastAPI:
    """Load the model and build the app with metrics, access logs and admission control."""
    service = PredictionService(
        load_model(settings.model_spec),
        transport="rest",
        limits=Limits(settings.max_instances, settings.max_body_bytes),
        enable_v2=settings.enable_v2,
    )
    logger = JsonLogger(sys.stderr, settings.log_level, encode=encode_log_record)
    # One gate per worker: each process has its own loop and memory to protect.
    admission = AdmissionGate(settings.max_in_flight, settings.max_queue)
    return create_app(service, metrics=RestMetrics(), logger=logger, admission=admission)


def encode_log_record(record: dict[str, Any]) -> str:
    return orjson.dumps(record, default=str).decode()


def app_from_env() -> FastAPI:
    """uvicorn worker entry point (``factory=True``): settings come from the launcher's env."""
    return build_app(RestSettings(**json.loads(os.environ[SETTINGS_ENV])))


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen; ``AddressUnavailable`` naming the address when it is taken or invalid."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise AddressUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def ready_info(host: str, port: int, transport: str = "rest") -> dict[str, Any]:
    """What a server announces in its ready file once it listens."""
    shown = f"[{host}]" if ":" in host else host
    return {
        "transport": transport,
        "host": host,
        "port": port,
        "url": f"http://{shown}:{port}",
        "pid": os.getpid(),
    }


class DrainingServer(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its graceful shutdown, so the process would die of the
    signal; a server that drained cleanly should exit 0 instead (the REST target, the function
    front)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: FastAPI | str, settings: RestSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        factory=isinstance(app, str),
        workers=settings.workers,
        log_level="warning",
        access_log=False,  # our JSON access log replaces uvicorn's
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


async def serve_announcing(
    server: uvicorn.Server, sock: socket.socket, ready_file: str | None, transport: str = "rest"
) -> None:
    """Serve on ``sock``; once uvicorn has started, write the ready file (if any)."""
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.005)  # polling uvicorn's own started flag
    if server.started and ready_file:
        host, port = sock.getsockname()[:2]
        write_ready_file(ready_file, ready_info(host, port, transport))
    await serving


def _poll_ready_then_announce(host: str, port: int, ready_file: str, stop: threading.Event) -> None:
    wildcard = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}  # noqa: S104 - probing only
    probe_host = wildcard.get(host, host)
    deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S
    while not stop.is_set() and time.monotonic() < deadline:
        connection = http.client.HTTPConnection(probe_host, port, timeout=1.0)
        try:
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                write_ready_file(ready_file, ready_info(host, port))
                return
        except OSError:
            pass
        finally:
            connection.close()
        stop.wait(0.05)


def run(settings: RestSettings) -> int:
    """Serve until SIGINT/SIGTERM (in-flight requests finish first); returns an exit code."""
    if settings.workers == 1:
        app = build_app(settings)  # a bad SPEC fails here, before anything listens
        sock = bind_socket(settings.host, settings.port)
        server = DrainingServer(_uvicorn_config(app, settings))
        factory = server.config.get_loop_factory()
        with contextlib.closing(sock), asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve_announcing(server, sock, settings.ready_file))
        return 0
    load_model(settings.model_spec)  # validate the SPEC in the launcher: one line, exit 2
    metrics_dir = tempfile.mkdtemp(prefix="servelab-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    stop = threading.Event()
    announcer = None
    if settings.ready_file:
        announcer = threading.Thread(
            target=_poll_ready_then_announce,
            args=(settings.host, port, settings.ready_file, stop),
            daemon=True,
        )
        announcer.start()
    config = _uvicorn_config("targets.rest.server:app_from_env", settings)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        stop.set()
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def main(args: argparse.Namespace) -> int:
    """``servelab serve rest``: the options ``loadtests.cli.serve`` defines for it."""
    if args.max_body_bytes < MIN_BODY_BYTES:
        raise InputError(f"--max-body-bytes must be at least {MIN_BODY_BYTES}")
    return run(RestSettings.from_args(args))
