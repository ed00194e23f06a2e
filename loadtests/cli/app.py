"""The ``servelab`` command: the composition root, and the one place that imports the command
modules of every package. Each command module (``loadtests.cli.<command>``) declares its
parser (``add_parser``), the command paths it handles (``COMMANDS``) and its handler
(``main``); its module level imports only ``argparse`` and ``loadtests.options``, so building
the parser stays cheap and a command imports what it runs only when it runs.

Errors are translated here, and only here: a ``ServelabError`` — a usage mistake, a bad
option, config or input file, a result file that cannot be written, a target that did not come
up — is one line on stderr and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

from loadtests.cli import (
    batch,
    bench,
    compare,
    demo,
    edge,
    freshness,
    import_locust,
    locust,
    recompute,
    report,
    run,
    serve,
    stream,
    sweep,
)
from loadtests.errors import ServelabError, UsageError
from loadtests.options import CommandParser, Subcommands, examples
from loadtests.results.gates import EXIT_BAD_INPUT, EXIT_INTERRUPTED

# In ``servelab --help`` order: the serving targets, then the load side.
MODULES = (
    serve, batch, stream, edge, run, demo, bench, freshness, sweep, report, compare, locust,
    import_locust, recompute,
)  # fmt: skip
# command path -> "module:function" taking the parsed Namespace and returning an exit code
COMMANDS: Mapping[str, str] = {
    path: f"{module.__name__}:main" for module in MODULES for path in module.COMMANDS
}


def new_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    """The root ``servelab`` parser (one-line errors) and its subcommand registry."""
    parser: argparse.ArgumentParser = CommandParser(
        prog="servelab",
        description="servelab: load-test ML model serving.",
        epilog=examples(
            "servelab serve rest --port 8000",
            "servelab run --target inprocess --duration 5s",
            "servelab bench --quick",
        ),
    )
    commands: Subcommands = parser.add_subparsers(
        dest="command", required=True, parser_class=CommandParser
    )
    return parser, commands


def build_parser() -> argparse.ArgumentParser:
    """The whole ``servelab`` parser: every command, every option (tests walk it)."""
    parser, commands = new_parser()
    for module in MODULES:
        module.add_parser(commands)
    return parser


def dispatch(
    parser: argparse.ArgumentParser, handlers: Mapping[str, str], argv: Sequence[str] | None
) -> int:
    """Parse, run the handler, and translate what a user can cause (``ServelabError``) to one
    line and exit code 2; Ctrl-C outside a run is 130."""
    try:
        args = parser.parse_args(argv)
        command = " ".join(part for part in (args.command, getattr(args, "kind", None)) if part)
        module_name, _, function = handlers[command].partition(":")
        handler = getattr(importlib.import_module(module_name), function)
        code: int = handler(args)
        return code
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServelabError as exc:
        # includes TargetStartError: refused arguments, crashed or never ready — nothing was
        # measured (README "Exit codes")
        print(f"servelab: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("servelab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch(build_parser(), COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
