"""The serving targets' commands of ``servelab``. Stdlib only at import; each command imports
what it needs (the full CLI, with ``run`` and the rest, is ``loadtests.cli.commands``).

Bad input is translated here, and only here: a wrong option, a bad SPEC, a missing file is one
line on stderr and exit code 2 — never a traceback. Every numeric option of every command
declares its valid values as its argparse ``type`` — a ``Range`` (one number), a ``RangePair``
(``N[:M]``) or a ``StageList`` (``DURATION:RATE,...``) — and the tests read those declarations
back to probe each option.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn, TypeAlias, TypeVar

from targets.admission import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_QUEUE
from targets.errors import ServelabError, TargetStartError
from targets.logs import LEVELS
from targets.schema import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_INSTANCES
from targets.spec import DEFAULT_MODEL_SPEC
from targets.units import parse_duration_s

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


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` with the epilog's examples kept as written, and each option's default after
    its help — only when it has one (not None, not an empty list, not a flag's off) that the help
    does not state already (argparse's ``ArgumentDefaultsHelpFormatter`` would print
    ``(default: None)`` and repeat stated defaults)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unstated = (
            action.option_strings
            and action.nargs != 0  # store_true, count, help: a flag is off unless given
            and default not in (None, argparse.SUPPRESS)
            and not (isinstance(default, list) and not default)
            and "default" not in text.lower()
        )
        return f"{text} (default: %(default)s)" if unstated else action.help


def examples(*commands: str) -> str:
    """An ``epilog``: the command's examples, one per line."""
    return "examples:\n" + "".join(f"  {command}\n" for command in commands)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # One line naming the culprit, not argparse's usage dump.
        raise UsageError(f"{self.prog}: {message}")


_NOUN = {"int": "an integer", "float": "a number", "duration": "a duration"}


@dataclass(frozen=True, slots=True)
class Range:
    """The valid values of one numeric option, as its argparse ``type``: the text is read as
    ``kind`` (``duration``: ``2s``, ``50ms``, in seconds), then must lie between ``low`` and
    ``high`` (inclusive unless ``*_open``; ``None``: unbounded). NaN and ±inf never do.
    ``what`` replaces the generated description where a domain word says it better."""

    kind: Literal["int", "float", "duration"]
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    what: str | None = None

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """``a positive integer``, ``a number in [0, 1]``, ``a duration >= 0 (e.g. 2s, 50ms)``."""
        if self.what is not None:
            return self.what
        noun = _NOUN[self.kind]
        if self.low is not None and self.high is not None:
            opening, closing = "(" if self.low_open else "[", ")" if self.high_open else "]"
            bounds = f"in {opening}{self.low:g}, {self.high:g}{closing}"
        elif self.low is not None and self.kind != "duration" and self.low == 0 and self.low_open:
            bounds, noun = "", f"a positive {noun.split()[-1]}"
        elif self.low is not None and self.kind == "int" and self.low == 1:
            bounds, noun = "", "a positive integer"
        elif self.low is not None:
            bounds = f"{'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            bounds = f"{'<' if self.high_open else '<='} {self.high:g}"
        else:
            bounds = "" if self.kind == "int" else "(finite)"
        described = f"{noun} {bounds}".strip()
        return f"{described} (e.g. 2s, 50ms)" if self.kind == "duration" else described

    def read(self, text: str) -> float:
        """``text`` as a number of this kind, unchecked; ``ValueError`` if it is none."""
        if self.kind == "int":
            return int(text)
        if self.kind == "float":
            return float(text)
        return parse_duration_s(text)

    def __call__(self, text: str) -> float:
        try:
            value = self.read(text)
        except ValueError as exc:
            # parse_duration_s's message already quotes the text and lists the units
            message = str(exc) if self.kind == "duration" else self._refusal(text)
            raise argparse.ArgumentTypeError(message) from None
        if not self.contains(value):
            raise argparse.ArgumentTypeError(self._refusal(text))
        return value

    def _refusal(self, text: str) -> str:
        return f"expected {self.describe()}, got {text!r}"


@dataclass(frozen=True, slots=True)
class RangePair:
    """``FIRST`` or ``FIRST:SECOND`` (the names say what each is), each in ``part``;
    ``ordered``: FIRST <= SECOND. Gives ``(first, second)``, ``second`` None when not given."""

    part: Range
    names: tuple[str, str] = ("N", "M")
    ordered: bool = False

    def __call__(self, text: str) -> tuple[float, float | None]:
        first, second = self.names
        texts = text.split(":")
        try:
            values = [self.part.read(part) for part in texts]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or not all(self.part.contains(v) for v in values):
            raise argparse.ArgumentTypeError(
                f"expected {first} or {first}:{second}, each {self.part.describe()}, got {text!r}"
            )
        if self.ordered and values[0] > values[-1]:
            raise argparse.ArgumentTypeError(f"expected {first} <= {second}, got {text!r}")
        return values[0], values[1] if len(values) == 2 else None


