"""servelab's command-line options, declared once: the value types every numeric option uses
(a ``Range`` for one number, a ``RangePair`` for ``N[:M]``, a ``StageList`` for
``DURATION:RATE,...``; the tests read these declarations back to probe each option), the help
layout, and the option groups several commands share — target (``--url`` / ``--address`` /
``--model`` / ``--allow-remote``), payloads, gates. ``servelab``'s commands (``loadtests.cli``)
and servelab's options on Locust's parser (``loadtests.locust_integration.support``) both use
them, so an option means, and refuses, the same everywhere. Stdlib and ``targets`` only at import.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeAlias

from loadtests.errors import UsageError
from targets.spec import DEFAULT_MODEL_SPEC
from targets.units import parse_duration_s

if TYPE_CHECKING:
    from loadtests.protocols.registry import ProtocolOptions

Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


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


class CommandParser(argparse.ArgumentParser):
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


# -- option groups more than one command declares --------------------------------------------


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """--url | --address, --model and --allow-remote: the same on run and sweep."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="REST base URL (default: start a target on loopback)")
    where.add_argument("--address", help="gRPC HOST:PORT (default: start a target on loopback)")
    parser.add_argument(
        "--model", metavar="SPEC",
        help=f"the model a target servelab starts serves (default {DEFAULT_MODEL_SPEC}); with "
        "--url/--address, names the model the results record (else unknown)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-remote", action="store_true", help="allow a --url/--address off loopback"
    )


def add_gate_options(parser: argparse.ArgumentParser) -> None:
    """--threshold, --no-default-gate and --allow-invalid: the same on run and bench (Locust's
    parser declares the same three in ``locust_integration.support``)."""
    from loadtests.results.gates import DEFAULT_GATE

    parser.add_argument(
        "--threshold", action="append", default=[], metavar="EXPR",
        help="gate the run (repeatable), e.g. 'p99<50ms', 'success_rate>=0.999'; a breach "
        f"exits 1. Default gate: {DEFAULT_GATE}, replaced by your own success_rate/fail_ratio",
    )  # fmt: skip
    parser.add_argument(
        "--no-default-gate", action="store_true",
        help=f"drop the default gate ({DEFAULT_GATE})",
    )  # fmt: skip
    parser.add_argument(
        "--allow-invalid", action="store_true",
        help="exit 0/1 by the gates even when the measurement is INVALID (default: exit 3)",
    )  # fmt: skip


def gate_expressions(args: argparse.Namespace) -> list[str]:
    """The run's gates: the default one unless replaced or refused, then the user's, checked
    for form now (exit 2) so a typo never costs a run."""
    from loadtests.results.gates import with_default_gate
    from loadtests.results.thresholds import parse_thresholds

    expressions = with_default_gate(args.threshold, default_gate=not args.no_default_gate)
    parse_thresholds(expressions, allow_relative=False)
    return expressions


# Payload options: ``servelab run`` and servelab's options on Locust's parser declare them from
# this one table (Locust's help prefixes "servelab: ").
V2_SHARE = RangePair(FRACTION, names=("START", "END"))  # a rollout may also go down
INSTANCES = RangePair(NON_NEGATIVE_INT, names=("MIN", "MAX"), ordered=True)
PAYLOAD_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--api", {"choices": ["v1", "v2"], "default": "v1", "help": "the payloads' API"}),
    ("--instances", {
        "type": INSTANCES, "default": None, "metavar": "N[:M]",
        "help": "features per row: N, or uniform in N..M (default: the width the model "
        "declares, e.g. 64 for digits, else 8)",
    }),
    ("--rows-per-request", {
        "type": POSITIVE_INT, "default": 1, "metavar": "N",
        "help": "rows in a v2 request (a v1 request carries one)",
    }),
    ("--invalid-fraction", {
        "type": FRACTION, "default": 0.0, "metavar": "F",
        "help": "share of deliberately invalid payloads: expected rejections, not failures",
    }),
    ("--data", {
        "metavar": "FILE",
        "help": "real rows from a CSV, JSONL or .npy file, in seeded order (replaces the seeded "
        "values and --instances)",
    }),
    ("--distinct", {
        "type": POSITIVE_INT, "default": 4096, "metavar": "N",
        "help": "distinct payloads, cycled (few: repeats, which the edge cache notices)",
    }),
)  # fmt: skip


