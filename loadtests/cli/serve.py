"""``servelab serve rest|grpc|function``: a serving target, in the foreground until stopped."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.cli.serving_options import (
    add_batching_options,
    add_model_option,
    add_server_options,
)
from loadtests.options import (
    NON_NEGATIVE_INT,
    PORT,
    POSITIVE_DURATION,
    POSITIVE_INT,
    CommandParser,
    Subcommands,
    examples,
)
from targets.schema import DEFAULT_MAX_BODY_BYTES

COMMANDS: Final = ("serve rest", "serve grpc", "serve function")


def add_parser(commands: Subcommands) -> None:
    """serve rest|grpc, batch score, stream, edge run|bundle."""
    serve = commands.add_parser(
        "serve", help="run a serving target",
        epilog=examples("servelab serve rest --port 8000", "servelab serve grpc --port 50051"),
    )  # fmt: skip
    serve_kinds = serve.add_subparsers(dest="kind", required=True, parser_class=CommandParser)
    rest = serve_kinds.add_parser(
        "rest", help="FastAPI on uvicorn",
        epilog=examples(
            "servelab serve rest --port 8000 --workers 2",
            "servelab serve rest --port 0 --ready-file rest.json --model synthetic:fixed:5ms",
        ),
    )  # fmt: skip
    add_server_options(rest, 8000)
    rest.add_argument(
        "--workers", type=POSITIVE_INT, default=1, metavar="N",
        help="uvicorn worker processes sharing the socket",
    )  # fmt: skip
    rest.add_argument(
        "--max-body-bytes", type=POSITIVE_INT, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
        help="largest request body; larger is refused (413)",
    )  # fmt: skip
    grpc = serve_kinds.add_parser(
        "grpc", help="grpc.aio with health and reflection",
        epilog=examples(
            "servelab serve grpc --port 50051",
            "servelab serve grpc --port 0 --ready-file grpc.json --batch-size 64 --window-ms 1",
        ),
    )  # fmt: skip
    add_server_options(grpc, 50051)
    grpc.add_argument(
        "--max-message-bytes", type=POSITIVE_INT, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
        help="largest message; larger is refused (RESOURCE_EXHAUSTED)",
    )  # fmt: skip
    add_batching_options(grpc, 32, 2.0)  # for PredictStream
    _add_function_parser(serve_kinds)


def _add_function_parser(serve_kinds: argparse._SubParsersAction[CommandParser]) -> None:
    """``serve function``: the REST app as a Lambda-style handler behind a scale-to-zero front."""
    from targets.logs import LEVELS

    function = serve_kinds.add_parser(
        "function", help="the REST app as a mangum handler behind a local scale-to-zero front",
        epilog=examples(
            "servelab serve function --port 9000 --idle-timeout 60s --max-function-instances 2",
            "servelab serve function --port 0 --ready-file f.json --idle-timeout 1s",
        ),
    )  # fmt: skip
    function.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    function.add_argument("--port", type=PORT, default=9000, help="0 picks a free port")
    function.add_argument(
        "--ready-file", metavar="FILE", help="write the bound address once serving"
    )
    function.add_argument(
        "--log-level", choices=list(LEVELS), default="warning",
        help="the instances' JSON log lines on stderr",
    )  # fmt: skip
    function.add_argument(
        "--idle-timeout", type=POSITIVE_DURATION, default=60.0, metavar="D",
        help="retire an instance idle longer than this (default 60s)",
    )  # fmt: skip
    function.add_argument(
        "--max-function-instances", type=POSITIVE_INT, default=2, metavar="N",
        help="instances at most, starting ones included; keep it at or below the cores "
        "(default 2)",
    )  # fmt: skip
    function.add_argument(
        "--max-waiting", type=NON_NEGATIVE_INT, default=100, metavar="N",
        help="requests that may wait for a busy instance at the maximum; past it 429 (default 100)",
    )  # fmt: skip
    function.add_argument(
        "--function-timeout", type=POSITIVE_DURATION, default=30.0, metavar="D",
        help="an invocation slower than this is cut: 504, the instance stopped (default 30s)",
    )  # fmt: skip
    add_model_option(function)


def main(args: argparse.Namespace) -> int:
    if args.kind == "function":
        from targets.function.front import main as serve_function

        return serve_function(args)
    if args.kind == "rest":
        from targets.rest.server import main as serve_rest

        return serve_rest(args)
    from targets.rpc.server import main as serve_grpc

    return serve_grpc(args)
