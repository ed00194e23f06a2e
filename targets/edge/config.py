"""The edge runtime's configuration: ``EdgeConfig`` and a bundle's options. Stdlib only.

``EdgeConfig`` checks every value and names the option at fault; it is read from the servelab
CLI's options, from a bundle's baked-in JSON, or from ``build_parser`` (``python edge.pyz``), whose
defaults are the baked-in values.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from targets.edge.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURE_THRESHOLD
from targets.edge.quantize import parse_quant
from targets.errors import InputError
from targets.spec import DEFAULT_MODEL_SPEC

RUNTIMES: Final = ("python", "wasm")


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """Everything that configures an edge runtime; field names match the CLI options."""

    model: str = DEFAULT_MODEL_SPEC
    remote: str | None = None
    quant: str = "int8:8"
    cache_size: int = 1024
    timeout_ms: float = 200.0
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cooldown_s: float = DEFAULT_COOLDOWN_S
    drift_every: int = 1
    runtime: str = "python"  # what computes the model: Python, or its WebAssembly module

    def __post_init__(self) -> None:
        parse_quant(self.quant)  # raises InputError naming --quant
        if self.runtime not in RUNTIMES:
            raise InputError(
                f"--runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            )
        for name in ("cache_size", "failure_threshold", "drift_every"):
            value = getattr(self, name)
            least = 1 if name == "failure_threshold" else 0
            if type(value) is not int or value < least:
                option = "--" + name.replace("_", "-")
                raise InputError(f"{option} must be an integer >= {least}, got {value!r}")
        if not (isinstance(self.timeout_ms, int | float) and 0 < self.timeout_ms < math.inf):
            raise InputError(f"--timeout-ms must be a number > 0, got {self.timeout_ms!r}")
        if not (isinstance(self.cooldown_s, int | float) and 0 <= self.cooldown_s < math.inf):
            raise InputError(f"--cooldown-s must be a number >= 0, got {self.cooldown_s!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EdgeConfig:
        """From JSON (a bundle's baked-in config) or a Namespace's ``vars``; ``""`` remote: none."""
        known = {field.name for field in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        if values.get("remote") == "":
            values["remote"] = None
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_parser(defaults: EdgeConfig) -> argparse.ArgumentParser:
    """Options of a bundle (``python edge.pyz --help``): baked-in values are the defaults."""
    parser = argparse.ArgumentParser(
        prog="edge.pyz",
        description="servelab edge runtime: JSON requests on stdin, canonical responses on "
        "stdout, final stats on stderr.",
    )
    parser.add_argument("--model", default=defaults.model, metavar="SPEC")
    parser.add_argument("--remote", default=defaults.remote, metavar="URL", help="'' for none")
    parser.add_argument("--quant", default=defaults.quant, metavar="Q", help="int8:R | fixed:B")
    parser.add_argument("--cache-size", type=int, default=defaults.cache_size, metavar="N")
    parser.add_argument("--timeout-ms", type=float, default=defaults.timeout_ms, metavar="MS")
    parser.add_argument(
        "--failure-threshold", type=int, default=defaults.failure_threshold, metavar="N"
    )
    parser.add_argument("--cooldown-s", type=float, default=defaults.cooldown_s, metavar="S")
    parser.add_argument("--drift-every", type=int, default=defaults.drift_every, metavar="N")
    return parser