def add_payload_options(
    add: Callable[..., Any], *, help_prefix: str = "", as_text: bool = False
) -> None:
    """Declare ``PAYLOAD_OPTIONS`` through ``add`` (a parser's ``add_argument``, or Locust's).
    ``as_text``: an ``N[:M]`` value is checked but kept as written (Locust's master sends its
    options to the workers, and keeps them plain); ``INSTANCES`` reads it there."""
    for name, spec in PAYLOAD_OPTIONS:
        declared = {**spec, "help": help_prefix + str(spec["help"])}
        if as_text and isinstance(spec.get("type"), RangePair):
            declared["type"] = _checked_text(spec["type"])
            declared["default"] = "8"  # Locust's users have no model to ask
        add(name, **declared)


def _checked_text(parse: Callable[[str], object]) -> Callable[[str], str]:
    def check(text: str) -> str:
        parse(text)
        return text

    return check


# Protocol options: ``servelab run``/``sweep`` and servelab's options on Locust's parser (for
# ``RestUser``) declare them from this one table; every value is a plain str or list of str, as
# Locust's master sends its options to the workers. ``--protocol``'s choices are the protocol
# registry's names, read when the options are declared (not at import).
PROTOCOL_OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--protocol", {
        "default": "servelab",
        "help": "the wire contract: servelab's own, the Open Inference Protocol (oip: MLServer, "
        "KServe V2, Triton), kserve-v1, bentoml, or a --request-template",
    }),
    ("--model-name", {"metavar": "NAME", "help": "oip, kserve-v1: the model's name"}),
    ("--model-version", {"metavar": "V", "help": "oip: the model's version"}),
    ("--tensor", {
        "action": "append", "default": [], "metavar": "NAME:DATATYPE:SHAPE",
        "help": "oip: an input tensor, e.g. input-0:FP64:-1,64 (repeatable; default: the "
        "model's metadata)",
    }),
    ("--header", {
        "action": "append", "default": [], "metavar": "NAME:VALUE",
        "help": "a header on every request (repeatable; gRPC metadata on gRPC)",
    }),
    ("--request-template", {
        "metavar": "FILE",
        "help": "template: the request and response check, in TOML or JSON (README)",
    }),
    ("--bentoml-api", {"default": "predict", "metavar": "API", "help": "bentoml: the API to call"}),
    ("--raw-tensors", {
        "action": "store_true", "default": False,
        "help": "oip over gRPC: send raw_input_contents instead of typed contents",
    }),
)  # fmt: skip


def add_protocol_table(add: Callable[..., Any], *, help_prefix: str = "") -> None:
    """Declare ``PROTOCOL_OPTIONS`` through ``add`` (a parser's or group's ``add_argument``, or
    Locust's); each list default is a fresh list."""
    from loadtests.protocols.registry import PROTOCOLS

    for name, spec in PROTOCOL_OPTIONS:
        declared = {**spec, "help": help_prefix + str(spec["help"])}
        if isinstance(spec.get("default"), list):
            declared["default"] = list(spec["default"])
        if name == "--protocol":
            declared["choices"] = list(PROTOCOLS)
        add(name, **declared)


def add_protocol_options(parser: argparse.ArgumentParser) -> None:
    """--protocol and what each protocol needs (``PROTOCOL_OPTIONS``), then what only
    ``servelab run``'s own clients take (TLS): the same on run and sweep."""
    group = parser.add_argument_group("protocol (any model server)")
    add_protocol_table(group.add_argument)
    group.add_argument("--cacert", metavar="FILE", help="https / TLS: trust this CA bundle")
    group.add_argument(
        "--insecure", action="store_true", help="https / TLS: do not verify the certificate"
    )


def protocol_options(args: argparse.Namespace) -> ProtocolOptions:
    """The protocol options of ``add_protocol_options``, as the settings take them."""
    from loadtests.protocols.registry import ProtocolOptions

    return ProtocolOptions(
        model_name=args.model_name,
        model_version=args.model_version,
        tensors=tuple(args.tensor),
        headers=tuple(args.header),
        template=args.request_template,
        bentoml_api=args.bentoml_api,
        raw_tensors=args.raw_tensors,
    )