@dataclass(frozen=True, slots=True)
class StageList:
    """``DURATION:RATE[,DURATION:RATE...]``: stepped load, each ``duration`` and ``rate`` in its
    range. Gives ``[(duration, rate), ...]``."""

    duration: Range
    rate: Range

    def __call__(self, text: str) -> list[tuple[float, float]]:
        return [self._stage(part) for part in text.split(",")]

    def _stage(self, text: str) -> tuple[float, float]:
        duration_text, colon, rate_text = text.partition(":")
        try:
            stage = self.duration.read(duration_text), self.rate.read(rate_text)
        except ValueError:
            stage = (math.nan, math.nan)
        if not (colon and self.duration.contains(stage[0]) and self.rate.contains(stage[1])):
            raise argparse.ArgumentTypeError(
                f"expected DURATION:RATE[,...] with DURATION {self.duration.describe()}"
                f" and RATE {self.rate.describe()}, got {text!r}"
            )
        return stage


# The ranges more than one option shares.
POSITIVE_INT = Range("int", low=1)
NON_NEGATIVE_INT = Range("int", low=0)
SEED = Range("int", low=0)  # numpy's SeedSequence refuses negative seeds
POSITIVE = Range("float", low=0, low_open=True)
NON_NEGATIVE = Range("float", low=0)
FRACTION = Range("float", low=0, high=1)
OPEN_FRACTION = Range("float", low=0, high=1, low_open=True, high_open=True)
POSITIVE_DURATION = Range("duration", low=0, low_open=True)
NON_NEGATIVE_DURATION = Range("duration", low=0)
PORT = Range("int", low=0, high=65535, what="a port 0..65535")  # 0: the OS picks a free one
WINDOW_MS = Range("float", low=0, high=60_000, what="milliseconds 0..60000")
TIMEOUT_MS = Range("float", low=0, high=60_000, low_open=True, what="milliseconds (0, 60000]")


