"""``servelab serve rest|grpc``: a serving target, in the foreground until stopped."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.cli.serving_options import (
    add_batching_options,
    add_server_options,
)
from loadtests.options import (
    POSITIVE_INT,
    CommandParser,
    Subcommands,
    examples,
)
from targets.schema import DEFAULT_MAX_BODY_BYTES

COMMANDS: Final = ("serve rest", "serve grpc")


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


def main(args: argparse.Namespace) -> int:
    if args.kind == "rest":
        from targets.rest.server import main as serve_rest

        return serve_rest(args)
    from targets.rpc.server import main as serve_grpc

    return serve_grpc(args)
