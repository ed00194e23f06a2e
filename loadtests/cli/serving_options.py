"""The options the serving commands (``serve rest|grpc``, ``batch score``, ``stream``, ``edge``)
share: the model, the server's address, readiness, logs and limits, micro-batching."""

from __future__ import annotations

import argparse

from loadtests.options import NON_NEGATIVE_INT, PORT, POSITIVE_INT, WINDOW_MS
from targets.admission import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE
from targets.logs import LEVELS
from targets.schema import DEFAULT_MAX_INSTANCES
from targets.spec import DEFAULT_MODEL_SPEC


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """--model SPEC of a serving command."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_SPEC,
        metavar="SPEC",
        help="reference | synthetic:KIND:... | package.module:callable (default: reference)",
    )


def add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
    """What ``serve rest`` and ``serve grpc`` share: address, readiness, logs, limits."""
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=PORT, default=default_port, help="0 picks a free port")
    parser.add_argument("--ready-file", metavar="FILE", help="write the bound address once serving")
    parser.add_argument(
        "--log-level", choices=list(LEVELS), default="info",
        help="JSON log lines on stderr, one per request at debug and info",
    )  # fmt: skip
    parser.add_argument("--disable-v2", action="store_true", help="serve API v1 only")
    parser.add_argument(
        "--max-instances", type=POSITIVE_INT, default=DEFAULT_MAX_INSTANCES, metavar="N",
        help="features per row (instances) a request may carry; more is refused (422)",
    )  # fmt: skip
    parser.add_argument(
        "--max-in-flight",
        type=POSITIVE_INT,
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help="predictions served at once (per worker); past it and the queue, REST answers 503 "
        f"with Retry-After, gRPC UNAVAILABLE (default {DEFAULT_MAX_IN_FLIGHT})",
    )
    parser.add_argument(
        "--max-queue",
        type=NON_NEGATIVE_INT,
        default=DEFAULT_MAX_QUEUE,
        metavar="N",
        help=f"requests allowed to wait for an in-flight slot (default {DEFAULT_MAX_QUEUE})",
    )
    add_model_option(parser)


def add_batching_options(
    parser: argparse.ArgumentParser, batch_size: int, window_ms: float
) -> None:
    """Micro-batching of ``serve grpc`` (PredictStream) and ``stream``."""
    parser.add_argument(
        "--batch-size", type=POSITIVE_INT, default=batch_size, metavar="ROWS",
        help="micro-batching: at most this many rows per model call",
    )  # fmt: skip
    parser.add_argument(
        "--window-ms", type=WINDOW_MS, default=window_ms, metavar="MS",
        help="micro-batching: how long the first row of a batch waits for more",
    )  # fmt: skip
    parser.add_argument(
        "--queue-size", type=POSITIVE_INT, default=1024, metavar="N",
        help="events waiting for a batch; when full, reading stops (backpressure)",
    )  # fmt: skip