def bounded(
    convert: Callable[[str], N], ok: Callable[[N], bool], expected: str
) -> Callable[[str], N]:
    """An argparse ``type`` for parsers outside ``servelab``'s own (Locust's, in
    ``loadtests.locust_integration.support``); ``servelab``'s options declare a ``Range`` instead, which the
    tests can read back. ``convert`` the text, check ``ok``, else one line saying what was
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


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL_SPEC,
        metavar="SPEC",
        help="reference | synthetic:KIND:... | package.module:callable (default: reference)",
    )


def _add_server_options(parser: argparse.ArgumentParser, default_port: int) -> None:
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
    _add_model(parser)


def _add_batching(parser: argparse.ArgumentParser, batch_size: int, window_ms: float) -> None:
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


def new_parser() -> tuple[argparse.ArgumentParser, Subcommands]:
    """The root ``servelab`` parser (one-line errors) and its subcommand registry."""
    parser: argparse.ArgumentParser = _Parser(
        prog="servelab",
        description="servelab: load-test ML model serving.",
        epilog=examples(
            "servelab serve rest --port 8000",
            "servelab run --target inprocess --duration 5s",
            "servelab bench --quick",
        ),
    )
    commands: Subcommands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    return parser, commands


def add_target_commands(commands: Subcommands) -> None:
    """serve rest|grpc, batch score, stream, edge run|bundle."""
    serve = commands.add_parser(
        "serve", help="run a serving target",
        epilog=examples("servelab serve rest --port 8000", "servelab serve grpc --port 50051"),
    )  # fmt: skip
    serve_kinds = serve.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    rest = serve_kinds.add_parser(
        "rest", help="FastAPI on uvicorn",
        epilog=examples(
            "servelab serve rest --port 8000 --workers 2",
            "servelab serve rest --port 0 --ready-file rest.json --model synthetic:fixed:5ms",
        ),
    )  # fmt: skip
    _add_server_options(rest, 8000)
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
    _add_server_options(grpc, 50051)
    grpc.add_argument(
        "--max-message-bytes", type=POSITIVE_INT, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
        help="largest message; larger is refused (RESOURCE_EXHAUSTED)",
    )  # fmt: skip
    _add_batching(grpc, 32, 2.0)  # for PredictStream

    batch = commands.add_parser(
        "batch", help="batch scoring of files",
        epilog=examples(
            "servelab batch score rows.jsonl --out scores.jsonl",
            "servelab batch score parts/ --out scored/ --batch-size 1024",
        ),
    )  # fmt: skip
    batch_kinds = batch.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    score = batch_kinds.add_parser(
        "score", help="score a JSONL/CSV file or a directory of them",
        epilog=examples(
            "servelab batch score rows.jsonl --out scores.jsonl",
            "servelab batch score rows.csv --out scores.jsonl --errors bad.jsonl",
            "servelab batch score parts/ --out scored/ --batch-size 1024 --model synthetic:cpu:1ms",
        ),
    )  # fmt: skip
    score.add_argument(
        "input", metavar="INPUT", help="a .jsonl or .csv file, or a directory of them"
    )
    score.add_argument(
        "--out", required=True, metavar="OUTPUT",
        help="scores (JSONL), written atomically; with a directory INPUT, a directory (a re-run "
        "skips finished partitions)",
    )  # fmt: skip
    score.add_argument(
        "--batch-size", type=POSITIVE_INT, default=256, metavar="ROWS",
        help="rows per model call",
    )  # fmt: skip
    score.add_argument(
        "--errors",
        metavar="FILE",
        help="bad rows (default OUTPUT.errors.jsonl; with a directory INPUT, a directory, "
        "default OUTPUT)",
    )
    _add_model(score)

    stream = commands.add_parser(
        "stream", help="event-driven micro-batched inference",
        epilog=examples(
            "servelab stream --input events.jsonl --out answers.jsonl",
            "servelab stream --input events.jsonl --follow --idle-exit-s 5 --window-ms 2",
            "servelab stream < events.jsonl",
        ),
    )  # fmt: skip
    stream.add_argument(
        "--input", default="-", metavar="FILE|-",
        help="JSON requests, one per line (-: stdin)",
    )  # fmt: skip
    stream.add_argument(
        "--out", default="-", metavar="FILE|-",
        help="answers in input order, one per line (-: stdout)",
    )  # fmt: skip
    stream.add_argument("--follow", action="store_true", help="keep reading a growing file")
    stream.add_argument(
        "--idle-exit-s",
        type=POSITIVE,
        default=2.0,
        metavar="S",
        help="with --follow: stop after this long without new events",
    )
    _add_batching(stream, 32, 5.0)
    _add_model(stream)

    edge = commands.add_parser(
        "edge", help="the edge runtime",
        epilog=examples(
            "servelab edge run --remote http://127.0.0.1:8000 < requests.jsonl",
            "servelab edge bundle --out edge.pyz",
        ),
    )  # fmt: skip
    edge_kinds = edge.add_subparsers(dest="kind", required=True, parser_class=_Parser)
    for name, help_text, epilog in (
        ("run", "JSON requests on stdin, canonical responses on stdout", examples(
            "servelab edge run < requests.jsonl",
            "servelab edge run --remote http://127.0.0.1:8000 --quant fixed:8 < requests.jsonl",
        )),
        ("bundle", "package the edge runtime and a stdlib model into a zipapp", examples(
            "servelab edge bundle --out edge.pyz",
            "servelab edge bundle --out edge.pyz --remote http://127.0.0.1:8000 --cache-size 4096",
        )),
    ):  # fmt: skip
        sub = edge_kinds.add_parser(name, help=help_text, epilog=epilog)
        _add_model(sub)
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
            sub.add_argument("--out", required=True, metavar="FILE", help="the zipapp to write")


def dispatch(
    parser: argparse.ArgumentParser, handlers: dict[str, str], argv: Sequence[str] | None
) -> int:
    """Parse, run the handler, and translate every input error to one line and exit code 2
    (a target servelab started that did not come up is exit 2 too: nothing was measured)."""
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
    except TargetStartError as exc:
        print(f"servelab: {exc}", file=sys.stderr)
        # refused arguments, crashed or never ready: nothing was measured (README "Exit codes")
        return EXIT_USAGE
    except (ServelabError, ValueError, OSError) as exc:
        print(f"servelab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("servelab: interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """The targets' commands alone (``python -m loadtests.cli.app``); ``servelab`` adds the rest."""
    parser, commands = new_parser()
    add_target_commands(commands)
    return dispatch(parser, HANDLERS, argv)


if __name__ == "__main__":
    sys.exit(main())
