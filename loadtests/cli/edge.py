"""``servelab edge run|bundle``: the edge runtime, or its zipapp."""

from __future__ import annotations

import argparse
from typing import Final

from loadtests.cli.serving_options import (
    add_model_option,
)
from loadtests.options import (
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    TIMEOUT_MS,
    CommandParser,
    Subcommands,
    examples,
)
from targets.edge.config import RUNTIMES

COMMANDS: Final = ("edge run", "edge bundle")


def add_parser(commands: Subcommands) -> None:
    edge = commands.add_parser(
        "edge", help="the edge runtime",
        epilog=examples(
            "servelab edge run --remote http://127.0.0.1:8000 < requests.jsonl",
            "servelab edge bundle --out edge.pyz",
        ),
    )  # fmt: skip
    edge_kinds = edge.add_subparsers(dest="kind", required=True, parser_class=CommandParser)
    for name, help_text, epilog in (
        ("run", "JSON requests on stdin, canonical responses on stdout", examples(
            "servelab edge run < requests.jsonl",
            "servelab edge run --remote http://127.0.0.1:8000 --quant fixed:8 < requests.jsonl",
            "servelab edge run --runtime wasm --model digits < requests.jsonl",
        )),
        ("bundle", "package the edge runtime and a stdlib model into a zipapp", examples(
            "servelab edge bundle --out edge.pyz",
            "servelab edge bundle --out edge.pyz --remote http://127.0.0.1:8000 --cache-size 4096",
            "servelab edge bundle --wasm --model digits --out web/",
        )),
    ):  # fmt: skip
        sub = edge_kinds.add_parser(name, help=help_text, epilog=epilog)
        add_model_option(sub)
        sub.add_argument("--remote", metavar="URL", help="REST target base URL (remote-first)")
        sub.add_argument("--quant", default="int8:8", metavar="Q", help="int8:RANGE | fixed:BITS")
        sub.add_argument(
            "--cache-size", type=NON_NEGATIVE_INT, default=1024, metavar="N",
            help="LRU cache entries, keyed by the quantised rows (0: no cache)",
        )  # fmt: skip
        sub.add_argument(
            "--timeout-ms", type=TIMEOUT_MS, default=200.0, metavar="MS",
            help="a remote call slower than this falls back to the local model",
        )  # fmt: skip
        sub.add_argument(
            "--failure-threshold",
            type=POSITIVE_INT,
            default=1,
            metavar="N",
            help="consecutive remote failures that open the circuit breaker",
        )
        sub.add_argument(
            "--cooldown-s",
            type=NON_NEGATIVE,
            default=5.0,
            metavar="S",
            help="circuit-breaker cool-down before one trial request",
        )
        sub.add_argument(
            "--drift-every",
            type=NON_NEGATIVE_INT,
            default=1,
            metavar="N",
            help="measure quantisation drift on 1 in N local computations (0: off)",
        )
        if name == "bundle":
            sub.add_argument(
                "--out", required=True, metavar="PATH",
                help="the zipapp to write (with --wasm: the directory to write into)",
            )  # fmt: skip
            sub.add_argument(
                "--wasm", action="store_true",
                help="write the model's WebAssembly module and a JS loader for a browser "
                "(models reference and digits), not a zipapp",
            )  # fmt: skip
        else:
            sub.add_argument(
                "--runtime", choices=RUNTIMES, default="python",
                help="what computes the model: Python, or its WebAssembly module under wasmtime",
            )  # fmt: skip


def main(args: argparse.Namespace) -> int:
    if args.kind == "run":
        from targets.edge.runtime import main as run_edge

        return run_edge(args)
    from targets.edge.bundle import main as bundle

    return bundle(args)
