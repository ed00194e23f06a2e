"""``servelab serve function``: a local scale-to-zero front for the function in
``targets.function.handler`` — an emulation of a function platform's scaling rule
(``targets.function.pool``), not a platform.

Each HTTP request becomes an API Gateway v2 event (``gateway.http_event``), runs on an instance,
and the handler's answer goes back as HTTP, with ``x-servelab-cold-start: 1|0`` (did this
request start its instance), ``x-servelab-init-ms`` (that instance's init: process start and
model load, measured by the front) and ``x-servelab-instance``. ``GET /_servelab/front`` is the
front's own: its figures as JSON (instances, cold starts, CPU of the instances), never sent to
the function. Refusals: 413 over ``MAX_BODY_BYTES`` (Lambda's 6 MB), 429 when every instance is
busy at the maximum and the waiting line is full, 502 when an instance failed, 504 past the
function timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from targets.errors import InputError
from targets.function.gateway import (
    COLD_START_HEADER,
    INIT_MS_HEADER,
    INSTANCE_HEADER,
    STATS_PATH,
    http_answer,
    http_event,
)
from targets.function.instance import function_error
from targets.function.pool import FunctionFailed, InstancePool, Throttled

MAX_BODY_BYTES: Final = 6 * 1024 * 1024
METHODS: Final = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
GRACEFUL_SHUTDOWN_S: Final = 30


@dataclass(frozen=True, slots=True)
class FrontSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    model_spec: str = "reference"
    ready_file: str | None = None
    log_level: str = "warning"
    idle_timeout_s: float = 60.0
    max_instances: int = 2
    max_waiting: int = 100
    timeout_s: float = 30.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> FrontSettings:
        return cls(
            host=args.host,
            port=args.port,
            model_spec=args.model,
            ready_file=args.ready_file,
            log_level=args.log_level,
            idle_timeout_s=args.idle_timeout,
            max_instances=args.max_function_instances,
            max_waiting=args.max_waiting,
            timeout_s=args.function_timeout,
        )


def _answer(answer: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    try:
        status, pairs, body = http_answer(answer)
    except ValueError as exc:  # the function's answer cannot go on as HTTP: its fault
        status, pairs, body = http_answer(function_error("bad_function_answer", str(exc)))
    response = Response(body, status_code=status)
    for name, value in pairs:
        response.headers.append(name, value)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def create_front(pool: InstancePool) -> Starlette:
    """The front's ASGI app over ``pool``; the pool is closed (its instances stopped) when the
    app shuts down."""

    async def invoke(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _answer(function_error("request_too_large", "body over 6 MB", 413))
        event = http_event(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=request.headers.items(),
            body=body,
            request_id=request.headers.get("x-request-id") or "",
            source_ip=request.client.host if request.client else "127.0.0.1",
        )
        try:
            done = await pool.invoke(event)
        except Throttled as exc:
            return _answer(function_error("throttled", str(exc), 429), {"retry-after": "1"})
        except FunctionFailed as exc:
            return _answer(function_error(exc.code, str(exc), exc.status))
        return _answer(
            done.answer,
            {
                COLD_START_HEADER: "1" if done.cold else "0",
                INIT_MS_HEADER: f"{done.init_ms:.1f}",
                INSTANCE_HEADER: str(done.instance),
            },
        )

    async def stats(request: Request) -> Response:
        return Response(orjson.dumps(pool.stats()), media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await pool.close()

    return Starlette(
        routes=[
            Route(STATS_PATH, stats, methods=["GET"]),
            Route("/{path:path}", invoke, methods=METHODS),
        ],
        lifespan=lifespan,
    )


def run(settings: FrontSettings) -> int:
    """Serve until SIGINT/SIGTERM; every instance is stopped on the way out."""
    from targets.rest.server import DrainingServer, bind_socket, serve_announcing
    from targets.spec import load_model

    load_model(settings.model_spec)  # a bad SPEC: one line, exit 2, before anything listens
    pool = InstancePool(
        settings.model_spec,
        max_instances=settings.max_instances,
        idle_timeout_s=settings.idle_timeout_s,
        max_waiting=settings.max_waiting,
        timeout_s=settings.timeout_s,
        log_level=settings.log_level,
    )
    sock = bind_socket(settings.host, settings.port)
    config = uvicorn.Config(
        create_front(pool), log_level="warning", access_log=False, server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )  # fmt: skip
    server = DrainingServer(config)
    with contextlib.closing(sock), asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve_announcing(server, sock, settings.ready_file, "function"))
    return 0


def main(args: argparse.Namespace) -> int:
    """``servelab serve function``: the options ``loadtests.cli.serve`` defines for it."""
    if args.max_waiting < 0:
        raise InputError("--max-waiting must be >= 0")
    return run(FrontSettings.from_args(args))
