"""The serving targets' commands of ``servelab``. Stdlib only at import; each command imports
what it needs (the full CLI, with ``run`` and the rest, is ``loadtests.cli``).

Bad input is translated here, and only here: a wrong option, a bad SPEC, a missing file is one
line on stderr and exit code 2 — never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeAlias, TypeVar

from targets.admission import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE
from targets.errors import ServelabError
from targets.logs import LEVELS
from targets.schema import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES
from targets.spec import DEFAULT_MODEL_SPEC

EXIT_USAGE = 2
N = TypeVar("N", int, float)
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# command path -> "module:function" taking the parsed Namespace and returning an exit code
HANDLERS = {
    "serve rest": "targets.rest.server:main",
    "serve grpc": "targets.rpc.server:main",
    "batch score": "targets.batch:main",
    "stream": "targets.streaming:main",
    "edge run": "targets.edge.runtime:main",
    "edge bundle": "targets.edge.bundle:main",
}


class UsageError(Exception):
    """A command-line mistake; printed as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming the culprit, not argparse's usage dump.
        raise UsageError(f"{self.prog}: {message}")


def bounded(
    convert: Callable[[str], N], ok: Callable[[N], bool], expected: str
) -> Callable[[str], N]:
    """An argparse ``type``: ``convert`` the text, check ``ok``, else one line saying what was
    expected (NaN fails every comparison, so it is refused too)."""

    def parse(text: str) -> N:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = bounded(int, lambda value: value >= 1, "a positive integer")
_non_negative_int = bounded(int, lambda value: value >= 0, "an integer >= 0")
_port = bounded(int, lambda value: 0 <= value <= 65535, "a port 0..65535")
_window_ms = bounded(float, lambda value: 0 <= value <= 60_000, "milliseconds 0..60000")


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_SPEC,
        metavar="SPEC",
        help="reference | synthetic:KIND:... | package.module:callable (default: reference)",
    )


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=default_port, help="0 picks a free port")
    parser.add_argument("--ready-file", metavar="FILE", help="write the bound address once serving")
    parser.add_argument("--log-level", choices=list(LEVELS), default="info")
    parser.add_argument("--disable-v2", action="store_true", help="serve API v1 only")
    parser.add_argument("--max-instances", type=_positive_int, default=DEFAULT_MAX_INSTANCES)
    parser.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help="predictions served at once (per worker); past it and the queue, REST answers 503 "
        f"with Retry-After, gRPC UNAVAILABLE (default {DEFAULT_MAX_IN_FLIGHT})",
    )
    parser.add_argument(
        "--max-queue",
        type=_non_negative_int,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help=f"requests allowed to wait for an in-flight slot (default {DEFAULT_MAX_QUEUE})",
    )
    _add_model(parser)


def _add_batching(parser: argparse.ArgumentParser, batch_size: int, window_ms: float) -> None:
    parser.add_argument("--batch-size", type=_positive_int, default=batch_size, metavar="ROWS")
    parser.add_argument("--window-ms", type=_window_ms, default=window_ms, metavar="MS")
    parser.add_argument("--queue-size", type=_positive_int, default=1024, metavar="N")


def new_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    """The root ``servelab`` parser (one-line errors) and its subcommand registry."""
    parser: argparse.ArgumentParser = _Parser(
        prog="servelab", description="servelab: load-test ML model serving."
    )
    commands: Subcommands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    return parser, commands


def add_target_commands(commands: Subcommands) -> None:
    """serve rest|grpc, batch score, stream, edge run|bundle."""
    serve = commands.add_parser("serve", help="run a serving target")
    serve_kinds = serve.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    rest = serve_kinds.add_parser("rest", help="FastAPI on uvicorn")
    _add_server_options(rest, 8000)
    rest.add_argument("--workers", type=_positive_int, default=1)
    rest.add_argument("--max-body-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES)
    grpc = serve_kinds.add_parser("grpc", help="grpc.aio with health and reflection")
    _add_server_options(grpc, 50051)
    grpc.add_argument("--max-message-bytes", type=_positive_int, default=DEFAULT_MAX_BODY_BYTES)
    _add_batching(grpc, 32, 2.0)

    batch = commands.add_parser("batch", help="batch scoring of files")
    batch_kinds = batch.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    score = batch_kinds.add_parser("score", help="score a JSONL/CSV file or a directory of them")
    score.add_argument("input", metavar="INPUT")
    score.add_argument("--out", required=True, metavar="OUTPUT")
    score.add_argument("--batch-size", type=_positive_int, default=256)
    score.add_argument(
        "--errors",
        metavar="FILE",
        help="bad rows (default OUTPUT.errors.jsonl; with a directory INPUT, a directory, "
        "default OUTPUT)",
    )
    _add_model(score)

    stream = commands.add_parser("stream", help="event-driven micro-batched inference")
    stream.add_argument("--input", default="-", metavar="FILE|-")
    stream.add_argument("--out", default="-", metavar="FILE|-")
    stream.add_argument("--follow", action="store_true", help="keep reading a growing file")
    stream.add_argument(
        "--idle-exit-s",
        type=float,
        default=2.0,
        metavar="S",
        help="with --follow: stop after this long without new events",
    )
    _add_batching(stream, 32, 5.0)
    _add_model(stream)

    edge = commands.add_parser("edge", help="the edge runtime")
    edge_kinds = edge.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    for name, help_text in (
        ("run", "JSON requests on stdin, canonical responses on stdout"),
        ("bundle", "package the edge runtime and a stdlib model into a zipapp"),
    ):
        sub = edge_kinds.add_parser(name, help=help_text)
        _add_model(sub)
        sub.add_argument("--remote", metavar="URL", help="REST target base URL (remote-first)")
        sub.add_argument("--quant", default="int8:8", metavar="Q", help="int8:RANGE | fixed:BITS")
        sub.add_argument("--cache-size", type=int, default=1024, metavar="N")
        sub.add_argument("--timeout-ms", type=_window_ms, default=200.0, metavar="MS")
        sub.add_argument(
            "--failure-threshold",
            type=_positive_int,
            default=1,
            metavar="N",
            help="consecutive remote failures that open the circuit breaker",
        )
        sub.add_argument(
            "--cooldown-s",
            type=float,
            default=5.0,
            metavar="S",
            help="circuit-breaker cool-down before one trial request",
        )
        sub.add_argument(
            "--drift-every",
            type=int,
            default=1,
            metavar="N",
            help="measure quantisation drift on 1 in N local computations (0: off)",
        )
        if name == "bundle":
            sub.add_argument("--out", required=True, metavar="FILE")


def dispatch(
    parser: argparse.ArgumentParser, handlers: dict[str, str], argv: Sequence[str] | None
) -> int:
    """Parse, run the handler, and translate every input error to one line and exit code 2."""
    try:
        args = parser.parse_args(argv)
        command = " ".join(part for part in (args.command, getattr(args, "kind", None)) if part)
        module_name, _, function = handlers[command].partition(":")
        handler = getattr(importlib.import_module(module_name), function)
        code: int = handler(args)
        return code
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except (ServelabError, ValueError, OSError) as exc:
        print(f"servelab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("servelab: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """The targets' commands alone (``python -m targets.cli``); ``servelab`` adds the rest."""
    parser, commands = new_parser()
    add_target_commands(commands)
    return dispatch(parser, HANDLERS, argv)


if __name__ == "__main__":
    sys.exit(main())
